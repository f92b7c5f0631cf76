"""The public reference's long-video loop on tiny components, to compare our pipeline with.

The reference (GitHub CN-makers/LongAnimation) is never vendored: LONGANIMATION_REFERENCE points
at a read-only checkout (default /tmp/LongAnimation). Its pipeline class
(`Controled_Memory_CogVideoXImageToVideoPipeline`), controlled transformer, SketchDiT, DGLM and
line-art generator are imported unmodified. The per-segment steps of its script
(`infernece_i2v_autoreg_glm.py`: `process_sketch`, `process_sketch_image`, `log_validation`,
`save_segments`, the frame ranges of `autoreg_video_save`) hard-code CUDA and file round trips, so
they are restated below, step for step, with the script's line of each in a comment.

The sketch VAE draws, which the script samples from the unseeded global RNG, are fixed as our
pipeline fixes them (`torch.manual_seed(seed)` before each segment's sketches). The memory the
DGLM reads comes from `memory(generated frames)`: `script_videoxl_memory` is the script's own
Video-XL call (its sampling, its prompt, the reference Video-XL code), `reference_memory` a cheap
stand-in (one fixed projection applied to the same frames on both sides) for the tests that check
only which frames reach the DGLM and how it is used.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

REFERENCE = Path(os.environ.get("LONGANIMATION_REFERENCE", "/tmp/LongAnimation"))
PROMPT_SUFFIX = " High quality, masterpiece, best quality, highres, ultra-detailed, fantastic."
MEMORY_DIM = 512  # the reference DGLM hard-codes 512-d memory
GLOBAL_FRAMES, LOCAL_FRAMES = 650, 20


def available() -> bool:
    return (REFERENCE / "models" / "pipeline_cogvideox_image2video.py").is_file()


def import_reference():
    """The reference modules, imported from the checkout as its script imports them."""
    if "einops" not in sys.modules:
        try:
            import einops  # noqa: F401
        except ImportError:  # only the reference detector's numpy path uses it; that path is not run
            stub = types.ModuleType("einops")
            stub.rearrange = None
            sys.modules["einops"] = stub
    sys.path.insert(0, str(REFERENCE))
    try:
        from lineart_extractor.annotator.lineart import Generator
        from models.cogvideox_transformer_3d_control import Control3DModel, Controled_CogVideoXTransformer3DModel
        from models.global_local_memory_module import global_local_memory
        import models.pipeline_cogvideox_image2video as pipeline_module
    finally:
        sys.path.remove(str(REFERENCE))
    return types.SimpleNamespace(
        Generator=Generator, Control3DModel=Control3DModel, Transformer=Controled_CogVideoXTransformer3DModel,
        glm=global_local_memory,
        Pipeline=pipeline_module.Controled_Memory_CogVideoXImageToVideoPipeline, pipeline_module=pipeline_module,
    )


class _TorchOnCpu(types.ModuleType):
    """`torch` as the reference pipeline module sees it, except that the fusion latents it reloads
    each step (`torch.load(...).to("cuda")`, hard-coded) stay on the CPU."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(*args, **kwargs):
        return types.SimpleNamespace(to=lambda *_a, _t=torch.load(*args, **kwargs), **_k: _t)


def randomize(module, seed: int, scale: float = 0.2):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module


