"""Our Video-XL memory against the reference's own Video-XL code (LongAnimation's bundled videoxl/).

Same random weights (tiny dims), same frames, the reference driven as
LongAnimation's inference script drives it; the memory must match to 1e-5.
Skips when the reference checkout is absent (LONGANIMATION_REFERENCE, default
/tmp/LongAnimation). The reference is imported unmodified; what it needs to run
on transformers 5 is shimmed here, each shim named with why:

  * `einops`, the Q-Former and Perceiver resamplers: imported by the bundle, unused on this path;
  * `transformers.modeling_attn_mask_utils` (gone in v5): its two names are imported, never called;
  * v5 configs keep only the arguments given, so every Qwen2 default the bundle's config relies on
    is passed, plus `pad_token_id`, `rope_parameters` and `layer_types` that v5's `Qwen2ForCausalLM`
    constructor reads before the bundle replaces its model;
  * `BeaconModelOutput` (a v4 `ModelOutput` whose `past_key_values` v5 turns into an alias of
    `cache`, always None there) is replaced by a dict with attribute access;
  * `generate()` is v4's sampling loop; the script's `generate(max_new_tokens=2)` is unrolled to the
    two forward calls it makes (prompt, then the first new token), the cache read after the second;
  * the bundle hard-codes its CLIP folder as ../../models/clip-vit-large-patch14-336 from the working
    directory, so the test writes the tiny tower there and runs from two folders below;
  * v5's CLIPVisionModel drops the `vision_model.` level of v4's key names (the release's); the
    state dict is renamed across that level when copied into the reference.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from longanim.engine.backends.longanimation.videoxl import LM_HEAD, VISION_PREFIX  # noqa: E402
from test_longanimation_videoxl import (  # noqa: E402
    RELEASE_CLIP,
    RELEASE_EXTRAS,
    RELEASE_LM,
    TINY_CLIP,
    TINY_RATIO,
    TINY_VIDEOXL,
    release_key_spec,
    tiny_frames,
    tiny_model,
)

REFERENCE = Path(os.environ.get("LONGANIMATION_REFERENCE", "/tmp/LongAnimation"))
TOLERANCE = 1e-5
REF_TOWER = "model.vision_tower.vision_tower."  # the same tower under transformers 5's names
PREFIX, SUFFIX = [5, 9, 11], [7, 3, 2, 8]


@pytest.fixture(scope="module")
def reference():
    if not (REFERENCE / "videoxl" / "model" / "language_model" / "llava_qwen.py").is_file():
        pytest.skip(f"reference checkout not found at {REFERENCE} (set LONGANIMATION_REFERENCE)")
    return import_reference()


def import_reference():
    stubs = {}
    for name in ("einops", "einops_exts"):
        stubs[name] = types.ModuleType(name)
        stubs[name].rearrange = stubs[name].repeat = None
    for name, cls in (("qformer", "Qformer"), ("perceiver", "PerceiverResampler")):
        module = types.ModuleType(f"videoxl.model.multimodal_resampler.{name}")
        setattr(module, cls, type(cls, (), {}))
        stubs[module.__name__] = module
    masks = types.ModuleType("transformers.modeling_attn_mask_utils")
    masks._prepare_4d_causal_attention_mask = masks._prepare_4d_causal_attention_mask_for_sdpa = None
    stubs[masks.__name__] = masks
    for name, module in stubs.items():
        sys.modules.setdefault(name, module)
    sys.path.insert(0, str(REFERENCE))
    try:
        import videoxl.model.language_model.llava_qwen as llava_qwen
        from videoxl.model.language_model.modeling_beacon import Memory
    finally:
        sys.path.remove(str(REFERENCE))

    class Output(dict):
        __getattr__ = dict.__getitem__

    llava_qwen.BeaconModelOutput = Output
    return llava_qwen, Memory


def reference_config(llava_qwen, lm: dict, ratio: int | None = None, **extra):
    raw = dict(RELEASE_EXTRAS, **lm, **extra)
    ratio = ratio or (TINY_RATIO if lm is TINY_VIDEOXL else 8)
    raw.update(beacon_ratio=[ratio], hidden_act="silu", initializer_range=0.02,
               use_cache=True, tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096,
               rope_scaling=None, max_window_layers=lm["num_hidden_layers"], attention_dropout=0.0,
               mm_spatial_pool_out_channels=lm["mm_hidden_size"], pad_token_id=None,
               rope_parameters={"rope_type": "default", "rope_theta": lm["rope_theta"]},
               layer_types=["full_attention"] * lm["num_hidden_layers"])
    config = llava_qwen.LlavaQwenConfig(**raw)
    config._attn_implementation = "sdpa"  # the script loads with attn_implementation="sdpa"
    config.torch_dtype = torch.float32  # the beacon Memory reads its mask value from it
    return config


def build_reference(llava_qwen, Memory, tmp_path: Path, ours, *, lm=TINY_VIDEOXL, clip_config=TINY_CLIP,
                    ratio: int | None = None):
    """The reference LlavaQwenForCausalLM holding `ours`' weights (sizes `lm`, `clip_config`, beacon `ratio`)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    clip = tmp_path / "models" / "clip-vit-large-patch14-336"
    side = clip_config["image_size"]
    CLIPVisionModel(CLIPVisionConfig(**clip_config)).save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(clip)
    cwd = tmp_path / "run" / "here"
    cwd.mkdir(parents=True)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        ref = llava_qwen.LlavaQwenForCausalLM(reference_config(llava_qwen, lm, ratio)).eval()
    finally:
        os.chdir(old)
    ref.memory = Memory(model_config=ref.config, k_seq_dim=2, v_seq_dim=2)
    state = {(REF_TOWER + k[len(VISION_PREFIX):] if k.startswith(VISION_PREFIX) else k): v
             for k, v in ours.state_dict().items()}
    state[LM_HEAD] = torch.randn(lm["vocab_size"], lm["hidden_size"],
                                 generator=torch.Generator().manual_seed(9))
    ref.load_state_dict(state, strict=True)
    return ref


