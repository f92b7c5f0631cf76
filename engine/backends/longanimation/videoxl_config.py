"""What the Video-XL memory encoder reads from the release's folders, and what it checks there.

The release (Hugging Face sy1998/Video_XL, folder VideoXL_weight_8) is a LLaVA-style
`llava_qwen` model: a Qwen2-7B language model with Activation-Beacon compression
of its visual tokens, a CLIP ViT-L/14-336 vision tower and a 2-layer GELU
projector. The reference loads the vision tower's config and image processor
from a separate CLIP folder (`clip-vit-large-patch14-336`, openai's release),
then overrides its weights with those in the Video-XL checkpoint.

    VIDEOXL_DIR/
      config.json                       llava_qwen config (LM sizes, mm_* and beacon_* settings)
      model.safetensors[.index.json]    or model-0000N-of-0000M.safetensors + the index
      tokenizer_config.json, vocab.json, merges.txt (or tokenizer.json)   the Qwen2 tokenizer
    VISION_DIR/  (default: beside it, VIDEOXL_DIR/../clip-vit-large-patch14-336)
      config.json                       CLIP (or CLIP vision) config
      preprocessor_config.json          the CLIP image processor (size, crop, mean, std)
      model.safetensors                 only read when the Video-XL checkpoint lacks the tower

This module reads JSON only and imports no torch, so `longanim doctor` can name a
missing file without loading anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

CLIP_FOLDER = "clip-vit-large-patch14-336"
RELEASE_SUBFOLDER = "Video_XL/VideoXL_weight_8"  # where a weights root holds the release (the HF repo's layout)
# Everything below is how LongAnimation's infernece_i2v_autoreg_glm.py drives Video-XL.
PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
    "Can you describe the scene and color in anime?<|im_end|>\n<|im_start|>assistant\n"
)
COMPRESSION_RATIO = 8  # the script pins config.beacon_ratio = [8] (the release trains with 2, 4 or 8)
MEMORY_LAYERS = (-9, -5, -1)  # whose K/V the DGLM reads
SUPPORTED_BEACON_PARAMS = {"q", "k", "v"}


class VideoXLConfigError(ValueError):
    """A Video-XL folder is missing a file or holds a config this encoder does not reproduce."""


@dataclass(frozen=True)
class VideoXLConfig:
    """The settings of one Video-XL release that change the memory features.

    `rope_scaling` is not among them: the reference's LlavaQwenForCausalLM sets it to None whatever
    config.json says, and so does this encoder. `beacon_ratio` neither: the script pins it to 8.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    mm_hidden_size: int = 1024
    mm_projector_type: str = "mlp2x_gelu"
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    mm_spatial_pool_stride: int = 2
    mm_spatial_pool_mode: str = "average"
    mm_patch_merge_type: str = "unires"
    beacon_window: int = 1440
    beacon_stride: int = 1440
    beacon_attn: str = "full-coverage"
    beacon_pos: str = "interleave"
    beacon_param: tuple[str, ...] = ("q", "k", "v")
    beacon_sink_size: int = 0
    beacon_accum: bool = True
    beacon_parallel_window: int = 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        """Features per memory token: the KV heads of one layer side by side (4 x 128 = 512 in the release)."""
        return self.num_key_value_heads * self.head_dim

    @property
    def projector_depth(self) -> int:
        return int(re.fullmatch(r"mlp(\d+)x_gelu", self.mm_projector_type).group(1))  # type: ignore[union-attr]

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> VideoXLConfig:
        fields = cls.__dataclass_fields__
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads", "num_key_value_heads") if k not in raw]
        if missing:
            raise VideoXLConfigError(f"{source}: missing {', '.join(missing)}")
        values = {k: raw[k] for k in fields if k in raw and raw[k] is not None}
        values.setdefault("rms_norm_eps", 1e-6)
        values.setdefault("rope_theta", 10000.0)
        values.setdefault("max_position_embeddings", 32768)
        values.setdefault("num_key_value_heads", raw["num_attention_heads"])
        if "beacon_param" in values:
            values["beacon_param"] = tuple(values["beacon_param"])
        config = cls(**values)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        """Refuse settings whose inference path differs from the one reproduced here, naming the field."""
        wrong = []
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            wrong.append("hidden_size / num_attention_heads / num_key_value_heads do not divide")
        if self.num_hidden_layers < max(-i for i in MEMORY_LAYERS):
            wrong.append(f"num_hidden_layers={self.num_hidden_layers} (the memory reads layers {MEMORY_LAYERS})")
        if not re.fullmatch(r"mlp(\d+)x_gelu", self.mm_projector_type):
            wrong.append(f"mm_projector_type={self.mm_projector_type!r} (supported: mlpNx_gelu)")
        if self.mm_vision_select_feature != "patch":
            wrong.append(f"mm_vision_select_feature={self.mm_vision_select_feature!r} (supported: 'patch')")
        if self.mm_spatial_pool_mode not in ("average", "max"):
            wrong.append(f"mm_spatial_pool_mode={self.mm_spatial_pool_mode!r} (supported: average, max)")
        if self.mm_patch_merge_type not in ("unires", "flat"):
            wrong.append(f"mm_patch_merge_type={self.mm_patch_merge_type!r} (supported: unires, flat)")
        if self.beacon_pos != "interleave":
            wrong.append(f"beacon_pos={self.beacon_pos!r} (supported: 'interleave')")
        if self.beacon_attn != "full-coverage":
            wrong.append(f"beacon_attn={self.beacon_attn!r} (supported: 'full-coverage')")
        if self.beacon_window != self.beacon_stride:
            wrong.append(f"beacon_window {self.beacon_window} != beacon_stride {self.beacon_stride}")
        if self.beacon_window % COMPRESSION_RATIO:
            wrong.append(f"beacon_window={self.beacon_window} is not a multiple of the ratio {COMPRESSION_RATIO}")
        if self.beacon_sink_size != 0:
            wrong.append(f"beacon_sink_size={self.beacon_sink_size} (supported: 0)")
        if not self.beacon_accum:
            wrong.append("beacon_accum=false (supported: true)")
        if self.beacon_parallel_window != 1:
            wrong.append(f"beacon_parallel_window={self.beacon_parallel_window} (supported: 1)")
        if not set(self.beacon_param) <= SUPPORTED_BEACON_PARAMS:
            extra = sorted(set(self.beacon_param) - SUPPORTED_BEACON_PARAMS)
            wrong.append(f"beacon_param={list(self.beacon_param)} ({extra} not supported; q, k, v are)")
        if wrong:
            raise VideoXLConfigError(f"{source}: unsupported Video-XL settings: " + "; ".join(wrong))


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise VideoXLConfigError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VideoXLConfigError(f"{path}: unreadable: {exc}") from None


