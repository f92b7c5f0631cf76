"""LongAnimation inference: line-art runs in, colored frames out, segment by segment.

Per segment, top to bottom: sketch and reference latents -> memory from the
frames already colored -> denoising loop (SketchDiT, DGLM, the base model
with the control added after every even block, CFG, DPM step, color
consistency fusion) -> decode -> frames out and into the memory bank.

Conditioning follows the reference pipeline exactly (tests/test_longanimation_
pipeline_parity.py): the reference image's latent in the first latent frame
only, every sketch latent scaled by the VAE factor, strokes +1 on a -1 paper,
the padding slot holding the reference's line art in the first segment and the
segment's own first sketch after it, the random generator reseeded per
segment, the prompt with the release's quality suffix, 226 T5 tokens.
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
from longanim.engine.backends.longanimation.lineart_network import THRESHOLD
from longanim.engine.backends.longanimation.memory_encoder import MemoryBank
from longanim.engine.backends.longanimation.planning import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT_LENGTH,
    check_segment_options,
    plan_segments,
)
from longanim.engine.backends.longanimation.residency import Residency, parse_offload

DEFAULT_PROMPT = "Anime line art colorized consistently with the reference character design."
# The reference script appends this to every prompt (it re-appends it each segment, a slip of its loop
# variable that the 226-token cut mostly hides; it is added once here).
PROMPT_SUFFIX = " High quality, masterpiece, best quality, highres, ultra-detailed, fantastic."
TEXT_LENGTH = 226  # the reference pipeline's max_sequence_length, whatever the transformer config says
OFS = 2.0  # CogVideoX1.5 I2V's fixed ofs conditioning


@dataclass
class Settings:
    steps: int = 50
    guidance_scale: float = 6.0
    control_scale: float = 0.5
    segment_length: int = DEFAULT_SEGMENT_LENGTH
    overlap: int = DEFAULT_OVERLAP
    fusion_steps: int = 19  # the last N denoising steps cross-fade the overlap latents (the release: i > 30 of 50)
    fusion_latents: int = 4  # weights (N - k) / (N + 1): 0.8, 0.6, 0.4, 0.2 for 4
    prompt: str = DEFAULT_PROMPT
    prompt_suffix: str = PROMPT_SUFFIX
    negative_prompt: str = ""
    text_length: int = TEXT_LENGTH
    seed: int = 42
    global_frames: int = 650
    local_frames: int = 20
    sketch_threshold: float = THRESHOLD

    @property
    def full_prompt(self) -> str:
        return self.prompt + self.prompt_suffix

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
        if self.text_length < 1:
            raise ValueError(f"text_length must be >= 1, got {self.text_length}")


def sketch_pixels(masks: list[np.ndarray]) -> torch.Tensor:
    """Line masks -> (F, 3, H, W) VAE input: strokes +1 on a -1 paper, as the release was trained."""
    lines = torch.from_numpy(np.stack(masks)).float().unsqueeze(1)
    return ((lines - 0.5) / 0.5).repeat(1, 3, 1, 1)


def image_pixels(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) in [-1, 1], computed as diffusers' image processor does."""
    x = torch.from_numpy(rgb).float() / 255.0
    return (2.0 * x - 1.0).permute(2, 0, 1).unsqueeze(0)


