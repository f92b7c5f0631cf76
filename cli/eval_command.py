"""`longanim eval PRED GT`: score a colorized sequence against its ground truth.

Frames are paired by frame number (pred.1001.png with gt.1001.png); frames that only
one side has are reported and skipped. Prints a summary; with -o writes
metrics.json, per_frame.csv and drift.png there.
"""

from __future__ import annotations

import sys

NAME = "eval"
HELP = "Compare a colorized image sequence with ground truth (color accuracy, drift, flicker, PSNR/SSIM, FID/FVD/LPIPS)."


def add_arguments(parser) -> None:
    parser.add_argument("pred", help="predicted sequence: a folder holding one numbered sequence, a pattern "
                                     "(name.####.png, name.%%04d.png) or a video")
    parser.add_argument("gt", help="ground-truth sequence, same forms")
    parser.add_argument("-o", "--output", metavar="OUTDIR",
                        help="write metrics.json, per_frame.csv and drift.png here (otherwise only print)")
    parser.add_argument("--lineart", metavar="SEQ",
                        help="line-art sequence: its ink marks the lines excluded from flat-region accuracy "
                             "(otherwise lines are guessed from the ground truth)")
    parser.add_argument("--masks", metavar="SEQ",
                        help="character-mask sequence (nonzero = character): adds accuracy on characters' pixels")
    parser.add_argument("--tolerance", type=float, default=None, metavar="DE",
                        help="CIEDE2000 within which a pixel's color counts as right (default 3)")
    parser.add_argument("--fid-weights", metavar="PATH", help="inception-2015-12-05.pt TorchScript file: adds FID")
    parser.add_argument("--fvd-weights", metavar="PATH", help="i3d_torchscript.pt TorchScript file: adds FVD")
    parser.add_argument("--lpips-weights", metavar="PATH",
                        help="LPIPS TorchScript file (StyleGAN vgg16.pt, or a model(a, b) -> distance): adds LPIPS")
    parser.add_argument("--device", help="torch device for FID/FVD/LPIPS (default: cuda if available, else cpu)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from contextlib import ExitStack

    from longanim.engine.errors import InputError
    from longanim.engine.evaluation import report as metrics
    from longanim.engine.evaluation.pixel_metrics import line_mask_from_lineart
    from longanim.engine.sequences.reader import open_sequence
    from longanim.progress import ProgressBar

    if args.tolerance is not None and not args.tolerance > 0:
        raise InputError("--tolerance must be a positive CIEDE2000 value")
    with ExitStack() as stack:
        pred = stack.enter_context(open_sequence(args.pred))
        gt = stack.enter_context(open_sequence(args.gt))
        common = sorted(set(pred.frames) & set(gt.frames))
        if not common:
            raise InputError(f"no common frame numbers: prediction has {_span(pred.frames)}, "
                             f"ground truth has {_span(gt.frames)}")
        only = sorted(set(pred.frames) ^ set(gt.frames))
        if only:
            print(f"longanim eval: {len(only)} frame(s) present on one side only, skipped: {_span(only)}",
                  file=sys.stderr)
        extras = {}
        for flag, source in (("lineart", args.lineart), ("masks", args.masks)):
            if source:
                seq = stack.enter_context(open_sequence(source))
                missing = sorted(set(common) - set(seq.frames))
                if missing:
                    raise InputError(f"--{flag} sequence lacks frame(s) {_span(missing)}")
                extras[flag] = seq

        def frames(seq):
            for n in common:
                yield _rgb8(seq.read(n))

        bar = None if args.quiet else ProgressBar("eval", len(common))

        def pairs():
            for i, (n, p, g) in enumerate(zip(common, frames(pred), frames(gt))):
                if p.shape != g.shape:
                    raise InputError(f"frame {n}: prediction is {p.shape[1]}x{p.shape[0]}, "
                                     f"ground truth is {g.shape[1]}x{g.shape[0]}")
                yield p, g
                if bar is not None:
                    bar.update(i + 1)

        kwargs = {}
        if "lineart" in extras:
            kwargs["line_masks"] = (line_mask_from_lineart(a) for a in frames(extras["lineart"]))
        if args.tolerance is not None:
            kwargs["tolerance"] = args.tolerance
        masks = (extras["masks"].read(n).pixels for n in common) if "masks" in extras else None
        preds, gts = _unzip(pairs())
        report = metrics.evaluate(preds, gts, masks, frame_numbers=common, fid_weights=args.fid_weights,
                                  fvd_weights=args.fvd_weights, lpips_weights=args.lpips_weights,
                                  device=args.device, **kwargs)
    print(format_summary(report.summary))
    if args.output:
        paths = metrics.write_report(report, args.output)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def format_summary(summary: dict) -> str:
    rows = [
        ("frames", "frames", "{:d}"),
        ("accuracy", "flat-region accuracy", "{:.2%}"),
        ("accuracy_characters", "  on characters", "{:.2%}"),
        ("delta_e_flat_mean", "mean CIEDE2000 (flat)", "{:.3f}"),
        ("delta_e_mean", "mean CIEDE2000 (all)", "{:.3f}"),
        ("drift_slope_per_100", "drift, dE per 100 frames", "{:+.3f}"),
        ("accuracy_first_10pct", "accuracy, first 10%", "{:.2%}"),
        ("accuracy_last_10pct", "accuracy, last 10%", "{:.2%}"),
        ("flicker_mae_mean", "flicker (levels)", "{:.3f}"),
        ("flicker_fraction_mean", "flickering pixels", "{:.3%}"),
        ("psnr_mean", "PSNR (dB)", "{:.2f}"),
        ("ssim_mean", "SSIM", "{:.4f}"),
        ("lpips_mean", "LPIPS", "{:.4f}"),
        ("fid", "FID", "{:.3f}"),
        ("fvd", "FVD", "{:.3f}"),
    ]
    lines = []
    for key, label, fmt in rows:
        if key not in summary:
            continue
        v = summary[key]
        text = "n/a" if v is None or (isinstance(v, float) and v != v) else fmt.format(v)
        lines.append(f"  {label:<26} {text}")
    if summary.get("worst_frames"):
        lines.append(f"  {'worst frames':<26} {', '.join(map(str, summary['worst_frames']))}")
    return "\n".join(lines)


def _unzip(pairs):
    """Two iterators over one stream of (pred, gt) pairs; `evaluate` takes them in lockstep,
    so the tee buffers at most one pair."""
    import itertools

    a, b = itertools.tee(pairs)
    return (p for p, _ in a), (g for _, g in b)


def _span(frames) -> str:
    frames = sorted(frames)
    if not frames:
        return "no frames"
    if len(frames) <= 6:
        return ", ".join(map(str, frames))
    return f"{len(frames)} frames {frames[0]}-{frames[-1]}"


def _rgb8(image):
    """RGB uint8 display values: the reader's colorspace decides (EXR is linear and gets the
    sRGB transfer function, 16-bit is scaled), alpha is dropped, gray is repeated."""
    import numpy as np

    from longanim.engine.sequences.colorspace import to_uint8_display

    a = to_uint8_display(image)
    if a.shape[2] < 3:
        a = np.repeat(a[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])
