"""Tiny random LongAnimation checkpoints written in the release's on-disk layout.

control_module.safetensors / glm_module.safetensors carry the release's key
names at tiny dims (the dims go in the optional json overrides beside them);
the CogVideoX1.5-style base folders are saved with save_pretrained, so the
real loading path runs in tests. sk_model.pth is the line-art network at its
real size (4.3M parameters, the checkpoint's keys and shapes), saved with
`torch.save` as the published file is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEXT_DIM = 16
LATENT_CHANNELS = 4
MAX_TEXT = 8

# RoPE splits the head dim 1/4 time, 3/8 height, 3/8 width in even parts: 16 is the smallest that works.
TINY_BASE = dict(
    num_attention_heads=2, attention_head_dim=16, in_channels=2 * LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
    time_embed_dim=8, ofs_embed_dim=8, text_embed_dim=TEXT_DIM, num_layers=4, sample_width=8, sample_height=8,
    sample_frames=81, patch_size=2, patch_size_t=2, patch_bias=False, max_text_seq_length=MAX_TEXT,
    use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False,
)
TINY_SKETCH_DIT = dict(
    num_attention_heads=2, attention_head_dim=16, in_channels=2 * LATENT_CHANNELS, time_embed_dim=8,
    ofs_embed_dim=8, text_embed_dim=TEXT_DIM, num_layers=2, sample_width=8, sample_height=8, patch_size=2,
    patch_size_t=2, patch_bias=False, max_text_seq_length=MAX_TEXT,
)
TINY_DGLM = dict(dim=32, num_memory_layers=3, memory_dim=8, mapping_dims=[8, 16], heads=2, head_dim=8, ff_mult=4)
# The reference hard-codes 512 -> 1024 -> 2048 memory mappings; parity keeps them, the rest tiny.
PARITY_DGLM = dict(dim=16, num_memory_layers=3, memory_dim=512, mapping_dims=[1024, 2048], heads=2, head_dim=8, ff_mult=4)
TINY_MEMORY_ENCODER = dict(num_layers=3, kv_dim=8, width=8, patch_size=4, tokens_per_frame=4, image_size=16)
TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
    up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=LATENT_CHANNELS,
    layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4, scaling_factor=0.7,
    invert_scale_latents=True,
)
SCHEDULER = dict(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, num_train_timesteps=1000,
    prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0,
    steps_offset=0, timestep_spacing="trailing",
)


def _randomize(module, seed: int, scale: float = 0.1):
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("proj_out") or name.startswith("zero_conv"):
                p.copy_(torch.randn(p.shape, generator=gen) * scale)  # zero-initialised in release training
    return module


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)


def write_lineart_network(path: Path, seed: int = 0) -> Path:
    """A random line-art network in sk_model.pth's format. The output bias is raised so that about
    40% of a frame falls under the 0.78 cut: a sketch with both strokes and paper."""
    import torch

    from longanim.engine.backends.longanimation.lineart_network import LineartNetwork

    torch.manual_seed(seed)
    net = LineartNetwork()
    with torch.no_grad():
        net.model4[1].bias += 1.5
    torch.save(net.state_dict(), str(path))
    return path


def write_tiny_weights(root: Path, seed: int = 0) -> Path:
    """A complete tiny weights folder at `root`; returns it."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory
    from longanim.engine.backends.longanimation.memory_encoder import LightMemoryEncoder
    from longanim.engine.backends.longanimation.sketch_dit import SketchDiT
    from longanim.engine.backends.longanimation.weights import (
        BASE_FOLDER,
        CONTROL_FILE,
        GLM_FILE,
        LINEART_FILE,
        MEMORY_FOLDER,
    )

    root = Path(root)
    base = root / BASE_FOLDER
    torch.manual_seed(seed)
    CogVideoXTransformer3DModel(**TINY_BASE).save_pretrained(base / "transformer")
    AutoencoderKLCogVideoX(**TINY_VAE).save_pretrained(base / "vae")
    CogVideoXDPMScheduler(**SCHEDULER).save_pretrained(base / "scheduler")
    T5EncoderModel(
        T5Config(vocab_size=32, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    ).save_pretrained(base / "text_encoder")
    _tokenizer(base / "tokenizer")
    LightMemoryEncoder(**TINY_MEMORY_ENCODER).save_pretrained(root / MEMORY_FOLDER)
    write_lineart_network(root / LINEART_FILE, seed)

    sketch = _randomize(SketchDiT(**TINY_SKETCH_DIT), seed + 1)
    save_file({k: v.contiguous() for k, v in sketch.state_dict().items()}, str(root / CONTROL_FILE))
    (root / CONTROL_FILE).with_suffix(".json").write_text(json.dumps({"num_layers": TINY_SKETCH_DIT["num_layers"]}))
    glm = _randomize(DynamicGlobalLocalMemory(**TINY_DGLM), seed + 2)
    save_file({k: v.contiguous() for k, v in glm.state_dict().items()}, str(root / GLM_FILE))
    (root / GLM_FILE).with_suffix(".json").write_text(json.dumps(TINY_DGLM))
    return root


def random_color(size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


_WRITTEN: dict[str, Path] = {}


def tiny_weights_dir(tmp_path_factory) -> Path:
    """One tiny weights folder per test session (tests must not modify it; copy it first)."""
    if "root" not in _WRITTEN:
        _WRITTEN["root"] = write_tiny_weights(tmp_path_factory.mktemp("longanimation") / "weights")
    return _WRITTEN["root"]
