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
# --smoke: the same code path on CPU at toy sizes, to check the script itself without a GPU.
SMOKE_BASE = dict(BASE_CONFIG, num_attention_heads=2, attention_head_dim=16, time_embed_dim=8, ofs_embed_dim=8,
                  text_embed_dim=16, num_layers=4, sample_width=8, sample_height=8)
SMOKE_DGLM = dict(dim=32, heads=2, head_dim=16, memory_dim=8, mapping_dims=(8, 16))
SMOKE_TOKENS = (16, 8)


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
    args = parser.parse_args(argv)

    import torch

    if args.count_only:
        return _count_only(args)

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
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(report)
        os.replace(tmp, args.out)
    return 0


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
