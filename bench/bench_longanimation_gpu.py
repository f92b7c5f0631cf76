"""GPU benchmark of the LongAnimation denoiser at full size, beside the stock CogVideoX1.5 I2V transformer.

The compute does not depend on the weights' values, so every model is built
with random weights (no download). For each resolution it times a few
denoising steps after warm-up (batch 2 = CFG) and extrapolates to 50:

  * stock   : diffusers CogVideoXTransformer3DModel, CogVideoX1.5-5B-I2V config
  * ours    : SketchDiT + DGLM + the same base with the control injected (one pipeline step)

and reports seconds per frame, FLOPs per step (torch FlopCounterMode), MFU
against the card's dense bf16 peak, and peak GPU memory, fully resident and in
offload mode (only the denoiser resident, the VAE decoding with tiling beside
it). Targets from issue 4: SketchDiT+DGLM add <= 15% to the base step, >= 45%
MFU for the denoiser, <= 24 GB peak in offload mode.

    python bench/bench_longanimation_gpu.py --out bench/results/longanimation_gpu.md

`--offload model` (or `none`) adds the GPU memory plan of engine/backends/longanimation/residency.py
run for real: every part at full size with random weights (transformer, SketchDiT, DGLM, Video-XL
with its vision tower, T5, VAE, line-art network) held on the CPU, each phase entered as the
pipeline enters it (prompt, line-art, latents, memory, denoise, decode), one representative call
run, and per phase the seconds the moves took, the seconds the call took and the peak GPU memory.
`--plan-only` needs no GPU: per phase, the parameter bytes on the device under each mode, counted
on the meta device from the real configs, plus stated activation estimates (not a measurement):

    python bench/bench_longanimation_gpu.py --plan-only --out bench/results/longanimation_residency.md
    python bench/bench_longanimation_gpu.py --offload model --out bench/results/longanimation_gpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

BASE_CONFIG = dict(  # CogVideoX1.5-5B-I2V transformer
    num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, time_embed_dim=512,
    ofs_embed_dim=512, text_embed_dim=4096, num_layers=42, sample_width=300, sample_height=300, sample_frames=81,
    patch_size=2, patch_size_t=2, patch_bias=False, max_text_seq_length=226, use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False, attention_bias=True,
)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H20": 148.0, "A100": 312.0, "L40S": 362.0, "A6000": 155.0,
                    "4090": 165.0}
# Video-XL memory sizes as the reference runs them (engine/backends/longanimation/videoxl.py):
# the prompt's ~14 sink tokens, 144 visual tokens a frame compressed 8:1 into beacons, ~16 after.
GLOBAL_TOKENS, LOCAL_TOKENS = 14 + 650 * 144 // 8 + 16, 14 + 20 * 144 // 8 + 16  # 11730, 390
# The other parts at their released sizes (config.json of each release folder).
T5_CONFIG = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)  # CogVideoX's T5-v1.1-XXL encoder
VAE_CONFIG = dict(scaling_factor=0.7, invert_scale_latents=True)  # CogVideoX1.5's VAE: the class defaults otherwise
VIDEOXL_CONFIG = dict(  # Video-XL's config.json: Qwen2-7B-Instruct + beacons (videoxl_config.VideoXLConfig)
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
    mm_hidden_size=1024, beacon_window=1440, beacon_stride=1440,
)
CLIP_CONFIG = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   image_size=336, patch_size=14, projection_dim=768)  # CLIP ViT-L/14-336's vision tower
PROMPT_TOKENS = (14, 16)  # Video-XL's prompt: tokens before and after <image>
GLOBAL_FRAMES, LOCAL_FRAMES = 650, 20
# --smoke: the same code path on CPU at toy sizes, to check the script itself without a GPU.
SMOKE_BASE = dict(BASE_CONFIG, num_attention_heads=2, attention_head_dim=16, time_embed_dim=8, ofs_embed_dim=8,
                  text_embed_dim=16, num_layers=4, sample_width=8, sample_height=8)
SMOKE_DGLM = dict(dim=32, heads=2, head_dim=16, memory_dim=8, mapping_dims=(8, 16))
SMOKE_TOKENS = (16, 8)
SMOKE_T5 = dict(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
SMOKE_VAE = dict(down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
                 block_out_channels=(8, 8, 8, 8), latent_channels=16, layers_per_block=1, norm_num_groups=2,
                 scaling_factor=0.7, invert_scale_latents=True)
SMOKE_VIDEOXL = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=9, num_attention_heads=4,
                     num_key_value_heads=1, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=256,
                     mm_hidden_size=16, beacon_window=16, beacon_stride=16)
SMOKE_CLIP = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=56,
                  patch_size=7)


def _peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _build(base_config, glm_config, dtype, device):
    import torch
    from diffusers import CogVideoXTransformer3DModel

    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory
    from longanim.engine.backends.longanimation.sketch_dit import SketchDiT

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            base = CogVideoXTransformer3DModel(**base_config).eval().requires_grad_(False)
            sketch = SketchDiT(**SketchDiT.config_from_base(base_config)).eval().requires_grad_(False)
            glm = DynamicGlobalLocalMemory(**glm_config).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)
    for m in (sketch, glm):  # random instead of the zero init, so the control path is not trivially zero
        torch.nn.init.normal_(m.get_parameter("zero_conv.weight" if m is sketch else "proj_out"), std=0.02)
    return base, sketch, glm


def _inputs(base_config, memory_dim, memory_tokens, height, width, frames, dtype, device):
    import torch

    from longanim.engine.backends.longanimation.pipeline import rotary_embedding

    lat = (frames - 1) // 4 + 1
    lat += lat % 2  # CogVideoX1.5 pads time to the temporal patch
    h, w = height // 8, width // 8
    g = torch.Generator(device).manual_seed(0)
    channels, text = base_config["in_channels"], base_config["text_embed_dim"]
    model_in = torch.randn(2, lat, channels, h, w, generator=g, device=device, dtype=dtype)
    control_in = torch.randn(2, lat, channels, h, w, generator=g, device=device, dtype=dtype)
    prompt = torch.randn(2, 226, text, generator=g, device=device, dtype=dtype)
    memory = tuple(torch.randn(1, 2, 3, n, memory_dim, generator=g, device=device, dtype=dtype)
                   for n in memory_tokens)
    timestep = torch.full((2,), 500, device=device, dtype=torch.long)
    ofs = torch.full((1,), 2.0, device=device, dtype=dtype)

    rope = rotary_embedding(SimpleNamespace(**base_config), h, w, lat, device)
    return dict(model_in=model_in, control_in=control_in, prompt=prompt, memory=memory, timestep=timestep, ofs=ofs,
                rope=rope, tokens=(lat // 2) * (h // 2) * (w // 2))


def _step_fns(base, sketch, glm, x):
    from longanim.engine.backends.longanimation.pipeline import controlled_noise

    def stock():
        return base(hidden_states=x["model_in"], encoder_hidden_states=x["prompt"], timestep=x["timestep"],
                    ofs=x["ofs"], image_rotary_emb=x["rope"], return_dict=False)[0]

    def ours():
        return controlled_noise(base, sketch, glm, x["model_in"], x["control_in"], x["prompt"], x["timestep"],
                                x["ofs"], x["rope"], x["memory"], 0.5)

    return {"stock": stock, "ours": ours}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def _time(fn, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync()
    return (time.perf_counter() - start) / steps


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _vae_decode_peak(height, width, frames, dtype, device) -> tuple[float, float]:
    """Seconds and peak GiB (on top of whatever is resident) of a tiled VAE decode of one segment."""
    import torch
    from diffusers import AutoencoderKLCogVideoX

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            vae = AutoencoderKLCogVideoX(scaling_factor=0.7, invert_scale_latents=True).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)
    vae.enable_tiling()
    lat = (frames - 1) // 4 + 1
    z = torch.randn(1, 16, lat, height // 8, width // 8, device=device, dtype=dtype)
    _sync()
    _reset_peak()
    start = time.perf_counter()
    vae.decode(z)
    _sync()
    seconds = time.perf_counter() - start
    peak = _peak_gib()
    del vae
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return seconds, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", nargs="+", default=["576x1024", "768x1360"], help="HxW")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="denoising steps extrapolated to")
    parser.add_argument("--timed-steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card")
    parser.add_argument("--no-vae", action="store_true", help="skip the VAE decode (offload peak) measurement")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on CPU: checks the script, measures nothing")
    parser.add_argument("--count-only", action="store_true",
                        help="no GPU needed: count FLOPs per step at full size on the meta device, time nothing")
    parser.add_argument("--offload", choices=["none", "model"], default=None,
                        help="also run the GPU memory plan (residency.py) with every part at full size")
    parser.add_argument("--plan-only", action="store_true",
                        help="no GPU needed: parameter bytes on the device per phase, from the real configs on meta")
    args = parser.parse_args(argv)

    import torch

    if args.count_only:
        return _count_only(args)
    if args.plan_only:
        return _write(_plan_report(args), args.out)

    if args.smoke:
        device, dtype, name, peak = torch.device("cpu"), torch.float32, "CPU smoke run", None
        base_config, glm_config, tokens = SMOKE_BASE, SMOKE_DGLM, SMOKE_TOKENS
        args.resolutions, args.frames, args.overlap, args.no_vae = ["32x48"], 9, 4, True
    elif not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (or --smoke)", file=sys.stderr)
        return 2
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        name = torch.cuda.get_device_name(device)
        peak = _peak_tflops(name, args.peak_tflops)
        base_config, glm_config, tokens = BASE_CONFIG, {}, (GLOBAL_TOKENS, LOCAL_TOKENS)

    args.memory_tokens = tokens
    base, sketch, glm = _build(base_config, glm_config, dtype, device)
    weights_gib = (torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else
                   sum(p.numel() * p.element_size() for m in (base, sketch, glm) for p in m.parameters()) / 2**30)
    rows = []
    for res in args.resolutions:
        height, width = map(int, res.lower().split("x"))
        x = _inputs(base_config, glm.config.memory_dim, tokens, height, width, args.frames, dtype, device)
        fns = _step_fns(base, sketch, glm, x)
        row = {"res": res, "tokens": x["tokens"]}
        with torch.no_grad():
            for label, fn in fns.items():
                _reset_peak()
                seconds = _time(fn, args.warmup, args.timed_steps)
                row[label] = dict(step=seconds, peak=_peak_gib(), flops=_flops(fn))
            if not args.no_vae:  # offload mode: denoiser resident, the VAE visits to decode with tiling
                row["vae"] = _vae_decode_peak(height, width, args.frames, dtype, device)
        rows.append(row)
        del x, fns
        print(_row_text(row, args, peak), flush=True)

    report = _report(rows, args, name, peak, weights_gib)
    if args.offload:
        del base, sketch, glm
        if device.type == "cuda":
            torch.cuda.empty_cache()
        report += "\n" + _offload_report(args, device, dtype, smoke=args.smoke)
    return _write(report, args.out)


def _write(report: str, out: Path | None) -> int:
    print(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(report)
        os.replace(tmp, out)
    return 0


# --- the GPU memory plan (engine/backends/longanimation/residency.py) ------------------------------


def _build_parts(smoke: bool, dtype, device) -> dict:
    """Every part the pipeline holds, random weights, at full (or toy) size, on `device`."""
    import torch
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    from longanim.engine.backends.longanimation.lineart_network import LineartNetwork
    from longanim.engine.backends.longanimation.videoxl import VideoXLMemory
    from longanim.engine.backends.longanimation.videoxl_config import VideoXLConfig

    transformer, sketch, glm = _build(SMOKE_BASE if smoke else BASE_CONFIG, SMOKE_DGLM if smoke else {}, dtype, device)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            t5 = T5EncoderModel(T5Config(**(SMOKE_T5 if smoke else T5_CONFIG)))
            vae = AutoencoderKLCogVideoX(**(SMOKE_VAE if smoke else VAE_CONFIG))
            videoxl = VideoXLMemory(VideoXLConfig(**(SMOKE_VIDEOXL if smoke else VIDEOXL_CONFIG)),
                                    SMOKE_CLIP if smoke else CLIP_CONFIG,
                                    ([0] * PROMPT_TOKENS[0], [0] * PROMPT_TOKENS[1]))
            lineart = LineartNetwork()
    finally:
        torch.set_default_dtype(previous)
    keep = set(T5EncoderModel._keep_in_fp32_modules or [])  # from_pretrained(torch_dtype=bf16) keeps T5's `wo` fp32
    for name, module in t5.named_modules():
        if name.rsplit(".", 1)[-1] in keep:
            module.to(torch.float32)
    parts = dict(transformer=transformer, sketch_dit=sketch, dglm=glm, memory_encoder=videoxl, text_encoder=t5,
                 vae=vae, lineart=lineart)
    for module in parts.values():
        module.eval().requires_grad_(False)
    return parts


def _gib(module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**30


def _stated_activations(height: int, width: int, frames: int) -> dict[str, tuple[float, str]]:
    """GiB per phase beyond the parameters, by formula (bf16, CFG batch 2): estimates, not measurements."""
    lat = (frames - 1) // 4 + 1
    lat += lat % 2
    vision = (lat // 2) * (height // 16) * (width // 16)
    n, d, b = vision + 226, BASE_CONFIG["num_attention_heads"] * BASE_CONFIG["attention_head_dim"], 2
    block = 14 * b * n * d * 2  # residual, norm, q, k, v, attention out, 4x FF in and 4x FF out (SDPA: no n^2 scores)
    control = b * vision * d * 2  # SketchDiT's output, added after every even block
    glm_tokens = 14 + GLOBAL_FRAMES * 144 // 8 + 16
    dglm = 3 * 2 * glm_tokens * (1024 + 2048 + d) * 2  # memory mapped up to the model width, 3 layers x K and V
    kv = 28 * 2 * glm_tokens * 512 * 2  # Video-XL's cache of 11,730 tokens
    pixels = GLOBAL_FRAMES * 3 * 336 * 336 * (4 + 2)  # every frame normalised at once (fp32, then bf16)
    visual = GLOBAL_FRAMES * 144 * 3584 * 2  # the projected, pooled visual tokens before the LM
    clip = 25 * 32 * 577 * 1024 * 2  # one vision batch of 32 frames, every hidden state kept
    lines = 8 * 256 * (height // 4) * (width // 4) * 2 * 3  # line-art batch of 8 at its widest stage, ~3 live
    g = 2**30
    return {
        "prompt": (2 * 226 * 10240 * 4 / g, "T5 feed-forward of 226 tokens"),
        "lineart": (lines / g, "8 frames at the widest stage (256 ch at 1/4 size), ~3 tensors live"),
        "latents": (float("nan"), "tiled VAE encode: not estimated, measured by --offload on a GPU"),
        "memory": ((kv + pixels + visual + clip) / g,
                   f"cache {kv / g:.2f} + 650 frames' pixels {pixels / g:.2f} + visual tokens {visual / g:.2f} "
                   f"+ a CLIP batch of 32 {clip / g:.2f}"),
        "denoise": ((block + control + dglm) / g,
                    f"one block's live set 14 x {b} x {n} x {d} x 2 B {block / g:.2f} + control {control / g:.2f} "
                    f"+ DGLM memory mappings {dglm / g:.2f}"),
        "decode": (float("nan"), "tiled VAE decode: not estimated, measured by --offload on a GPU"),
    }


def _plan_report(args) -> str:
    """Parameter GiB on the device per phase under each offload mode, counted on the meta device."""
    import torch

    from longanim.engine.backends.longanimation.residency import PHASES, resident

    parts = _build_parts(False, torch.bfloat16, torch.device("meta"))
    sizes = {name: _gib(m) for name, m in parts.items()}
    lines = [
        "# LongAnimation GPU memory plan: parameters on the device per phase (an estimate, not a GPU measurement)",
        "",
        f"Command: `python bench/bench_longanimation_gpu.py {' '.join(sys.argv[1:])}`; torch "
        f"{torch.__version__}. Every part built on the meta device from the released configs, bf16 (T5's `wo` "
        "layers fp32, as `from_pretrained(torch_dtype=bf16)` keeps them); nothing was run on a GPU.",
        "",
        "| part | parameters (GiB) |",
        "|---|---|",
    ] + [f"| {name} | {gib:.2f} |" for name, gib in sizes.items()] + [f"| all | {sum(sizes.values()):.2f} |"]
    worst = {}
    for res in args.resolutions:
        height, width = map(int, res.lower().split("x"))
        acts = _stated_activations(height, width, args.frames)
        lines += [
            "",
            f"Per phase at {res}, {args.frames}-frame segments. Activations are stated estimates (formula in the "
            "last column), not measurements; the VAE's are left to the GPU run.",
            "",
            "| phase | on the device with offload=model | parameters (GiB) | + stated activations (GiB) "
            "| total (GiB) | offload=none total (GiB) | activation estimate |",
            "|---|---|---|---|---|---|---|",
        ]
        for phase in PHASES:
            on = sorted(resident("model", phase))
            params = sum(sizes[n] for n in on)
            act, how = acts[phase]
            known = act == act  # nan: not estimated
            total = params + (act if known else 0.0)
            worst[res] = max(worst.get(res, 0.0), total)
            lines.append(f"| {phase} | {', '.join(on)} | {params:.2f} | {f'{act:.2f}' if known else 'n/a'} "
                         f"| {total:.2f}{'' if known else ' + VAE activations'} "
                         f"| {sum(sizes.values()) + (act if known else 0.0):.2f} | {how} |")
    target = 24e9 / 2**30
    lines.append("")
    for res, gib in worst.items():
        lines.append(
            f"- {res}: largest phase with offload=model (parameters + stated activations) {gib:.1f} GiB against "
            f"the 24 GB ({target:.2f} GiB) target: {'within it' if gib <= target else 'OVER it'} by this estimate "
            f"({target - gib:+.1f} GiB for what it leaves out: the CUDA context, allocator slack, the VAE's tiles).")
    lines += [
        f"- offload=none holds every part at once: {sum(sizes.values()):.1f} GiB of parameters before any "
        "activation, a 48 GB card at least.",
        "",
        "To measure it: `python bench/bench_longanimation_gpu.py --offload model` on a GPU (per phase: moves, "
        "call, peak GPU memory).",
    ]
    return "\n".join(lines) + "\n"


def _phase_calls(parts, smoke: bool, height: int, width: int, frames: int, dtype, device) -> dict:
    """One representative call per phase, as the pipeline makes it (inputs made inside, so they count)."""
    import numpy as np
    import torch

    from longanim.engine.backends.longanimation.pipeline import controlled_noise

    base_config = SMOKE_BASE if smoke else BASE_CONFIG
    text_length = 8 if smoke else 226
    glob, local = (6, 2) if smoke else (GLOBAL_FRAMES, LOCAL_FRAMES)
    side = parts["memory_encoder"].input_size[0]
    rng = np.random.default_rng(0)
    lat = (frames - 1) // 4 + 1

    def prompt():
        ids = torch.zeros(1, text_length, dtype=torch.long, device=device)
        return [parts["text_encoder"](ids)[0] for _ in range(2)]  # negative, then positive, one at a time

    def lineart():
        return parts["lineart"].line_masks(rng.integers(0, 256, (8, height, width, 3), dtype=np.uint8))

    def latents():
        video = torch.rand(1, 3, frames, height, width, device=device, dtype=dtype) * 2 - 1
        return parts["vae"].encode(video).latent_dist.sample()

    def memory():
        frames_global = rng.integers(0, 256, (glob, side, side, 3), dtype=np.uint8)
        return parts["memory_encoder"].encode(frames_global, frames_global[-local:])

    def denoise():
        tokens = (parts["memory_encoder"].memory_tokens(glob), parts["memory_encoder"].memory_tokens(local))
        x = _inputs(base_config, parts["dglm"].config.memory_dim, tokens, height, width, frames, dtype, device)
        return controlled_noise(parts["transformer"], parts["sketch_dit"], parts["dglm"], x["model_in"],
                                x["control_in"], x["prompt"], x["timestep"], x["ofs"], x["rope"], x["memory"], 0.5)

    def decode():
        z = torch.randn(1, 16, lat, height // 8, width // 8, device=device, dtype=dtype)
        return parts["vae"].decode(z).sample

    return dict(prompt=prompt, lineart=lineart, latents=latents, memory=memory, denoise=denoise, decode=decode)


def _offload_report(args, device, dtype, smoke: bool) -> str:
    """The plan run for real: per phase, the moves' seconds, the call's seconds and the peak GPU memory."""
    import torch

    from longanim.engine.backends.longanimation.residency import PHASES, Residency

    start = time.perf_counter()
    parts = _build_parts(smoke, dtype, torch.device("cpu"))  # held on the CPU; the plan brings them over
    parts["vae"].enable_tiling()
    built = time.perf_counter() - start
    release = torch.cuda.empty_cache if device.type == "cuda" else None
    residency = Residency(parts, args.offload, device=device, offload_device="cpu", release=release)
    lines = [
        f"## GPU memory plan, offload={args.offload}",
        "",
        f"Every part at {'toy' if smoke else 'full'} size with random weights "
        f"({sum(_gib(m) for m in parts.values()):.1f} GiB of parameters, built on the CPU in {built:.0f}s), the phases entered in the pipeline's order, one call "
        "each (prompt: T5 twice; lineart: 8 frames; latents: a tiled VAE encode of one segment; memory: Video-XL over "
        f"{6 if smoke else GLOBAL_FRAMES} + {2 if smoke else LOCAL_FRAMES} frames; denoise: one step, CFG batch 2; "
        "decode: a tiled VAE decode of one segment).",
        "",
        "| resolution | phase | on the device | moves (s) | call (s) | peak GiB |",
        "|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for res in args.resolutions:
        height, width = map(int, res.lower().split("x"))
        calls = _phase_calls(parts, smoke, height, width, args.frames, dtype, device)
        for phase in PHASES:
            _sync()
            t0 = time.perf_counter()
            residency.enter(phase)
            _sync()
            moved = time.perf_counter() - t0
            _reset_peak()
            t0 = time.perf_counter()
            with torch.no_grad():
                out = calls[phase]()
            _sync()
            ran = time.perf_counter() - t0
            peak = _peak_gib()
            worst = max(worst, peak) if peak == peak else worst
            del out
            lines.append(f"| {res} | {phase} | {', '.join(sorted(residency.on_device()))} | {moved:.2f} | {ran:.2f} "
                         f"| {peak:.1f} |")
            print(lines[-1], flush=True)
    if device.type == "cuda":
        met = "met" if worst <= 24e9 / 2**30 else "NOT met"
        lines += ["", f"Peak over all phases: {worst:.1f} GiB (target <= 24 GB = 22.35 GiB with offload=model): {met}"]
    return "\n".join(lines) + "\n"


def _count_only(args) -> int:
    """FLOPs per step of both denoisers at full size, counted on the meta device (no memory, no GPU)."""
    import torch

    meta = torch.device("meta")
    base, sketch, glm = _build(BASE_CONFIG, {}, torch.bfloat16, meta)
    for res in args.resolutions:
        height, width = map(int, res.lower().split("x"))
        x = _inputs(BASE_CONFIG, 512, (GLOBAL_TOKENS, LOCAL_TOKENS), height, width, args.frames, torch.bfloat16, "cpu")
        x = {k: _to_meta(v) for k, v in x.items()}
        with torch.no_grad():
            flops = {label: _flops(fn) for label, fn in _step_fns(base, sketch, glm, x).items()}
        print(f"{res}: {x['tokens']} vision tokens per sample; per step (CFG batch 2): stock "
              f"{flops['stock'] / 1e12:.1f} TFLOP, ours {flops['ours'] / 1e12:.1f} TFLOP "
              f"(+{100 * (flops['ours'] / flops['stock'] - 1):.1f}%)")
    return 0


def _to_meta(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, tuple):
        return tuple(_to_meta(v) for v in value)
    return value


def _row_text(row, args, peak) -> str:
    s, o = row["stock"], row["ours"]
    return (f"{row['res']}: stock {s['step']:.3f}s/step, ours {o['step']:.3f}s/step "
            f"(+{100 * (o['step'] / s['step'] - 1):.1f}%), peak {o['peak']:.1f} GiB")


def _report(rows, args, name, peak, weights_gib) -> str:
    new_frames = args.frames - args.overlap
    lines = [
        "# LongAnimation denoiser on GPU",
        "",
        f"Device: {name}; torch {__import__('torch').__version__}; python {platform.python_version()}.",
        f"Command: `python bench/bench_longanimation_gpu.py {' '.join(sys.argv[1:])}`",
        f"Random full-size weights (bf16, SDPA), batch 2 (CFG), {args.frames}-frame segments, {args.timed_steps} "
        f"timed steps after {args.warmup} warm-up, extrapolated to {args.steps} steps. Resident weights "
        f"(base + SketchDiT + DGLM): {weights_gib:.1f} GiB. Memory tokens: {args.memory_tokens[0]} global + "
        f"{args.memory_tokens[1]} local. Seconds per frame: {args.steps} steps / {new_frames} new frames per segment of a "
        f"long shot (/{args.frames} for a single segment in brackets); denoiser only, VAE and T5 excluded.",
        "",
        "| resolution | model | s/step | s/frame | TFLOP/step | MFU | peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for label in ("stock", "ours"):
            r = row[label]
            total = r["step"] * args.steps
            mfu = f"{100 * r['flops'] / r['step'] / (peak * 1e12):.1f}%" if peak else "n/a"
            lines.append(f"| {row['res']} | {label} | {r['step']:.3f} | {total / new_frames:.2f} "
                         f"({total / args.frames:.2f}) | {r['flops'] / 1e12:.1f} | {mfu} | {r['peak']:.1f} |")
    lines += ["", "Targets:"]
    for row in rows:
        s, o = row["stock"], row["ours"]
        overhead = 100 * (o["step"] / s["step"] - 1)
        lines.append(f"- {row['res']}: SketchDiT+DGLM overhead {overhead:+.1f}% (target <= 15%): "
                     f"{'met' if overhead <= 15 else 'NOT met'}")
        if peak:
            mfu = 100 * o["flops"] / o["step"] / (peak * 1e12)
            lines.append(f"- {row['res']}: denoiser MFU {mfu:.1f}% (target >= 45%): {'met' if mfu >= 45 else 'NOT met'}")
        if "vae" in row:
            seconds, vae_peak = row["vae"]
            offload_peak = max(o["peak"], vae_peak)
            lines.append(f"- {row['res']}: offload-mode peak {offload_peak:.1f} GiB (denoiser step {o['peak']:.1f}, "
                         f"tiled VAE decode beside it {vae_peak:.1f}, {seconds:.1f}s) (target <= 24 GB = 22.4 GiB): "
                         f"{'met' if offload_peak <= 22.35 else 'NOT met'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