def memory_features(frames: list[np.ndarray], seed: int = 7) -> torch.Tensor:
    """(1, 2, 3, tokens, 512): one token per frame, a fixed random projection of its mean color and its
    4x4 thumbnail (a stand-in for Video-XL, the same function on both sides)."""
    import cv2

    gen = torch.Generator().manual_seed(seed)
    feats = torch.stack([
        torch.from_numpy(cv2.resize(f, (4, 4), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255.0)
        for f in frames
    ])
    proj = torch.randn(feats.shape[1], 2 * 3 * MEMORY_DIM, generator=gen) * 0.1
    tokens = (feats @ proj).view(len(frames), 2, 3, MEMORY_DIM)
    return tokens.permute(1, 2, 0, 3).unsqueeze(0).contiguous()


def reference_memory(frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The script's sampling (lines 478-490): up to 650 frames evenly (np.linspace, dtype=int) over the
    video so far; local memory is the last 20 of those."""
    total = len(frames)
    picks = np.linspace(0, total - 1, min(GLOBAL_FRAMES, total), dtype=int)
    sampled = [frames[i] for i in picks]
    return memory_features(sampled), memory_features(sampled[-LOCAL_FRAMES:])


def script_prompt() -> str:
    """The script's Video-XL prompt (`vllm_prompt = "..."`), read from the script itself."""
    import ast

    for line in (REFERENCE / "infernece_i2v_autoreg_glm.py").read_text().splitlines():
        if line.strip().startswith("vllm_prompt ="):
            return ast.literal_eval(line.split("=", 1)[1].strip())
    raise RuntimeError("vllm_prompt not found in the reference script")


def script_input_ids(tokenizer) -> torch.Tensor:
    """Line 343: the prompt tokenized by the reference's tokenizer_image_token, -200 at <image>."""
    sys.path.insert(0, str(REFERENCE))
    try:
        from videoxl.constants import IMAGE_TOKEN_INDEX
        from videoxl.mm_utils import tokenizer_image_token
    finally:
        sys.path.remove(str(REFERENCE))
    return tokenizer_image_token(script_prompt(), tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt").unsqueeze(0)


def script_videoxl_memory(video_model, input_ids: torch.Tensor, generated: list[np.ndarray], generate):
    """Lines 464-510: up to 650 frames evenly over the video so far (np.linspace, dtype=int), through the
    CLIP image processor; the local memory is the last 20 of those; `generate(video_model, pixels, ids)`
    is the script's generate call and cache reshape (unrolled by the Video-XL parity test)."""
    total_frame_num = len(generated)
    max_frame = GLOBAL_FRAMES if total_frame_num > GLOBAL_FRAMES else total_frame_num
    frame_idx = np.linspace(0, total_frame_num - 1, max_frame, dtype=int).tolist()
    frames = np.stack([generated[i] for i in frame_idx])  # vr.get_batch(frame_idx).numpy()
    processor = video_model.get_vision_tower().image_processor
    global_videos = processor.preprocess(frames, return_tensors="pt")["pixel_values"]
    local_videos = global_videos[-LOCAL_FRAMES:, ]
    return generate(video_model, global_videos, input_ids), generate(video_model, local_videos, input_ids)


class StandInBank:
    """Our pipeline's memory bank interface (`add`, `memory`, `len`) over `reference_memory`."""

    def __init__(self):
        self.frames: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frames):
        self.frames += [np.array(f) for f in frames]

    def memory(self, device, dtype):
        global_memory, local_memory = reference_memory(self.frames)
        return global_memory.to(device, dtype), local_memory.to(device, dtype)


def reference_pipeline(ref, ours, glm):
    """The reference pipeline holding the same weights as our pipeline `ours` (and a reference DGLM)."""
    from diffusers import CogVideoXDPMScheduler

    transformer = ref.Transformer(**_init_args(ours.transformer.config)).eval()
    transformer.load_state_dict(ours.transformer.state_dict(), strict=True)
    control_config = dict(_init_args(ours.sketch_dit.config), use_rotary_positional_embeddings=True,
                          out_channels=ours.transformer.config.out_channels)
    control = ref.Control3DModel(**control_config).eval()
    control.load_state_dict(ours.sketch_dit.state_dict(), strict=True)
    pipe = ref.Pipeline(
        tokenizer=ours.tokenizer, text_encoder=ours.text_encoder, vae=ours.vae, transformer=transformer,
        transformer_control=control, scheduler=CogVideoXDPMScheduler.from_config(ours.scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _init_args(config) -> dict:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def reference_glm(ref, ours_glm):
    c = ours_glm.config
    glm = ref.glm(dim=c.dim, depth=c.num_memory_layers, dim_head=c.head_dim, heads=c.heads, output_dim=c.dim,
                  ff_mult=c.ff_mult).eval()
    glm.load_state_dict(ours_glm.state_dict(), strict=True)
    return glm


def reference_detector(ref, state_dict):
    det = ref.Generator(3, 1, 3).eval()  # LineartDetector.load_model: Generator(3, 1, 3), sk_model.pth
    det.load_state_dict(state_dict, strict=True)
    return det


def _sketch_latents(pipe, detector, video: torch.Tensor, *, first_too: bool):
    """process_sketch (lines 156-187) / process_sketch_image (190-217): uint8 (F, 3, H, W) -> latents."""
    with torch.no_grad():
        sketch = detector(video.float() / 255.0)  # LineartDetector.__call__, tensor path
    sketch = (sketch > 0.78).float()
    sketch = 1 - sketch
    sketch = sketch.repeat(1, 3, 1, 1)
    sketch = (sketch - 0.5) / 0.5
    sketch = sketch.unsqueeze(0).permute(0, 2, 1, 3, 4)  # [B, C, F, H, W]
    image = sketch[:, :, :1].clone()
    sf = pipe.vae.config.scaling_factor
    with torch.no_grad():
        latents = pipe.vae.encode(sketch).latent_dist.sample() * sf
        first = pipe.vae.encode(image).latent_dist.sample() * sf if first_too else None
    latents = latents.permute(0, 2, 1, 3, 4)
    return latents, (first.permute(0, 2, 1, 3, 4) if first is not None else None)


def save_segments(total_frames: int, segment_length: int, overlap: int) -> list[tuple[int, int]]:
    """Line 299: full windows only."""
    start, segments = 0, []
    while start + segment_length <= total_frames:
        segments.append((start, start + segment_length))
        start = start + segment_length - overlap
    return segments


def run_reference(ref, pipe, detector, glm, video: np.ndarray, prompt: str, *, seed: int, steps: int,
                  guidance_scale: float, segment_length: int, overlap: int, work: Path, memory=None):
    """The script's main loop (lines 384-545) for a color clip whose first frame is the reference
    (`reference_image == "0"`); `memory(generated uint8 frames)` -> (global, local), by default
    `reference_memory`. Returns, per segment, (latents without the padding frame, float frames
    (F, H, W, 3) in [0, 1], uint8 frames)."""
    memory = reference_memory if memory is None else memory
    from PIL import Image

    height, width = video.shape[1:3]
    half = overlap // 2
    generated: list[np.ndarray] = []  # autoreg_video_save: frames[1:73] of the first video, [8:73] of later ones
    results = []
    for idx, (start, end) in enumerate(save_segments(len(video), segment_length, overlap)):
        frames = torch.from_numpy(video[start:end]).permute(0, 3, 1, 2)  # proccess_frame: [F, C, H, W]
        torch.manual_seed(seed)  # the script leaves these draws unseeded; ours are seeded per segment
        sketches, sketches_first_frame = _sketch_latents(pipe, detector, frames, first_too=True)
        if idx == 0:  # global_image is None: the reference image's own line art fills the padding slot
            sketches_first_frame = _sketch_latents(pipe, detector, frames[:1], first_too=False)[0]
        image = Image.fromarray(video[0])  # to_pil(videos[0]) of the first segment, kept as global_image
        global_memory = local_memory = None
        if idx > 0:
            global_memory, local_memory = memory(generated)
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # log_validation
        generator = torch.Generator().manual_seed(seed)
        tensor_dir = work / "video_tensors"
        tensor_dir.mkdir(parents=True, exist_ok=True)
        ref.pipeline_module.torch = _TorchOnCpu()
        try:
            output, latents = pipe(
                image=image, prompt=prompt + PROMPT_SUFFIX, guidance_scale=guidance_scale, use_dynamic_cfg=False,
                height=height, width=width, sketches=sketches, sketches_first_frame=sketches_first_frame,
                num_frames=segment_length, generator=generator, output_type="pt", num_inference_steps=steps,
                use_glm=idx > 0, global_memory=global_memory, local_memory=local_memory, glm=glm,
                video_tensor_path=str(tensor_dir), past_latents=None, clip_memory=idx > 0,
            )
        finally:
            ref.pipeline_module.torch = torch
        pt = output.frames[0]  # (F, C, H, W) in [0, 1]
        rgb = (pt.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # VaeImageProcessor.numpy_to_pil
        keep_from = 1 if idx == 0 else half
        generated += list(rgb[keep_from:segment_length - half])
        results.append((latents, pt.permute(0, 2, 3, 1), rgb))
    return results