def reference_memory(ref, frames: np.ndarray, prefix=PREFIX, suffix=SUFFIX) -> torch.Tensor:
    """infernece_i2v_autoreg_glm.py's Video-XL call and reshape, with generate() unrolled."""
    pixels = ref.get_vision_tower().image_processor.preprocess(list(frames), return_tensors="pt")["pixel_values"]
    return generate_memory(ref, pixels, torch.tensor([prefix + [-200] + suffix]))


def generate_memory(ref, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Lines 486-493 of the script for preprocessed `pixels` and the prompt `ids` (one -200 at <image>):
    generate(max_new_tokens=2) unrolled, the cache of layers -9, -5, -1 reshaped, the model reset."""
    prefix, suffix = _split_at_image(ids[0].tolist())
    with torch.no_grad():
        features = torch.stack(ref.get_image_features(ids, None, None, None, None, [pixels], ["video"], None)).squeeze(0)
        n = features.shape[0]
        skip = dict(beacon_skip_first=len(prefix), beacon_skip_last=len(prefix) + n)
        expanded = torch.tensor([prefix + [ref.config.vocab_size - 1] * n + suffix])
        out = ref(input_ids=expanded, image_features=features, **skip)
        ref(input_ids=out.logits[:, -1:].argmax(-1), image_features=features, **skip)
        cache = ref.past_key_values

        def side(t):  # rearrange(t, 'b c h w -> b h (c w)')
            return t.permute(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1)

        keys = torch.cat([side(cache[i][0]) for i in (-9, -5, -1)], dim=0).unsqueeze(0)
        values = torch.cat([side(cache[i][1]) for i in (-9, -5, -1)], dim=0).unsqueeze(0)
        ref.clear_past_key_values()
        ref.memory.reset()
    return torch.cat([keys, values], dim=0).unsqueeze(0)


def _split_at_image(ids: list[int]) -> tuple[list[int], list[int]]:
    at = ids.index(-200)  # IMAGE_TOKEN_INDEX; the script's beacon_skip_first
    return ids[:at], ids[at + 1:]


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


# 7 frames: windows of 16 + 12 tokens (the last cut at the end of the frames); 8: two full windows;
# 3 (the local memory's case): one short window; a 20-token suffix: the text after the frames in two windows.
CASES = [(7, SUFFIX), (8, SUFFIX), (3, SUFFIX), (5, list(range(1, 21)))]


@pytest.mark.parametrize("frames, suffix", CASES)
def test_memory_matches_reference(reference, tmp_path, frames, suffix):
    ours = tiny_model(prompt=(PREFIX, suffix))
    ref = build_reference(*reference, tmp_path, ours)
    video = tiny_frames(frames)
    expected = reference_memory(ref, video, suffix=suffix)
    got = ours.encode_frames(video)
    assert got.shape == expected.shape == (1, 2, 3, ours.memory_tokens(frames), ours.kv_dim)
    assert rel_err(got, expected) <= TOLERANCE
    # the comparison can fail: another compression ratio changes the memory
    other = tiny_model(prompt=(PREFIX, suffix))
    other.ratio = 2
    assert other.encode_frames(video).shape != expected.shape


def test_global_and_local_runs_are_independent_as_in_the_reference(reference, tmp_path):
    ours = tiny_model()
    ref = build_reference(*reference, tmp_path, ours)
    video = tiny_frames(9)
    expected = reference_memory(ref, video), reference_memory(ref, video[-4:])
    got = ours.encode(video, video[-4:])
    assert rel_err(got[0], expected[0]) <= TOLERANCE and rel_err(got[1], expected[1]) <= TOLERANCE


def test_release_keys_are_the_reference_modules_keys(reference, tmp_path):
    """The full-size reference model on the meta device names the same keys and shapes as our spec."""
    from transformers import CLIPVisionConfig

    llava_qwen, _ = reference
    clip = tmp_path / "models" / "clip-vit-large-patch14-336"
    CLIPVisionConfig(**RELEASE_CLIP).save_pretrained(clip)
    cwd = tmp_path / "run" / "here"
    cwd.mkdir(parents=True)
    old = os.getcwd()
    os.chdir(cwd)
    try:  # delay_load: the tower is configured but not built (its keys are transformers' CLIPVisionModel's)
        config = reference_config(llava_qwen, RELEASE_LM, delay_load=True)
        with torch.device("meta"):
            ref = llava_qwen.LlavaQwenForCausalLM(config)
    finally:
        os.chdir(old)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    spec = {k: s for k, s in release_key_spec().items() if not k.startswith(VISION_PREFIX)}
    assert sorted(set(ref_shapes) ^ set(spec)) == []
    assert {k: s for k, s in ref_shapes.items() if spec[k] != s} == {}


if __name__ == "__main__":  # prints the numbers recorded in bench/results/videoxl_parity.md
    import tempfile

    llava_qwen, Memory = import_reference()
    for seed in (0, 1, 2):
        errs = []
        for frames, suffix in CASES:
            ours = tiny_model(seed, prompt=(PREFIX, suffix))
            with tempfile.TemporaryDirectory() as tmp:
                ref = build_reference(llava_qwen, Memory, Path(tmp), ours)
                video = tiny_frames(frames, seed=seed + 1)
                errs.append(rel_err(ours.encode_frames(video), reference_memory(ref, video, suffix=suffix)))
        print(f"seed {seed}: Video-XL memory rel err " + ", ".join(
            f"{f} frames/{len(s)}-token suffix {e:.3e}" for (f, s), e in zip(CASES, errs)))
