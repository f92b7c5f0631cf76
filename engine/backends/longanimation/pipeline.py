"""LongAnimation inference: line-art runs in, colored frames out, segment by segment.

Per segment, top to bottom: sketch and reference latents -> memory from the
frames already colored -> denoising loop (SketchDiT, DGLM, the base model
with the control added after every even block, CFG, DPM step, color
consistency fusion) -> decode -> frames out and into the memory bank.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from longanim.engine.backends.base import Cancelled
from longanim.engine.backends.longanimation import weights as W
from longanim.engine.backends.longanimation.memory_encoder import MemoryBank
from longanim.engine.backends.longanimation.planning import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT_LENGTH,
    check_segment_options,
    plan_segments,
)

DEFAULT_PROMPT = (
    "Anime line art colorized consistently with the reference character design. "
    "High quality, masterpiece, best quality, highres, ultra-detailed, fantastic."
)
OFS = 2.0  # CogVideoX1.5 I2V's fixed ofs conditioning


@dataclass
class Settings:
    steps: int = 50
    guidance_scale: float = 6.0
    control_scale: float = 0.5
    segment_length: int = DEFAULT_SEGMENT_LENGTH
    overlap: int = DEFAULT_OVERLAP
    fusion_steps: int = 19  # the last N denoising steps cross-fade the overlap latents
    fusion_latents: int = 4  # weights (N - k) / (N + 1): 0.8, 0.6, 0.4, 0.2 for 4
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = ""
    seed: int = 42
    global_frames: int = 650
    local_frames: int = 20
    sketch_threshold: float = 0.78

    def check(self) -> None:
        check_segment_options(self.segment_length, self.overlap)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0 <= self.fusion_steps <= self.steps:
            raise ValueError(f"fusion_steps must be within 0..steps ({self.steps}), got {self.fusion_steps}")
        if not 0 <= self.fusion_latents <= self.overlap // 4:
            raise ValueError(
                f"fusion_latents must be within 0..overlap/4 ({self.overlap // 4}), got {self.fusion_latents}"
            )
        if not 0.0 < self.sketch_threshold < 1.0:
            raise ValueError(f"sketch_threshold must be in (0, 1), got {self.sketch_threshold}")


def line_mask(lineart: np.ndarray, threshold: float = 0.78) -> np.ndarray:
    """HxWx3 uint8 line art -> HxW bool, True on lines: darkest-channel ink above `threshold` (0..1)."""
    ink = 1.0 - lineart.min(axis=2).astype(np.float32) / 255.0
    return ink > threshold


class LongAnimationPipeline:
    def __init__(
        self, *, transformer, sketch_dit, dglm, vae, scheduler, text_encoder, tokenizer, memory_encoder,
        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, offload: bool = False,
        vae_tiling: bool = True,
    ):
        self.transformer = transformer
        self.sketch_dit = sketch_dit
        self.dglm = dglm
        self.vae = vae
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.memory_encoder = memory_encoder
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = offload
        if vae_tiling:
            vae.enable_tiling()
        for m in (transformer, sketch_dit, dglm, vae, text_encoder, memory_encoder):
            if m is None:
                continue
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.eval().requires_grad_(False)
        # The denoiser stays on the device; in offload mode the rest visits it only while used.
        for m in (transformer, sketch_dit, dglm):
            m.to(self.device)
        for m in (vae, text_encoder, memory_encoder):
            if m is not None:
                m.to("cpu" if offload else self.device)
        self._prompt_cache: dict[tuple[str, str], torch.Tensor] = {}
        self.vae_spatial = 2 ** (len(vae.config.block_out_channels) - 1)
        self.vae_temporal = vae.config.temporal_compression_ratio

    @classmethod
    def from_weights(
        cls, root: str | Path, *, device="cpu", dtype=torch.float32, offload=False, vae_tiling=True, memory=True,
    ):
        """`memory=False` runs without the DGLM and needs no memory encoder (the release's first segment, always)."""
        layout = W.WeightsLayout(Path(root))
        if not layout.root.is_dir():
            raise W.WeightsError(f"weights folder {layout.root} not found")
        base_config = W.base_transformer_config(layout)
        return cls(
            transformer=W.load_base_part(layout, "transformer", dtype),
            sketch_dit=W.load_sketch_dit(layout, base_config),
            dglm=W.load_dglm(layout),
            vae=W.load_base_part(layout, "vae", dtype),
            scheduler=W.load_base_part(layout, "scheduler", dtype),
            text_encoder=W.load_base_part(layout, "text_encoder", dtype),
            tokenizer=W.load_base_part(layout, "tokenizer", dtype),
            memory_encoder=W.load_memory_encoder(layout, dtype) if memory else None,
            device=device, dtype=dtype, offload=offload, vae_tiling=vae_tiling,
        )

    @contextlib.contextmanager
    def _on_device(self, module):
        if self.offload and module is not None:
            module.to(self.device)
        try:
            yield module
        finally:
            if self.offload and module is not None:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    # --- encoders -----------------------------------------------------------------------------

    def encode_prompt(self, prompt: str, negative_prompt: str) -> torch.Tensor:
        """(2, L, text_dim): negative then positive, as CFG batches them."""
        key = (prompt, negative_prompt)
        if key not in self._prompt_cache:
            length = self.transformer.config.max_text_seq_length
            ids = self.tokenizer(
                [negative_prompt, prompt], padding="max_length", max_length=length, truncation=True,
                add_special_tokens=True, return_tensors="pt",
            ).input_ids
            with self._on_device(self.text_encoder), torch.no_grad():
                embeds = self.text_encoder(ids.to(self.device))[0]
            self._prompt_cache = {key: embeds.to(self.dtype)}
        return self._prompt_cache[key]

    def _vae_encode(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(F, 3, H, W) in [-1, 1] -> (1, latent F, C, h, w) sampled latents, unscaled."""
        video = pixels.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)
        return self.vae.encode(video).latent_dist.sample(generator).permute(0, 2, 1, 3, 4)

    def _sketch_pixels(self, masks: list[np.ndarray]) -> torch.Tensor:
        paper = torch.from_numpy(~np.stack(masks)).float()  # lines 0, paper 1
        return (paper * 2 - 1).unsqueeze(1).expand(-1, 3, -1, -1)

    # --- one run ------------------------------------------------------------------------------

    def generate_run(
        self,
        masks: Callable[[int], np.ndarray],
        length: int,
        reference_rgb: np.ndarray,
        reference_mask: np.ndarray,
        bank: MemoryBank | None,
        settings: Settings,
        *,
        progress: Callable[[dict], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        label: dict | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (run position, HxWx3 uint8) for every position of a run, segment by segment.

        `masks(i)` is the line mask of run position i at the model resolution;
        `reference_*` are the run's keyframe, the first frame in the model's eyes.
        """
        settings.check()
        segments = plan_segments(length, settings.segment_length, settings.overlap)
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        prompt = self.encode_prompt(settings.prompt, settings.negative_prompt)
        with self._on_device(self.vae), torch.no_grad():
            ref = torch.from_numpy(reference_rgb).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)
            ref_latent = self._vae_encode(ref, generator)
            if not self.vae.config.invert_scale_latents:
                ref_latent = ref_latent * self.vae.config.scaling_factor
            ref_sketch = self._vae_encode(self._sketch_pixels([reference_mask]), generator)
        previous = None
        for index, seg in enumerate(segments):
            info = dict(label or {}, segment=index + 1, segments=len(segments))
            frames = [masks(i) for i in range(seg.start, seg.end)]
            frames += [frames[-1]] * (seg.padded_frames - seg.frames)
            latents, previous = self._denoise_segment(
                frames, ref_latent, ref_sketch, bank, prompt, settings, generator, previous, progress, cancelled, info,
            )
            with self._on_device(self.vae), torch.no_grad():
                video = self.vae.decode(latents.permute(0, 2, 1, 3, 4) / self.vae.config.scaling_factor).sample
            rgb = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            rgb = rgb.permute(1, 2, 3, 0).cpu().numpy()  # (F, H, W, 3)
            kept = [(p, rgb[p - seg.start]) for p in range(seg.keep_from, seg.keep_to)]
            if bank is not None:
                with self._on_device(self.memory_encoder):
                    bank.add([f for _, f in kept])
            yield from kept

    def _denoise_segment(
        self, frames, ref_latent, ref_sketch, bank, prompt, settings, generator, previous, progress, cancelled, info,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Latents (1, latent frames, C, h, w) of one segment without the temporal padding frame, and the
        last latents at each fused step, which the next segment's first latents are cross-faded toward."""
        cfg = settings.guidance_scale > 1.0
        with self._on_device(self.vae), torch.no_grad():
            sketch = self._vae_encode(self._sketch_pixels(frames), generator) * self.vae.config.scaling_factor
        _, n_lat, channels, h, w = sketch.shape
        p_t = self.transformer.config.patch_size_t or 1
        pad = (-n_lat) % p_t
        image = torch.cat([ref_latent, ref_latent.new_zeros(1, n_lat - 1, channels, h, w)], dim=1)
        if pad:  # CogVideoX1.5 pads time at the front with the reference; the sketch gets the reference's line art
            image = torch.cat([image[:, :pad], image], dim=1)
            sketch = torch.cat([ref_sketch.expand(-1, pad, -1, -1, -1), sketch], dim=1)

        memory = None
        if bank is not None and len(bank):
            with self._on_device(self.memory_encoder):
                memory = bank.memory(self.device, self.dtype)

        scheduler = self.scheduler
        scheduler.set_timesteps(settings.steps, device=self.device)
        timesteps = scheduler.timesteps
        shape = (1, n_lat + pad, channels, h, w)
        latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device, self.dtype)
        latents = latents * scheduler.init_noise_sigma
        rope = self._rotary(h, w, n_lat + pad)
        batch = 2 if cfg else 1
        prompt = prompt if cfg else prompt[1:]
        image_in = image.expand(batch, -1, -1, -1, -1)
        control_in = torch.cat([sketch, image], dim=2).expand(batch, -1, -1, -1, -1)
        ofs = latents.new_full((1,), OFS)
        old_pred = None
        tails: dict[int, torch.Tensor] = {}
        fuse_from = settings.steps - settings.fusion_steps
        for i, t in enumerate(timesteps):
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled at segment {info['segment']}, step {i + 1}")
            with torch.no_grad():
                model_in = scheduler.scale_model_input(torch.cat([latents] * batch), t)
                model_in = torch.cat([model_in, image_in], dim=2)
                noise = controlled_noise(
                    self.transformer, self.sketch_dit, self.dglm, model_in, control_in, prompt, t.expand(batch),
                    ofs, rope, memory, settings.control_scale,
                ).float()
                if cfg:
                    uncond, text = noise.chunk(2)
                    noise = uncond + settings.guidance_scale * (text - uncond)
                latents, old_pred = scheduler.step(
                    noise, old_pred, t, timesteps[i - 1] if i > 0 else None, latents.float(),
                    generator=generator, return_dict=False,
                )
                latents = latents.to(self.dtype)
                if i >= fuse_from and settings.fusion_latents:
                    if previous is not None:
                        latents = self._fuse(latents, pad, previous[i])
                    tails[i] = latents[:, -settings.fusion_latents:].clone()
            if progress is not None:
                progress(dict(info, stage="denoise", step=i + 1, steps=len(timesteps)))
        return latents[:, pad:], tails

    @staticmethod
    def _fuse(latents: torch.Tensor, pad: int, previous: torch.Tensor) -> torch.Tensor:
        """Color consistency fusion: cross-fade the first latents toward the previous segment's last ones."""
        count = previous.shape[1]
        latents = latents.clone()
        for k in range(count):
            weight = (count - k) / (count + 1)
            j = pad + 1 + k
            latents[:, j] = weight * previous[:, k] + (1 - weight) * latents[:, j]
        return latents

    def _rotary(self, h: int, w: int, frames: int):
        return rotary_embedding(self.transformer.config, h, w, frames, self.device)


def rotary_embedding(config, h: int, w: int, frames: int, device):
    """CogVideoX1.5's 3D RoPE for a latent grid of `frames` x h x w (as its diffusers pipeline builds it)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    if not config.use_rotary_positional_embeddings:
        return None
    p, p_t = config.patch_size, config.patch_size_t
    if p_t is None:
        raise ValueError("only CogVideoX1.5-style transformers (patch_size_t set) are supported")
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim, crops_coords=None, grid_size=(h // p, w // p),
        temporal_size=(frames + p_t - 1) // p_t, grid_type="slice",
        max_size=(config.sample_height // p, config.sample_width // p), device=device,
    )


def controlled_noise(
    transformer, sketch_dit, dglm, model_in, control_in, prompt, timestep, ofs, rope, memory, control_scale,
) -> torch.Tensor:
    """One denoiser evaluation: SketchDiT (+ DGLM when there is memory) steering the base model."""
    control = sketch_dit(control_in, prompt, timestep, ofs=ofs, image_rotary_emb=rope)
    if memory is not None:
        control = dglm(memory[0], memory[1], control) + control
    with _inject(transformer, control, control_scale):
        return transformer(
            hidden_states=model_in, encoder_hidden_states=prompt, timestep=timestep, ofs=ofs,
            image_rotary_emb=rope, return_dict=False,
        )[0]


@contextlib.contextmanager
def _inject(transformer, control: torch.Tensor, scale: float):
    """Add `scale * control` to the vision tokens after every even-indexed block (21 of CogVideoX1.5's 42)."""

    def hook(_module, _args, output):
        hidden, text = output
        return hidden + scale * control, text

    handles = [b.register_forward_hook(hook) for b in transformer.transformer_blocks[::2]]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
