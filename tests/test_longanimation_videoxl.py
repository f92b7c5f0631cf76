"""The Video-XL memory encoder: the release's folder layout loaded strictly, the memory's layout, its errors.

`write_tiny_release` writes a Video-XL folder and a CLIP folder in the
release's layout at tiny dims (other tests may use it to feed the DGLM real
Video-XL features).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from longanim.engine.backends.longanimation.videoxl import (  # noqa: E402
    LM_HEAD,
    VISION_PREFIX,
    VideoXLMemory,
    check_videoxl,
    expected_shapes,
    load_videoxl_encoder,
)
from longanim.engine.backends.longanimation.videoxl_config import (  # noqa: E402
    CLIP_FOLDER,
    VideoXLConfig,
    VideoXLConfigError,
)

# 9 layers: the memory reads layers -9, -5, -1. 16-token windows (4 frames of 4 tokens), ratio 4.
TINY_VIDEOXL = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=9, num_attention_heads=4,
    num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=256, mm_hidden_size=16,
    beacon_window=16, beacon_stride=16,
)
TINY_CLIP = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=28,
                 patch_size=7)
TINY_RATIO = 4
# What config.json of the release holds besides the LM sizes (Video-XL's scripts/finetune_v.sh and pretrain.sh).
RELEASE_EXTRAS = dict(
    model_type="llava_qwen", architectures=["LlavaQwenForCausalLM"], mm_vision_tower="clip-vit-large-patch14-336",
    mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_projector_type="mlp2x_gelu",
    mm_spatial_pool_stride=2, mm_spatial_pool_mode="average", mm_resampler_type="spatial_pool",
    mm_patch_merge_type="unires", beacon_attn="full-coverage", beacon_ratio=[2, 4, 8], beacon_ratio_mix="step-random",
    beacon_param=["q", "k", "v"], beacon_pos="interleave", beacon_sink_size=0, beacon_attend_prev=True,
    beacon_parallel_window=1, beacon_accum=True, beacon_embed_init="eos",
)


# Big enough to feed the reference DGLM, which hard-codes 512-d memory: 4 KV heads x 128 (the release's),
# 16 tokens a frame (56 / 7 = 8x8 patches, pooled 2x2) compressed 8:1 as the script pins it, 2 frames a window.
DGLM_VIDEOXL = dict(TINY_VIDEOXL, hidden_size=512, intermediate_size=64, num_attention_heads=4,
                    num_key_value_heads=4, beacon_window=32, beacon_stride=32)
DGLM_CLIP = dict(TINY_CLIP, image_size=56)
DGLM_RATIO = 8
DGLM_SCALE = 0.15  # weights ~N(0, 0.15^2) at width 512: memory features of std ~0.5, neither vanishing nor huge


def tiny_model(seed: int = 0, prompt=([5, 9, 11], [7, 3, 2, 8]), *, lm=TINY_VIDEOXL, clip=TINY_CLIP,
               ratio=TINY_RATIO, scale: float = 0.3) -> VideoXLMemory:
    model = VideoXLMemory(VideoXLConfig(**lm), clip, prompt, compression_ratio=ratio).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def tiny_frames(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "You", "are", "a", "helpful",
             "Can", "you", "describe", "the", "scene", "and", "color", "in", "anime", "?", "."]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                            additional_special_tokens=["<|im_start|>", "<|im_end|>"]).save_pretrained(folder)


def write_tiny_release(root: Path, *, seed: int = 0, shards: int = 2, tower_in_checkpoint: bool = True,
                       lm=TINY_VIDEOXL, clip_config=TINY_CLIP, ratio=TINY_RATIO,
                       scale: float = 0.3) -> Path:
    """root/Video_XL/VideoXL_weight_8 (+ root/Video_XL/clip-vit-large-patch14-336) at tiny dims; returns the former.

    `lm`, `clip_config`, `ratio`, `scale`: sizes and weight scale (the DGLM_* ones feed the reference DGLM)."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor

    videoxl = root / "Video_XL" / "VideoXL_weight_8"
    clip_dir = root / "Video_XL" / CLIP_FOLDER
    videoxl.mkdir(parents=True)
    clip_dir.mkdir(parents=True)
    (videoxl / "config.json").write_text(json.dumps(dict(RELEASE_EXTRAS, **lm)))
    _tokenizer(videoxl)
    model = tiny_model(seed, lm=lm, clip=clip_config, ratio=ratio, scale=scale)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state[LM_HEAD] = torch.randn(lm["vocab_size"], lm["hidden_size"])
    tower = {k: state.pop(k) for k in list(state) if k.startswith(VISION_PREFIX)}
    if tower_in_checkpoint:
        state.update(tower)
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[i::shards]
        save_file({k: state[k] for k in part}, str(videoxl / name))
        weight_map.update({k: name for k in part})
    (videoxl / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    side = clip_config["image_size"]
    (clip_dir / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": clip_config}))
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor.save_pretrained(clip_dir)
    clip_weights = {"vision_model." + k[len(VISION_PREFIX):]: v for k, v in tower.items()}
    clip_weights["text_model.embeddings.token_embedding.weight"] = torch.zeros(4, 4)  # a full CLIP file has both
    save_file(clip_weights, str(clip_dir / "model.safetensors"))
    return videoxl


def test_memory_layout_is_what_the_dglm_reads():
    model = tiny_model()
    glob, local = model.encode(tiny_frames(7), tiny_frames(7)[-3:])
    kv_dim = TINY_VIDEOXL["num_key_value_heads"] * TINY_VIDEOXL["hidden_size"] // TINY_VIDEOXL["num_attention_heads"]
    # prompt text (3 + 4) + 7 frames x 4 tokens / ratio 4
    assert glob.shape == (1, 2, 3, 3 + 7 + 4, kv_dim) == (1, 2, 3, model.memory_tokens(7), model.kv_dim)
    assert local.shape == (1, 2, 3, model.memory_tokens(3), kv_dim)

    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory

    dglm = DynamicGlobalLocalMemory(dim=16, memory_dim=kv_dim, mapping_dims=(8,), heads=2, head_dim=8)
    assert dglm(glob, local, torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_memory_depends_on_every_frame_and_on_the_beacons():
    model = tiny_model()
    frames = tiny_frames(7)
    base = model.encode_frames(frames)
    changed = frames.copy()
    changed[0] = 255 - changed[0]  # the first frame: only the beacons carry it past its window
    assert (model.encode_frames(changed) - base)[..., 3:, :].abs().max() > 1e-3
    with torch.no_grad():
        model.model.layers[0].self_attn.beacon_k_proj.weight.add_(0.5)
    assert (model.encode_frames(frames) - base).abs().max() > 1e-3


def test_keys_before_rope_and_prompt_prefix_independent_of_frames():
    model = tiny_model()
    a, b = model.encode_frames(tiny_frames(5, seed=1)), model.encode_frames(tiny_frames(5, seed=2))
    assert torch.equal(a[..., :3, :], b[..., :3, :])  # the sink sees no frame
    assert not torch.allclose(a[..., 3:, :], b[..., 3:, :])


def test_bad_frames_are_named():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"uint8 \(N, 28, 28, 3\)"):
        model.encode_frames(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.encode_frames(np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        model.encode_frames(np.zeros((0, 28, 28, 3), np.uint8))


def test_unsupported_settings_are_named():
    with pytest.raises(VideoXLConfigError, match="beacon_pos='append'"):
        VideoXLConfig(**dict(TINY_VIDEOXL, beacon_pos="append")).validate()
    with pytest.raises(VideoXLConfigError, match=r"beacon_param=.*\['o'\] not supported"):
        VideoXLConfig(**dict(TINY_VIDEOXL, beacon_param=("q", "k", "v", "o"))).validate()
    with pytest.raises(VideoXLConfigError, match="missing num_key_value_heads"):
        VideoXLConfig.from_dict({k: v for k, v in TINY_VIDEOXL.items() if k != "num_key_value_heads"})


def test_release_folder_loads_strictly_and_gives_the_same_memory(tmp_path):
    videoxl = write_tiny_release(tmp_path)
    assert check_videoxl(videoxl, compression_ratio=TINY_RATIO) == []
    loaded = VideoXLMemory.from_pretrained(videoxl, dtype=torch.float32, compression_ratio=TINY_RATIO)
    built = tiny_model(prompt=(loaded.prefix_ids.tolist(), loaded.suffix_ids.tolist()))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(videoxl))
    assert loaded.prefix_ids.tolist() == tok("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                             "<|im_start|>user\n").input_ids
    frames = tiny_frames(6)
    assert torch.equal(loaded.encode_frames(frames), built.encode_frames(frames))
    # the pipeline passes the weights root, which holds the release as Video_XL/VideoXL_weight_8
    assert check_videoxl(tmp_path, compression_ratio=TINY_RATIO) == []
    from_root = load_videoxl_encoder(tmp_path, torch.float32, compression_ratio=TINY_RATIO)
    assert torch.equal(from_root.encode_frames(frames), built.encode_frames(frames))


def test_memory_from_the_frame_store_is_the_sampled_frames_memory():
    from longanim.engine.backends.longanimation.memory_store import FrameStore

    model = tiny_model()
    store = FrameStore(global_frames=6, local_frames=2, size=28)
    shot = np.random.default_rng(3).integers(0, 256, (9, 40, 60, 3), dtype=np.uint8)
    store.add(shot)
    glob, local = model.memory(store, dtype=torch.float64)
    frames, _, served = store.sample()
    assert served.tolist() == np.linspace(0, 8, 6, dtype=int).tolist()
    assert glob.dtype == torch.float64
    assert torch.equal(glob, model.encode_frames(frames).double())
    assert torch.equal(local, model.encode_frames(frames[-2:]).double())
    with pytest.raises(ValueError, match="FrameStore\\(size=28\\)"):
        bad = FrameStore(size=20)
        bad.add(shot[:1])
        model.memory(bad)


def test_tower_missing_from_the_checkpoint_comes_from_the_clip_folder(tmp_path):
    videoxl = write_tiny_release(tmp_path, tower_in_checkpoint=False)
    assert check_videoxl(videoxl, compression_ratio=TINY_RATIO) == []
    loaded = VideoXLMemory.from_pretrained(videoxl, dtype=torch.float32, compression_ratio=TINY_RATIO)
    built = tiny_model(prompt=(loaded.prefix_ids.tolist(), loaded.suffix_ids.tolist()))
    frames = tiny_frames(3)
    assert torch.equal(loaded.encode_frames(frames), built.encode_frames(frames))
    (videoxl.parent / CLIP_FOLDER / "model.safetensors").unlink()
    assert any("has no vision tower" in p for p in check_videoxl(videoxl, compression_ratio=TINY_RATIO))


def test_check_names_every_missing_part(tmp_path):
    assert "no Video-XL folder" in check_videoxl(tmp_path / "nowhere")[0]
    videoxl = write_tiny_release(tmp_path)
    clip = videoxl.parent / CLIP_FOLDER
    (videoxl / "tokenizer.json").unlink()
    (clip / "preprocessor_config.json").unlink()
    problems = "\n".join(check_videoxl(videoxl, compression_ratio=TINY_RATIO))
    assert "no tokenizer.json, nor vocab.json + merges.txt" in problems
    assert "preprocessor_config.json: file not found" in problems
    for f in videoxl.glob("model*"):
        f.unlink()
    assert any("no model.safetensors" in p for p in check_videoxl(videoxl, compression_ratio=TINY_RATIO))
    (videoxl / "config.json").unlink()
    assert any("config.json: file not found" in p for p in check_videoxl(videoxl, compression_ratio=TINY_RATIO))


def test_wrong_missing_and_unexpected_keys_are_named(tmp_path):
    from longanim.engine.backends.longanimation.weights import WeightsError
    from safetensors.torch import load_file, save_file

    videoxl = write_tiny_release(tmp_path, shards=1)
    path = next(videoxl.glob("model-*.safetensors"))
    state = load_file(str(path))
    state["model.layers.3.self_attn.beacon_v_proj.weight"] = torch.zeros(3, 3)
    del state["model.mm_projector.2.bias"]
    state["model.image_newline"] = torch.zeros(32)
    save_file(state, str(path))
    index = json.loads((videoxl / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: path.name for k in state}
    (videoxl / "model.safetensors.index.json").write_text(json.dumps(index))
    problems = "\n".join(check_videoxl(videoxl, compression_ratio=TINY_RATIO))
    assert "wrong shape for key 'model.layers.3.self_attn.beacon_v_proj.weight': file has [3, 3]" in problems
    assert "missing key 'model.mm_projector.2.bias'" in problems
    assert "unexpected key 'model.image_newline'" in problems
    with pytest.raises(WeightsError, match="beacon_v_proj"):
        VideoXLMemory.from_pretrained(videoxl, compression_ratio=TINY_RATIO)


# --- full size, on the meta device ---------------------------------------------------------------
# Video-XL is Qwen2-7B-Instruct (its scripts fine-tune that checkpoint) with CLIP ViT-L/14-336.
RELEASE_LM = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
    mm_hidden_size=1024, beacon_window=1440, beacon_stride=1440,
)
RELEASE_CLIP = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=336, patch_size=14, projection_dim=768)


def release_key_spec() -> dict[str, tuple[int, ...]]:
    """The checkpoint's keys as the reference code names them (llava_qwen.py, llava_arch.py, builder.py), by hand."""
    h, inter, kv, v, c = 3584, 18944, 4 * 128, 152064, 1024
    spec = {"model.embed_tokens.weight": (v, h), "model.beacon_embed_tokens.weight": (1, h),
            "model.norm.weight": (h,), "lm_head.weight": (v, h),
            "model.mm_projector.0.weight": (h, c), "model.mm_projector.0.bias": (h,),
            "model.mm_projector.2.weight": (h, h), "model.mm_projector.2.bias": (h,)}
    for i in range(28):
        p = f"model.layers.{i}."
        for proj, out in (("q", h), ("k", kv), ("v", kv)):
            for name in (f"{proj}_proj", f"beacon_{proj}_proj"):  # beacon_param q k v
                spec[f"{p}self_attn.{name}.weight"] = (out, h)
                spec[f"{p}self_attn.{name}.bias"] = (out,)
        spec[f"{p}self_attn.o_proj.weight"] = (h, h)
        spec[f"{p}mlp.gate_proj.weight"] = spec[f"{p}mlp.up_proj.weight"] = (inter, h)
        spec[f"{p}mlp.down_proj.weight"] = (h, inter)
        spec[f"{p}input_layernorm.weight"] = spec[f"{p}post_attention_layernorm.weight"] = (h,)
    t = VISION_PREFIX
    spec.update({f"{t}embeddings.class_embedding": (c,), f"{t}embeddings.patch_embedding.weight": (c, 3, 14, 14),
                 f"{t}embeddings.position_embedding.weight": (577, c), f"{t}pre_layrnorm.weight": (c,),
                 f"{t}pre_layrnorm.bias": (c,), f"{t}post_layernorm.weight": (c,), f"{t}post_layernorm.bias": (c,)})
    for i in range(24):
        p = f"{t}encoder.layers.{i}."
        for proj in ("q", "k", "v", "out"):
            spec[f"{p}self_attn.{proj}_proj.weight"], spec[f"{p}self_attn.{proj}_proj.bias"] = (c, c), (c,)
        for norm in ("layer_norm1", "layer_norm2"):
            spec[f"{p}{norm}.weight"] = spec[f"{p}{norm}.bias"] = (c,)
        spec[f"{p}mlp.fc1.weight"], spec[f"{p}mlp.fc1.bias"] = (4096, c), (4096,)
        spec[f"{p}mlp.fc2.weight"], spec[f"{p}mlp.fc2.bias"] = (c, 4096), (c,)
    return spec


def test_full_size_model_on_meta_has_the_release_keys():
    config = VideoXLConfig.from_dict(dict(RELEASE_EXTRAS, **RELEASE_LM))
    shapes = expected_shapes(config, RELEASE_CLIP)
    spec = release_key_spec()
    assert sorted(set(shapes) - set(spec)) == [] and sorted(set(spec) - set(shapes)) == []
    assert {k: s for k, s in shapes.items() if spec[k] != s} == {}
    assert config.kv_dim == 512  # 4 KV heads x 128: the DGLM's memory_dim
    with torch.device("meta"):
        model = VideoXLMemory(config, RELEASE_CLIP, ([0] * 14, [0] * 16))
    assert model.tokens_per_frame == 144 and model.memory_tokens(650) == 14 + 650 * 18 + 16
    params = sum(p.numel() for p in model.parameters()) + 152064 * 3584  # + the LM head, checked not loaded
    qwen2_7b = 7_615_616_512  # Qwen2-7B-Instruct's published parameter count
    beacons = 28 * (3584 * 3584 + 3584 + 2 * (512 * 3584 + 512)) + 3584  # beacon q/k/v per layer + beacon embedding
    clip_l_336 = 303_507_456  # CLIP ViT-L/14-336 vision tower
    projector = 1024 * 3584 + 3584 + 3584 * 3584 + 3584
    assert params == qwen2_7b + beacons + clip_l_336 + projector