class LongAnimationPipeline:
    def __init__(
        self, *, transformer, sketch_dit, dglm, vae, scheduler, text_encoder, tokenizer, memory_encoder,
        lineart=None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, offload="none",
        vae_tiling: bool = True,
    ):
        """`offload`: "none" (everything on `device`) or "model" (one phase's parts at a time, residency.py)."""
        self.transformer = transformer
        self.sketch_dit = sketch_dit
        self.dglm = dglm
        self.vae = vae
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.memory_encoder = memory_encoder
        self.lineart = lineart
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = parse_offload(offload)
        if vae_tiling:
            vae.enable_tiling()
        for m in (transformer, sketch_dit, dglm, vae, text_encoder, memory_encoder, lineart):
            if m is None or not isinstance(m, torch.nn.Module):
                continue
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.eval().requires_grad_(False)
        # The parts are looked up on this pipeline at every phase, so one swapped in later is planned too.
        self.residency = Residency(self, self.offload, device=self.device, offload_device="cpu",
                                   release=self._release)
        self._prompt_cache: dict[tuple, torch.Tensor] = {}
        self.vae_spatial = 2 ** (len(vae.config.block_out_channels) - 1)
        self.vae_temporal = vae.config.temporal_compression_ratio

    @classmethod
    def from_weights(
        cls, root: str | Path, *, device="cpu", dtype=torch.float32, offload="none", vae_tiling=True, memory=True,
    ):
        """`memory=False` runs without the DGLM's memory and needs no memory encoder (the release's first
        segment, always)."""
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
            lineart=W.load_lineart(layout),
            device=device, dtype=dtype, offload=offload, vae_tiling=vae_tiling,
        )

    def _release(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # --- encoders -----------------------------------------------------------------------------

    def line_masks(self, frames: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
        """(N, H, W, 3) uint8 at the model resolution -> (N, H, W) bool strokes, through the line-art network."""
        if self.lineart is None:
            raise RuntimeError("this pipeline has no line-art network (sk_model.pth)")
        with self.residency.running("lineart"):
            return self.lineart.line_masks(frames, threshold)

    def encode_prompt(self, prompt: str, negative_prompt: str, length: int = TEXT_LENGTH) -> torch.Tensor:
        """(2, L, text_dim): negative then positive, as CFG batches them (each encoded on its own, as there)."""
        key = (prompt, negative_prompt, length)
        if key not in self._prompt_cache:
            embeds = []
            with self.residency.running("prompt"), torch.no_grad():
                for text in (negative_prompt, prompt):
                    ids = self.tokenizer(
                        [text], padding="max_length", max_length=length, truncation=True, add_special_tokens=True,
                        return_tensors="pt",
                    ).input_ids
                    embeds.append(self.text_encoder(ids.to(self.device))[0])
            self._prompt_cache = {key: torch.cat(embeds).to(self.dtype)}
        return self._prompt_cache[key]

    def _vae_dist(self, pixels: torch.Tensor):
        """(F, 3, H, W) in [-1, 1] -> the VAE's latent distribution over (1, C, latent F, h, w)."""
        video = pixels.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)
        return self.vae.encode(video).latent_dist

    def _sketch_latents(self, masks: list[np.ndarray], generator: torch.Generator) -> torch.Tensor:
        """(1, latent F, C, h, w), scaled by the VAE factor like every latent the model reads."""
        sample = self._vae_dist(sketch_pixels(masks)).sample(generator)
        return (sample * self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, latent F, C, h, w) -> (F, H, W, 3) float in [0, 1], computed as the reference decodes."""
        with self.residency.running("decode"), torch.no_grad():
            scaled = 1 / self.vae.config.scaling_factor * latents.permute(0, 2, 1, 3, 4)
            video = self.vae.decode(scaled).sample
        return (video[0].float() * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)

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
        start_segment: int = 0,
        previous: dict[int, torch.Tensor] | None = None,
        on_segment: Callable[[int, dict[int, torch.Tensor] | None], None] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (run position, HxWx3 uint8) for every position of a run, segment by segment.

        `masks(i)` is the line mask of run position i at the model resolution;
        `reference_*` are the run's keyframe, the first frame in the model's eyes.
        Position 0 (the keyframe's own frame) is kept out of the memory, as the
        reference leaves the first frame out of the video its memory reads.

        A run can stop at a segment's end and go on later: `on_segment(index, tails)` is told,
        once a segment is in the memory bank and before its frames come out, the fusion tails
        the next segment reads; `start_segment` and `previous` (those tails) start a run there.
        Every segment reseeds its generators, so nothing else carries over.
        """
        settings.check()
        segments = plan_segments(length, settings.segment_length, settings.overlap)
        prompt = self.encode_prompt(settings.full_prompt, settings.negative_prompt, settings.text_length)
        with self.residency.running("latents"), torch.no_grad():
            reference = self._vae_dist(image_pixels(reference_rgb))
        for index, seg in enumerate(segments):
            if index < start_segment:
                continue
            info = dict(label or {}, segment=index + 1, segments=len(segments))
            frames = [masks(i) for i in range(seg.start, seg.end)]
            frames += [frames[-1]] * (seg.padded_frames - seg.frames)
            # The reference builds a fresh generator from the seed for every segment; its sketch draws
            # are unseeded there and come from a second generator, reseeded alike, here.
            generator = torch.Generator("cpu").manual_seed(settings.seed)
            sketch_generator = torch.Generator("cpu").manual_seed(settings.seed)
            with self.residency.running("latents"), torch.no_grad():
                sketch = self._sketch_latents(frames, sketch_generator)
                first_sketch = self._sketch_latents(frames[:1], sketch_generator)
                if index == 0:
                    first_sketch = self._sketch_latents([reference_mask], sketch_generator)
                ref_latent = reference.sample(generator).permute(0, 2, 1, 3, 4).to(self.dtype)
            if not self.vae.config.invert_scale_latents:
                ref_latent = ref_latent * self.vae.config.scaling_factor
            latents, previous = self._denoise_segment(
                sketch, first_sketch, ref_latent, bank, prompt, settings, generator, previous, progress, cancelled,
                info,
            )
            video = self.decode(latents)
            rgb = (video * 255).round().to(torch.uint8).cpu().numpy()  # (F, H, W, 3)
            kept = [(p, rgb[p - seg.start]) for p in range(seg.keep_from, seg.keep_to)]
            if bank is not None:  # a light encoder encodes frames as they come; Video-XL's store only keeps them
                with self.residency.running("memory") if _encodes_on_add(bank) else contextlib.nullcontext():
                    bank.add([f for p, f in kept if p != 0])
            if on_segment is not None:
                on_segment(index, previous)
            yield from kept

    def _denoise_segment(
        self, sketch, first_sketch, ref_latent, bank, prompt, settings, generator, previous, progress, cancelled,
        info,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Latents (1, latent frames, C, h, w) of one segment without the temporal padding frame, and the
        last latents at each fused step, which the next segment's first latents are cross-faded toward."""
        from diffusers.utils.torch_utils import randn_tensor

        cfg = settings.guidance_scale > 1.0
        _, n_lat, channels, h, w = sketch.shape
        p_t = self.transformer.config.patch_size_t or 1
        pad = (-n_lat) % p_t
        # CogVideoX1.5 pads time to a multiple of patch_size_t: the image latents hold the reference in
        # their first frame and zeros after (the padding slot included); the sketch's padding slot leads.
        image = torch.cat([ref_latent, ref_latent.new_zeros(1, n_lat + pad - 1, channels, h, w)], dim=1)
        if pad:
            sketch = torch.cat([first_sketch.expand(-1, pad, -1, -1, -1), sketch], dim=1)

        memory = None
        if bank is not None and len(bank):
            with self.residency.running("memory"):
                memory = bank.memory(self.device, self.dtype)
        self.residency.enter("denoise")

        scheduler = self.scheduler
        scheduler.set_timesteps(settings.steps, device=self.device)
        timesteps = scheduler.timesteps
        shape = (1, n_lat + pad, channels, h, w)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        latents = latents * scheduler.init_noise_sigma
        rope = self._rotary(h, w, n_lat + pad)
        batch = 2 if cfg else 1
        prompt = prompt if cfg else prompt[1:]
        image_in = image.expand(batch, -1, -1, -1, -1)
        control_in = torch.cat([sketch.expand(batch, -1, -1, -1, -1), image_in], dim=2)
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
                    noise, old_pred, t, timesteps[i - 1] if i > 0 else None, latents,
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


def _encodes_on_add(bank) -> bool:
    encoder = getattr(bank, "encoder", None)
    return bool(getattr(encoder, "frame_independent", False))


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