def load_config(videoxl_dir: Path) -> VideoXLConfig:
    path = Path(videoxl_dir) / "config.json"
    return VideoXLConfig.from_dict(read_json(path), str(path))


def vision_config_dict(vision_dir: Path) -> dict:
    """The CLIP vision config (a full CLIP config's `vision_config`, or a vision-only one)."""
    path = Path(vision_dir) / "config.json"
    raw = read_json(path)
    vision = raw.get("vision_config", raw)
    for key in ("hidden_size", "image_size", "patch_size", "num_hidden_layers"):
        if key not in vision:
            raise VideoXLConfigError(f"{path}: CLIP vision config has no {key}")
    return vision


def image_normalization(vision_dir: Path) -> tuple[int, list[float], list[float]]:
    """(crop size, mean, std) of the CLIP image processor the reference preprocesses frames with."""
    path = Path(vision_dir) / "preprocessor_config.json"
    raw = read_json(path)
    crop = raw.get("crop_size", 336)
    crop = crop.get("height", 336) if isinstance(crop, dict) else int(crop)
    return crop, list(raw.get("image_mean", [0.48145466, 0.4578275, 0.40821073])), \
        list(raw.get("image_std", [0.26862954, 0.26130258, 0.27577711]))


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files (all shards the index names), or [] when there are none."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob("model-*-of-*.safetensors"))


def tokenizer_problems(folder: Path) -> list[str]:
    folder = Path(folder)
    if not (folder / "tokenizer_config.json").is_file():
        return [f"{folder}: no tokenizer_config.json (the Qwen2 tokenizer of the release)"]
    if not (folder / "tokenizer.json").is_file() and not (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    ):
        return [f"{folder}: no tokenizer.json, nor vocab.json + merges.txt (the Qwen2 tokenizer of the release)"]
    return []
