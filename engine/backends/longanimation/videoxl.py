"""Video-XL as the DGLM's memory: the key/value cache it builds while reading the colored frames.

The released `glm_module` was trained on what LongAnimation's inference script
pulls out of Video-XL: frames preprocessed by the CLIP image processor, encoded
by the CLIP ViT-L/14-336 tower (penultimate layer, patch tokens), projected to
the LM width and average-pooled 2x2 (144 tokens a frame), placed at `<image>`
in a fixed prompt about the scene's colors, and read by the Qwen2 LM with
Activation-Beacon compression: the visual tokens go through in windows of
`beacon_window` (1440) tokens with one beacon token after every 8 (ratio 8);
after each window only the beacons' K/V are kept. The cache the DGLM reads is
that of layers -9, -5 and -1 after the whole prompt: the text before `<image>`,
every window's beacons, the text after it; keys before RoPE (the beacon model
caches them so), each layer's 4 KV heads x 128 laid side by side -> 512
features a token. The script asks for 2 new tokens; the cache it reads is the
one the second step is fed, i.e. the prompt's, so no token is generated here
and the LM head is never run (its weights are checked, not loaded).

Public API (what the pipeline calls):

    from longanim.engine.backends.longanimation.videoxl import VideoXLMemory, check_videoxl
    problems = check_videoxl(videoxl_dir, vision_dir=None)   # [] when loadable; else one line per problem
    encoder = VideoXLMemory.from_pretrained(videoxl_dir, vision_dir=None, device="cuda", dtype=torch.bfloat16)
    global_memory, local_memory = encoder.encode(global_frames, local_frames)
    global_memory, local_memory = encoder.memory(frame_store, device, dtype)   # the same, from a FrameStore

`videoxl_dir` may be the Video-XL folder or a weights root holding it as
Video_XL/VideoXL_weight_8 (`load_videoxl_encoder(root, dtype, device)` is
from_pretrained for the latter); `vision_dir` defaults to the CLIP folder beside
it, Video_XL/clip-vit-large-patch14-336.

Frames are uint8 (N, S, S, 3) squares at `encoder.input_size` as `FrameStore`
(memory_store.py) keeps them; each memory comes back as (1, 2, 3, tokens, 512)
[keys, values] x [layers -9, -5, -1], the layout `DynamicGlobalLocalMemory.forward`
takes. Tokens: prompt text + 18 per frame (144 / 8): 650 frames -> ~11,730.

Differences from the reference, all on purpose: frames come from the store, not
re-decoded from the H.264 video the reference writes (no compression loss); the
vision tower runs in batches of `vision_batch` frames; the last layer's MLP and
the final norm, whose outputs no cache depends on, are skipped. The reference
samples the first new token and stops if it is end-of-text, in which case its
cache lacks the text after `<image>`; with the released weights answering a
"describe" question that is not the path it takes, and not one reproduced here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from longanim.engine.backends.longanimation import videoxl_config as C
from longanim.engine.backends.longanimation.videoxl_config import VideoXLConfig, VideoXLConfigError

LM_HEAD = "lm_head.weight"
VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."


def _qwen2_config(config: VideoXLConfig):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta, max_position_embeddings=config.max_position_embeddings,
        hidden_act=config.hidden_act, tie_word_embeddings=config.tie_word_embeddings,
    )


class VideoXLMemory(nn.Module):
    """Video-XL's vision tower, projector and beacon-compressing Qwen2 LM; parameter names are the release's."""

    num_layers = len(C.MEMORY_LAYERS)
    frame_independent = False  # beacons mix frames: the memory is one joint pass over all of them

    def __init__(
        self,
        config: VideoXLConfig,
        vision_config: dict,
        prompt_ids: tuple[list[int], list[int]],
        *,
        image_mean=(0.48145466, 0.4578275, 0.40821073),
        image_std=(0.26862954, 0.26130258, 0.27577711),
        compression_ratio: int = C.COMPRESSION_RATIO,
        vision_batch: int = 32,
    ):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Model

        config.validate()
        prefix, suffix = (list(p) for p in prompt_ids)
        if not prefix:
            raise ValueError("the prompt must have text before <image> (the beacon model keeps it as its sink)")
        self.config = config
        self.ratio = compression_ratio
        self.vision_batch = vision_batch
        vision = CLIPVisionConfig(**{k: v for k, v in vision_config.items() if not k.startswith("_")})
        vision._attn_implementation = "sdpa"
        side = vision.image_size // vision.patch_size
        if side % config.mm_spatial_pool_stride:
            raise ValueError(f"{side}x{side} patches do not pool by {config.mm_spatial_pool_stride}")
        self.tokens_per_frame = (side // config.mm_spatial_pool_stride) ** 2
        if self.tokens_per_frame % compression_ratio or config.beacon_window % compression_ratio:
            raise ValueError(
                f"{self.tokens_per_frame} tokens a frame and a {config.beacon_window}-token window must both be "
                f"multiples of the compression ratio {compression_ratio}"
            )
        if vision.hidden_size != config.mm_hidden_size:
            raise ValueError(f"vision tower width {vision.hidden_size} != mm_hidden_size {config.mm_hidden_size}")
        self.input_size = (vision.image_size, vision.image_size)
        self.kv_dim = config.kv_dim

        self.model = Qwen2Model(_qwen2_config(config))
        self.model.beacon_embed_tokens = nn.Embedding(1, config.hidden_size)
        for layer in self.model.layers:
            for name in config.beacon_param:
                ordinal = getattr(layer.self_attn, f"{name}_proj")
                setattr(layer.self_attn, f"beacon_{name}_proj", nn.Linear(ordinal.in_features, ordinal.out_features))
        projector: list[nn.Module] = [nn.Linear(config.mm_hidden_size, config.hidden_size)]
        for _ in range(1, config.projector_depth):
            projector += [nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)]
        self.model.mm_projector = nn.Sequential(*projector)
        # model.vision_tower.vision_tower.vision_model.*: the LLaVA wrapper around a (transformers 4) CLIPVisionModel
        self.model.vision_tower = nn.Module()
        self.model.vision_tower.vision_tower = nn.Module()
        self.model.vision_tower.vision_tower.vision_model = CLIPVisionModel(vision)
        self.register_buffer("prefix_ids", torch.tensor(prefix, dtype=torch.long), persistent=False)
        self.register_buffer("suffix_ids", torch.tensor(suffix, dtype=torch.long), persistent=False)
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    # --- loading -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, videoxl_dir, vision_dir=None, *, device="cpu", dtype=torch.bfloat16, **kwargs):
        """Build from the release folders, every key and shape checked before any weight is read."""
        from safetensors import safe_open

        from longanim.engine.backends.longanimation.weights import WeightsError

        videoxl_dir = resolve_videoxl_dir(videoxl_dir)
        vision_dir = default_vision_dir(videoxl_dir) if vision_dir is None else Path(vision_dir)
        ratio = kwargs.get("compression_ratio", C.COMPRESSION_RATIO)
        problems = check_videoxl(videoxl_dir, vision_dir, compression_ratio=ratio)
        if problems:
            raise WeightsError(f"Video-XL at {videoxl_dir} cannot be loaded:\n  " + "\n  ".join(problems))
        from accelerate import init_empty_weights

        config = C.load_config(videoxl_dir)
        _, mean, std = C.image_normalization(vision_dir)
        with init_empty_weights():  # parameters on meta, buffers (RoPE, prompt, CLIP positions) real
            model = cls(config, C.vision_config_dict(vision_dir), prompt_ids(videoxl_dir),
                        image_mean=mean, image_std=std, **kwargs)
        state = {}
        for path, keys in _weight_sources(videoxl_dir, vision_dir).items():
            with safe_open(str(path), framework="pt", device=str(torch.device(device))) as f:
                for ours, theirs in keys:
                    state[ours] = f.get_tensor(theirs).to(dtype)
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device).eval()

    # --- encoding ----------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, global_frames, local_frames) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent passes, as the reference makes them: (global, local), each (1, 2, 3, T, kv_dim)."""
        return self.encode_frames(global_frames), self.encode_frames(local_frames)

    @torch.no_grad()
    def memory(self, store, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(global, local) for the DGLM from a `FrameStore` (memory_store.py), on `device` in `dtype`."""
        glob, local, _ = store.sample()
        if (glob.shape[1], glob.shape[2]) != self.input_size:
            raise ValueError(f"the frame store keeps {glob.shape[1]}x{glob.shape[2]} squares; Video-XL reads "
                             f"{self.input_size[0]}x{self.input_size[1]} (FrameStore(size={self.input_size[0]}))")
        return tuple(m.to(device=device, dtype=dtype) for m in self.encode(glob, local))  # type: ignore[return-value]

    @torch.no_grad()
    def encode_frames(self, frames) -> torch.Tensor:
        """uint8 (N, S, S, 3) frames -> (1, 2, 3, tokens, kv_dim) keys and values of the memory layers."""
        features = self.visual_tokens(self._pixels(frames))
        cache = self.language_cache(features)
        keys = torch.cat([_side_by_side(cache[i][0]) for i in C.MEMORY_LAYERS], dim=0).unsqueeze(0)
        values = torch.cat([_side_by_side(cache[i][1]) for i in C.MEMORY_LAYERS], dim=0).unsqueeze(0)
        return torch.cat([keys, values], dim=0).unsqueeze(0)

    def memory_tokens(self, frames: int) -> int:
        return len(self.prefix_ids) + frames * self.tokens_per_frame // self.ratio + len(self.suffix_ids)

    def _pixels(self, frames) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
        if x.ndim != 4 or x.shape[-1] != 3 or tuple(x.shape[1:3]) != self.input_size or x.dtype != torch.uint8:
            raise ValueError(
                f"frames must be uint8 (N, {self.input_size[0]}, {self.input_size[1]}, 3), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        if not len(x):
            raise ValueError("no frames to encode")
        x = x.to(self.image_mean.device).permute(0, 3, 1, 2).float() * (1 / 255)
        return ((x - self.image_mean) / self.image_std).to(self._dtype)

    @property
    def _dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    def visual_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised -> (N * tokens_per_frame, hidden): tower, projector, 2x2 pool, frames in order."""
        tower = self.model.vision_tower.vision_tower.vision_model
        cfg = self.config
        out = []
        for chunk in pixels.split(self.vision_batch):
            hidden = tower(pixel_values=chunk, output_hidden_states=True).hidden_states[cfg.mm_vision_select_layer]
            feat = self.model.mm_projector(hidden[:, 1:])  # patch tokens: CLS dropped
            n, tokens, dim = feat.shape
            side = round(tokens**0.5)
            grid = feat.view(n, side, side, dim).permute(0, 3, 1, 2)
            pool = F.avg_pool2d if cfg.mm_spatial_pool_mode == "average" else F.max_pool2d
            grid = pool(grid, cfg.mm_spatial_pool_stride)
            out.append(grid.permute(0, 2, 3, 1).reshape(n, -1, dim))
        return torch.cat(out).flatten(0, 1)

    def language_cache(self, visual: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (K, V), each (1, kv_heads, tokens, head_dim), keys before RoPE, after the whole prompt."""
        lm = self.model
        cache: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * self.config.num_hidden_layers
        window = self.config.beacon_window
        self._window(lm.embed_tokens(self.prefix_ids)[None], None, cache)  # the sink: never compressed
        for start in range(0, len(visual), window):
            x, beacon = self._interleave(visual[start : start + window])
            self._window(x[None], beacon, cache)
        for start in range(0, len(self.suffix_ids), window):
            self._window(lm.embed_tokens(self.suffix_ids[start : start + window])[None], None, cache)
        return cache  # type: ignore[return-value]

    def _interleave(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One beacon after every `ratio` visual tokens (the reference's interleave layout)."""
        n, dim = raw.shape
        groups = n // self.ratio
        beacon = self.model.beacon_embed_tokens.weight[0].to(raw.dtype).expand(groups, 1, dim)
        x = torch.cat([raw.view(groups, self.ratio, dim), beacon], dim=1).reshape(-1, dim)
        is_beacon = torch.zeros(self.ratio + 1, dtype=torch.bool, device=raw.device)
        is_beacon[-1] = True
        return x, is_beacon.repeat(groups)

    def _window(self, x: torch.Tensor, is_beacon: torch.Tensor | None, cache: list) -> None:
        """Run one window over the cached memory; keep all its K/V (text) or only the beacons' (visual)."""
        from transformers.models.qwen2.modeling_qwen2 import repeat_kv, rotate_half

        cfg, lm = self.config, self.model
        heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        length = x.shape[1]
        past = 0 if cache[0][0] is None else cache[0][0].shape[2]
        # positions restart at 0 every window: memory 0..past-1, the window after it (beacon "full-coverage")
        cos, sin = lm.rotary_emb(x, torch.arange(past + length, device=x.device)[None])
        cos, sin = cos[:, None], sin[:, None]
        allowed = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)
        last = cfg.num_hidden_layers - 1
        for index, layer in enumerate(lm.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = self._project(attn, "q", h, is_beacon).view(1, length, heads, head_dim).transpose(1, 2)
            k = self._project(attn, "k", h, is_beacon).view(1, length, kv_heads, head_dim).transpose(1, 2)
            v = self._project(attn, "v", h, is_beacon).view(1, length, kv_heads, head_dim).transpose(1, 2)
            past_k, past_v = cache[index]
            keys = k if past_k is None else torch.cat([past_k, k], dim=2)
            values = v if past_v is None else torch.cat([past_v, v], dim=2)
            q_rot = q * cos[..., past:, :] + rotate_half(q) * sin[..., past:, :]
            k_rot = keys * cos + rotate_half(keys) * sin
            groups = heads // kv_heads
            out = F.scaled_dot_product_attention(
                q_rot, repeat_kv(k_rot, groups), repeat_kv(values, groups), attn_mask=allowed
            )
            x = x + attn.o_proj(out.transpose(1, 2).reshape(1, length, heads * head_dim))
            if index != last:  # nothing cached depends on the last layer's MLP
                x = x + layer.mlp(layer.post_attention_layernorm(x))
            kept_k, kept_v = (k, v) if is_beacon is None else (k[:, :, is_beacon], v[:, :, is_beacon])
            cache[index] = (
                kept_k if past_k is None else torch.cat([past_k, kept_k], dim=2),
                kept_v if past_v is None else torch.cat([past_v, kept_v], dim=2),
            )

    def _project(self, attn, name: str, h: torch.Tensor, is_beacon: torch.Tensor | None) -> torch.Tensor:
        ordinal = getattr(attn, f"{name}_proj")
        if is_beacon is None or name not in self.config.beacon_param:
            return ordinal(h)
        beacon = getattr(attn, f"beacon_{name}_proj")
        out = h.new_empty(*h.shape[:2], ordinal.out_features)
        out[:, ~is_beacon] = ordinal(h[:, ~is_beacon])
        out[:, is_beacon] = beacon(h[:, is_beacon])
        return out


def _side_by_side(cache: torch.Tensor) -> torch.Tensor:
    """(1, heads, tokens, head_dim) -> (1, tokens, heads * head_dim): the reference's 'b c h w -> b h (c w)'."""
    b, heads, tokens, dim = cache.shape
    return cache.permute(0, 2, 1, 3).reshape(b, tokens, heads * dim)


# --- the release folders ----------------------------------------------------------------------


def resolve_videoxl_dir(path) -> Path:
    """The Video-XL folder itself, or a weights root holding it as Video_XL/VideoXL_weight_8 (the HF download)."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / C.RELEASE_SUBFOLDER).is_dir():
        return path / C.RELEASE_SUBFOLDER
    return path


def default_vision_dir(videoxl_dir) -> Path:
    """Beside the Video-XL folder: WEIGHTS/Video_XL/clip-vit-large-patch14-336."""
    return Path(videoxl_dir).parent / C.CLIP_FOLDER


def load_videoxl_encoder(path, dtype=torch.bfloat16, device="cpu", **kwargs) -> VideoXLMemory:
    """`VideoXLMemory.from_pretrained` for a Video-XL folder or a weights root (the pipeline's entry point)."""
    return VideoXLMemory.from_pretrained(path, device=device, dtype=dtype, **kwargs)


def split_prompt(ids_before: list[int], ids_after: list[int], bos: int | None) -> tuple[list[int], list[int]]:
    """As the reference's tokenizer_image_token joins the two halves: one BOS at most, at the start."""
    if bos is not None and ids_after[:1] == [bos]:
        ids_after = ids_after[1:]
    return ids_before, ids_after


def prompt_ids(videoxl_dir) -> tuple[list[int], list[int]]:
    """The fixed prompt's token ids before and after `<image>`, with the release's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(videoxl_dir))
    before, after = C.PROMPT.split("<image>")
    return split_prompt(tokenizer(before).input_ids, tokenizer(after).input_ids, tokenizer.bos_token_id)


def expected_shapes(config: VideoXLConfig, vision_config: dict, compression_ratio: int = C.COMPRESSION_RATIO):
    """Every key of the release checkpoint this encoder needs, with its shape, from the model built on meta."""
    with torch.device("meta"):
        model = VideoXLMemory(config, vision_config, ([0], []), compression_ratio=compression_ratio)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not config.tie_word_embeddings:
        shapes[LM_HEAD] = (config.vocab_size, config.hidden_size)
    return shapes


def _weight_sources(videoxl_dir: Path, vision_dir: Path) -> dict[Path, list[tuple[str, str]]]:
    """Which file each of our keys is read from (and under which name); the LM head is never read."""
    from longanim.engine.backends.longanimation.weights import safetensors_shapes

    sources: dict[Path, list[tuple[str, str]]] = {}
    has_tower = False
    for path in C.weight_files(videoxl_dir):
        for key in safetensors_shapes([path]):
            if key == LM_HEAD:
                continue
            has_tower |= key.startswith(VISION_PREFIX)
            sources.setdefault(path, []).append((key, key))
    if not has_tower:
        clip = Path(vision_dir) / "model.safetensors"
        sources[clip] = [(VISION_PREFIX + k[len("vision_model."):], k)
                         for k in safetensors_shapes([clip]) if k.startswith("vision_model.")]
    return sources


def check_videoxl(
    videoxl_dir, vision_dir=None, *, tokenizer: bool = True, compression_ratio: int = C.COMPRESSION_RATIO
) -> list[str]:
    """Every reason `VideoXLMemory.from_pretrained` would fail, one line each naming the file; [] when it would load.

    Reads configs and safetensors headers only (the model is built on the meta device).
    """
    from longanim.engine.backends.longanimation.weights import (
        WeightsError,
        compare_shapes,
        safetensors_shapes,
    )

    videoxl_dir = resolve_videoxl_dir(videoxl_dir)
    vision_dir = default_vision_dir(videoxl_dir) if vision_dir is None else Path(vision_dir)
    if not videoxl_dir.is_dir():
        return [f"{videoxl_dir}: no Video-XL folder (Hugging Face sy1998/Video_XL, VideoXL_weight_8)"]
    problems: list[str] = []
    try:
        config = C.load_config(videoxl_dir)
    except VideoXLConfigError as exc:
        problems.append(str(exc))
        config = None
    vision = None
    if not vision_dir.is_dir():
        problems.append(f"{vision_dir}: no CLIP vision folder (Hugging Face openai/{C.CLIP_FOLDER})")
    else:
        try:
            vision = C.vision_config_dict(vision_dir)
            C.image_normalization(vision_dir)
        except VideoXLConfigError as exc:
            problems.append(str(exc))
    if tokenizer:
        found = C.tokenizer_problems(videoxl_dir)
        if not found:
            try:
                prompt_ids(videoxl_dir)
            except Exception as exc:  # whatever the tokenizer library raises, name the folder
                found = [f"{videoxl_dir}: the tokenizer does not load: {type(exc).__name__}: {exc}"]
        problems += found
    files = C.weight_files(videoxl_dir)
    if not files:
        problems.append(f"{videoxl_dir}: no model.safetensors, model.safetensors.index.json or model-*-of-*.safetensors")
    if config is None or vision is None or not files:
        return problems
    try:
        expected = expected_shapes(config, vision, compression_ratio)
    except (ValueError, TypeError) as exc:
        return problems + [f"{videoxl_dir}: config does not build: {exc}"]
    try:
        found = safetensors_shapes(files)
        if not any(k.startswith(VISION_PREFIX) for k in found):
            clip = vision_dir / "model.safetensors"
            if not clip.is_file():
                return problems + [
                    f"{videoxl_dir}: the checkpoint has no vision tower ({VISION_PREFIX}*) and {clip} does not exist"
                ]
            found.update({VISION_PREFIX + k[len("vision_model."):]: s
                          for k, s in safetensors_shapes([clip]).items() if k.startswith("vision_model.")})
    except WeightsError as exc:
        return problems + [str(exc)]
    problems += [f"{videoxl_dir}: {p}" for p in compare_shapes(expected, found)]
    return problems
