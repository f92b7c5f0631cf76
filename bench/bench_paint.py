"""Benchmark of the embedded `paint` colorizer: speed, memory over shot length, accuracy.

    python bench/bench_paint.py                 # the full run recorded in bench/results/paint.md
    python bench/bench_paint.py --quick --out /tmp/paint.md    # smoke run on tiny sizes
    python bench/bench_paint.py --parts a,c     # only some parts

Parts (targets from issue 2):
  a  the colorizer itself, frames in memory: line art is rendered BEFORE timing and only
     `backend.colorize` is timed; median per-frame ms and fps after a warm-up
     (target >= 24 fps at 1920x1080);
  b  end to end through files: `colorize_shot` on a PNG sequence (read, colorize, write
     PNG + confidence PNG), fps beside (a)'s;
  c  peak RSS of a short vs a long shot, each in a fresh subprocess whose frames are
     rendered on the fly so the input never sits in memory (target: long within 10%);
  e  a busy drawing: a grid of small cells in many keyframe colors (hatching, a crowd), the
     case where the per-region work dominates; median ms per frame, no target;
  d  accuracy on clean synthetic shots through `longanim demo`'s own code
     (engine/evaluation/demo.py), global memory on and off (`global_memory=False`, the local-only
     ablation): all pixels, characters' pixels, and characters' pixels after re-entry
     (targets >= 99%, >= 99%, >= 98%);
  f  the colour conversions around the colorizer at 1920x1080: linear EXR (half) to display
     sRGB on the way in, 8-bit display to linear half on the way out, through the transfer
     function (float32 values) and through the lookup tables the pipeline uses for half and
     8-bit values; median ms, and whether the two give the same bits.

Everything is written to the results file atomically, with the exact command and the
load average when the run started: numbers taken on a busy machine say so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "paint.md"
TARGET_FPS_1080 = 24.0
TARGET_RSS_RATIO = 1.10
TARGET_ACC, TARGET_ACC_CHARS, TARGET_ACC_REENTRY = 0.99, 0.99, 0.98


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few frames: checks the script runs")
    p.add_argument("--parts", default="a,b,c,d,e,f", help="which parts to run (default a,b,c,d,e,f)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    p.add_argument("--sizes", help="speed sizes, comma-separated WxH (default 1920x1080,960x540)")
    p.add_argument("--frames", type=int, help="timed frames per speed run (default 90)")
    p.add_argument("--warmup", type=int, help="untimed frames before timing (default 5)")
    p.add_argument("--rss-frames", help="short and long shot lengths for (c) (default 200,2000)")
    p.add_argument("--rss-size", help="frame size for (c) (default 960x540)")
    p.add_argument("--acc-frames", type=int, help="shot length for (d) (default 500)")
    p.add_argument("--acc-size", help="frame size for (d) (default 480x270)")
    p.add_argument("--seeds", help="synthetic shot seeds for (d) (default 0,1,2)")
    p.add_argument("--cs-size", help="frame size for (f) (default 1920x1080)")
    p.add_argument("--cs-repeats", type=int, help="runs per conversion in (f) (default 9)")
    p.add_argument("--rss-child", nargs=2, metavar=("FRAMES", "WxH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "sizes": "160x90" if quick else "1920x1080,960x540",
        "frames": 6 if quick else 90,
        "warmup": 2 if quick else 5,
        "rss_frames": "10,30" if quick else "200,2000",
        "rss_size": "96x54" if quick else "960x540",
        "acc_frames": 24 if quick else 500,
        "acc_size": "96x54" if quick else "480x270",
        "seeds": "0" if quick else "0,1,2",
        "cs_size": "96x54" if quick else "1920x1080",
        "cs_repeats": 2 if quick else 9,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not args.parts <= set("abcdef"):
        p.error(f"--parts takes letters from a,b,c,d,e,f, got {sorted(args.parts)}")
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.rss_frames = [int(s) for s in args.rss_frames.split(",")]
    args.rss_size = parse_size(args.rss_size)
    args.acc_size = parse_size(args.acc_size)
    args.cs_size = parse_size(args.cs_size)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


# --------------------------------------------------------------------------- (a) in memory

def bench_in_memory(size: tuple[int, int], frames: int, warmup: int) -> dict:
    from longanim.engine.backends import create_backend
    from longanim.engine.backends.base import Keyframe
    from longanim.engine.evaluation.synthetic import make_shot

    w, h = size
    total = warmup + frames
    shot = make_shot(total, w, h, seed=0)
    lineart = [shot.lineart(i) for i in range(total)]  # rendered before any timing
    keyframe = Keyframe(0, shot.color(0), lineart[0])
    times, _ = _time_each(create_backend("paint").colorize(iter(enumerate(lineart)), [keyframe]))
    timed = times[warmup:]  # frame 0 is the keyframe itself, and the shot's setup runs in it
    median = statistics.median(timed)
    return {"size": f"{w}x{h}", "frames": len(timed), "median_ms": median * 1e3,
            "p90_ms": _percentile(timed, 90) * 1e3, "fps": 1.0 / median, "fps_mean": len(timed) / sum(timed)}


def _time_each(results) -> tuple[list[float], object]:
    """Seconds each result of a backend's generator took to arrive, and the last result."""
    times, last = [], None
    while True:
        t0 = time.perf_counter()
        result = next(results, None)
        if result is None:
            return times, last
        times.append(time.perf_counter() - t0)
        last = result


def busy_drawing(w: int, h: int, cell: int, colors: int, shift: int, colored: bool):
    """A grid of `cell`-pixel squares in `colors` colors, shifted `shift` pixels right."""
    import cv2
    import numpy as np

    img = np.full((h, w, 3), 255, np.uint8)
    if colored:
        palette = np.random.default_rng(0).integers(0, 256, (colors, 3)).astype(np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        index = ((yy // cell) * 97 + ((xx - shift) // cell) * 31) % colors
        img[:] = palette[index]
    for x in range(shift % cell, w, cell):
        cv2.line(img, (x, 0), (x, h), (0, 0, 0), 2)
    for y in range(0, h, cell):
        cv2.line(img, (0, y), (w, y), (0, 0, 0), 2)
    return img


def bench_busy(size: tuple[int, int], cell: int, colors: int, frames: int) -> dict:
    from longanim.engine.backends import create_backend
    from longanim.engine.backends.base import Keyframe

    w, h = size
    lineart = [busy_drawing(w, h, cell, colors, i % 7, False) for i in range(frames + 1)]
    keyframe = Keyframe(0, busy_drawing(w, h, cell, colors, 0, True), lineart[0])
    times, last = _time_each(create_backend("paint").colorize(iter(enumerate(lineart)), [keyframe]))
    timed = times[1:]  # frame 0 is the keyframe
    return {"size": f"{w}x{h}", "regions": last.info["regions"], "colors": colors, "frames": len(timed),
            "median_ms": statistics.median(timed) * 1e3}


# --------------------------------------------------------------------------- (b) end to end

def bench_end_to_end(size: tuple[int, int], frames: int, warmup: int) -> dict:
    from longanim.engine.evaluation.demo import write_refs, write_shot
    from longanim.engine.pipeline import RefSpec, colorize_shot
    from longanim.engine.evaluation.synthetic import make_shot

    w, h = size
    total = warmup + frames
    shot = make_shot(total, w, h, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-paint-") as tmp:
        root = Path(tmp)
        write_shot(shot, root)
        refs = write_refs(shot, root / "refs")
        stamps = []
        report = colorize_shot(root / "lineart", [RefSpec(r.path, r.frame) for r in refs], root / "out",
                               on_frame=lambda result, path: stamps.append(time.perf_counter()))
    steps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    median = statistics.median(steps) if steps else float("nan")
    return {"size": f"{w}x{h}", "frames": len(report.frames), "median_ms": median * 1e3, "fps": 1.0 / median,
            "fps_overall": len(report.frames) / report.seconds}


# --------------------------------------------------------------------------- (c) peak RSS

def rss_child(frames: int, size: tuple[int, int]) -> None:
    """Runs in a fresh process: colorize a shot whose frames are rendered as they are
    asked for, drop every result, report this process's own peak RSS."""
    import resource

    from longanim.engine.backends import create_backend
    from longanim.engine.backends.base import Keyframe
    from longanim.engine.evaluation.synthetic import make_shot

    w, h = size
    shot = make_shot(frames, w, h, seed=0)
    key = Keyframe(0, shot.color(0), shot.lineart(0))
    started = time.perf_counter()
    count = 0
    for _ in create_backend("paint").colorize(((i, shot.lineart(i)) for i in range(frames)), [key]):
        count += 1
    peak_kib = own_peak_kib()
    if peak_kib is None:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        if sys.platform == "darwin":
            peak_kib //= 1024  # bytes there
    print(json.dumps({"frames": count, "peak_rss_mib": peak_kib / 1024, "seconds": time.perf_counter() - started}))


def own_peak_kib() -> int | None:
    """This process's own peak RSS. Not `ru_maxrss`: Linux carries the forking parent's peak
    over exec into it, so a child of a big benchmark process reads the parent's figure and
    two shot lengths compare equal whatever they use. VmHWM belongs to the new address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def bench_rss(frames: int, size: tuple[int, int]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(frames), f"{size[0]}x{size[1]}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS child for {frames} frames failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- (f) colour conversions

def bench_colorspace(size: tuple[int, int], repeats: int) -> list[dict]:
    """Each conversion two ways on the same values: as float32 (the transfer function, what
    the pipeline did before) and in the storage type the files give (half from an EXR, 8-bit
    from the colorizer: the lookup tables). Same values in, so the same bits must come out."""
    import numpy as np

    from longanim.engine.sequences.colorspace import from_display_float, to_display_float
    from longanim.engine.sequences.image_files import ImageData

    w, h = size
    rng = np.random.default_rng(0)
    half = (rng.random((h, w, 3), dtype=np.float32) * 1.2).astype(np.float16)  # some values above white
    rgba = np.concatenate([half, np.ones((h, w, 1), np.float16)], axis=-1)
    rgba[: h // 20, :, 3] = 0.5  # a soft edge on 5% of the frame; the rest opaque
    rgba[h // 20: h // 10, :, 3] = 0.0
    rgb8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.ones((h, w), np.float32)
    alpha[: h // 20] = 0.5
    cases = [
        ("EXR half RGB -> display", lambda: to_display_float(ImageData(half.astype(np.float32), "linear")),
         lambda: to_display_float(ImageData(half, "linear"))),
        ("EXR half RGBA (5% soft alpha) -> display",
         lambda: to_display_float(ImageData(rgba.astype(np.float32), "linear")),
         lambda: to_display_float(ImageData(rgba, "linear"))),
        ("8-bit RGB -> EXR half", lambda: from_display_float(rgb8.astype(np.float32) / np.float32(255), "half", "linear"),
         lambda: from_display_float(rgb8, "half", "linear")),
        ("8-bit RGB + alpha -> EXR half RGBA",
         lambda: from_display_float(np.concatenate([rgb8.astype(np.float32) / np.float32(255), alpha[..., None]], -1),
                                    "half", "linear"),
         lambda: from_display_float(rgb8, "half", "linear", alpha=alpha)),
    ]
    rows = []
    for label, formula, table in cases:
        same = np.array_equal(formula(), table())
        times = {}
        for name, fn in (("formula", formula), ("table", table)):
            fn()
            spent = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - t0)
            times[name] = statistics.median(spent) * 1e3
        rows.append({"case": label, "formula_ms": times["formula"], "table_ms": times["table"], "same": same})
    return rows


def bench_confidence_rounding(size: tuple[int, int], repeats: int) -> float:
    """Median ms of rounding a float confidence map back to 8-bit grey: what the pipeline
    did for every paint frame before paint handed over its own 8-bit map."""
    import numpy as np

    from longanim.engine.pipeline import _confidence_image

    w, h = size
    conf = np.random.default_rng(1).integers(0, 256, (h, w), dtype=np.uint8).astype(np.float32)
    conf *= 1.0 / 255.0
    _confidence_image(conf)
    spent = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _confidence_image(conf)
        spent.append(time.perf_counter() - t0)
    return statistics.median(spent) * 1e3


# --------------------------------------------------------------------------- (d) accuracy

def bench_accuracy(frames: int, size: tuple[int, int], seed: int, global_memory: bool) -> dict:
    from longanim.engine.evaluation.demo import error_split, run_demo
    from longanim.engine.evaluation.synthetic import make_shot

    with tempfile.TemporaryDirectory(prefix="bench-paint-acc-") as tmp:
        fig = run_demo(Path(tmp) / "demo", frames, size, seed, "paint", {"global_memory": global_memory},
                       contact=False)
        split = error_split(make_shot(frames, size[0], size[1], seed), Path(fig["paths"]["outdir"]))
    return {"seed": seed, "global_memory": global_memory, "accuracy": fig["accuracy"],
            "accuracy_characters": fig["accuracy_characters"], "accuracy_after_reentry": fig["accuracy_after_reentry"],
            "reentries": fig["reentries"], "fps": fig["fps"], **split}


# --------------------------------------------------------------------------- report

def _percentile(values, q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(math.ceil(q / 100 * len(v))) - 1))]


def _pct(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2%}"


def _num(v, fmt: str) -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        except OSError:
            return "unknown"


def _machine() -> str:
    import cv2
    import numpy

    return (f"{platform.platform()}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, opencv {cv2.__version__}, cv2 threads {cv2.getNumThreads()}")


def _mean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(int(args.rss_child[0]), parse_size(args.rss_child[1]))
        return 0
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *(argv or sys.argv[1:])])
    lines = [
        "# `paint` colorizer benchmark" + (" (QUICK smoke run: not a measurement)" if args.quick else ""),
        "",
        f"- command: `{command}`",
        f"- started: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- `uptime` at start: `{_load_average()}`",
        f"- machine: {_machine()}",
        "",
    ]

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    for line in lines:
        print(line)
    started = time.perf_counter()

    if "a" in args.parts or "b" in args.parts:
        speed_rows = []
        for size in args.sizes:
            mem = bench_in_memory(size, args.frames, args.warmup) if "a" in args.parts else None
            e2e = bench_end_to_end(size, args.frames, args.warmup) if "b" in args.parts else None
            target = size == (1920, 1080)
            speed_rows.append([
                f"{size[0]}x{size[1]}",
                _num(mem and mem["median_ms"], ".1f"), _num(mem and mem["p90_ms"], ".1f"),
                _num(mem and mem["fps"], ".1f"),
                _num(e2e and e2e["fps"], ".1f"), _num(e2e and e2e["fps_overall"], ".1f"),
                f">= {TARGET_FPS_1080:g} fps (colorizer)" if target else "-",
                _verdict(mem["fps"] >= TARGET_FPS_1080) if target and mem else "-",
            ])
            print(f"  speed {size[0]}x{size[1]} done", flush=True)
        say("## (a, b) Speed")
        say()
        say(f"Synthetic shot (seed 0, clean lines), keyframe = first frame; {args.warmup} warm-up frames "
            f"(the keyframe among them), then {args.frames} timed frames. (a) times only `backend.colorize` "
            "on line art rendered beforehand; (b) is `colorize_shot` on a PNG sequence (read PNG, colorize, "
            "write colored PNG + confidence PNG), median interval between finished frames, and "
            "frames / total seconds including setup.")
        say()
        for row in _table(["size", "(a) median ms", "(a) p90 ms", "(a) fps", "(b) e2e fps (median)",
                           "(b) e2e fps (overall)", "target", "verdict"], speed_rows):
            say(row)
        say()

    if "e" in args.parts:
        size = (160, 90) if args.quick else (1920, 1080)
        cell, colors = (12, 20) if args.quick else (30, 300)
        busy = bench_busy(size, cell, colors, 3 if args.quick else 10)
        say("## (e) A busy drawing")
        say()
        say(f"A grid of {cell}-pixel cells in {colors} keyframe colors at {size[0]}x{size[1]}, shifted a few "
            "pixels each frame (hatching or a crowd: many regions, many colors); first frame is the keyframe, "
            "then the median time of the colorizer per frame.")
        say()
        for row in _table(["size", "regions", "keyframe colors", "frames", "median ms"], [
            [busy["size"], str(busy["regions"]), str(busy["colors"]), str(busy["frames"]), f"{busy['median_ms']:.0f}"]]):
            say(row)
        say()

    if "c" in args.parts:
        short, long_ = args.rss_frames[0], args.rss_frames[-1]
        w, h = args.rss_size
        a, b = bench_rss(short, args.rss_size), bench_rss(long_, args.rss_size)
        ratio = b["peak_rss_mib"] / a["peak_rss_mib"]
        say("## (c) Peak memory vs shot length")
        say()
        say(f"{w}x{h}, seed 0, frames rendered on the fly inside a fresh subprocess per run (the input never "
            "sits in memory), backend `paint` with default options, results dropped; peak RSS is that "
            "child's own peak (`VmHWM` of its address space; `ru_maxrss` would carry this benchmark process's "
            "peak over the fork).")
        say()
        for row in _table(["frames", "peak RSS MiB", "seconds", "target", "verdict"], [
            [str(short), f"{a['peak_rss_mib']:.1f}", f"{a['seconds']:.1f}", "-", "-"],
            [str(long_), f"{b['peak_rss_mib']:.1f}", f"{b['seconds']:.1f}",
             f"<= {TARGET_RSS_RATIO:.2f} x {short}-frame", _verdict(ratio <= TARGET_RSS_RATIO)],
        ]):
            say(row)
        say()
        say(f"Ratio {long_}/{short} frames: **{ratio:.3f}**")
        say()

    if "d" in args.parts:
        from longanim.engine.evaluation.demo import REENTRY_DEFINITION

        w, h = args.acc_size
        runs = [bench_accuracy(args.acc_frames, args.acc_size, seed, gm)
                for seed in args.seeds for gm in (True, False)]
        say("## (d) Accuracy, global memory on vs off")
        say()
        say(f"Clean synthetic shots, {args.acc_frames} frames at {w}x{h}, seeds "
            f"{', '.join(map(str, args.seeds))}, one reference keyframe (the first frame), through "
            "`longanim demo`'s code (engine/evaluation/demo.py: PNG files, `colorize_shot`, engine/evaluation/report.py). "
            "Flat-region accuracy: share of pixels not within 1 px of a line whose CIEDE2000 to the truth "
            "is <= 3. 'Characters' counts only characters' pixels (synthetic masks). "
            f"'After re-entry': {REENTRY_DEFINITION}. `global_memory=off` is the local-only ablation.")
        say()
        rows = []
        for r in runs:
            back = "; ".join(f"char {e['character']} back at {e['back']} after {e['away']}" for e in r["reentries"])
            rows.append([str(r["seed"]), "on" if r["global_memory"] else "off", _pct(r["accuracy"]),
                         _pct(r["accuracy_characters"]), _pct(r["accuracy_after_reentry"]), back or "none"])
        for gm in (True, False):
            mine = [r for r in runs if r["global_memory"] == gm]
            rows.append(["**mean**", "on" if gm else "off",
                         *(f"**{_pct(_mean(r[k] for r in mine))}**"
                           for k in ("accuracy", "accuracy_characters", "accuracy_after_reentry")), ""])
        for row in _table(["seed", "global memory", "all pixels", "characters", "after re-entry", "re-entries"],
                          rows):
            say(row)
        say()
        say("Where the wrong pixels are, as shares of all counted pixels (they add up to 100% minus "
            "'all pixels'): on characters; on scenery a keyframe shows; on scenery no keyframe shows "
            "(hills and clouds that come into view during the pan: every hill is the one green, every "
            "cloud the one white, so a keyframe decides them, but they come in cut by the frame edge). "
            "The review mask: pixels whose confidence is below the backend's review threshold, as a share "
            "of all counted pixels, and the share of the wrong pixels it holds.")
        say()
        split_rows = [[str(r["seed"]), "on" if r["global_memory"] else "off", _pct(r["wrong_characters"]),
                       _pct(r["wrong_scenery_shown"]), _pct(r["wrong_scenery_unseen"]), _pct(r["flagged"]),
                       _pct(r["wrong_flagged"])] for r in runs]
        for row in _table(["seed", "global memory", "wrong on characters", "wrong on scenery shown",
                           "wrong on scenery unseen", "flagged for review", "wrong pixels flagged"], split_rows):
            say(row)
        say()
        on = [r for r in runs if r["global_memory"]]
        off = [r for r in runs if not r["global_memory"]]
        checks = [("all pixels", "accuracy", TARGET_ACC), ("characters' pixels", "accuracy_characters",
                  TARGET_ACC_CHARS), ("after re-entry", "accuracy_after_reentry", TARGET_ACC_REENTRY)]
        target_rows = []
        for label, key, target in checks:
            mean_on, mean_off = _mean(r[key] for r in on), _mean(r[key] for r in off)
            worst = min((r[key] for r in on if r[key] is not None and math.isfinite(r[key])), default=float("nan"))
            target_rows.append([label, _pct(mean_on), _pct(worst), _pct(mean_off),
                                _num((mean_on - mean_off) * 100, "+.2f") + " pt", f">= {target:.0%}",
                                _verdict(None if not math.isfinite(worst) else worst >= target)])
        for row in _table(["figure", "global on (mean)", "global on (worst seed)", "global off (mean)",
                           "gap on-off", "target (every seed)", "verdict"], target_rows):
            say(row)
        say()

    if "f" in args.parts:
        w, h = args.cs_size
        rows = bench_colorspace(args.cs_size, args.cs_repeats)
        say("## (f) Colour conversions")
        say()
        say(f"{w}x{h}, median of {args.cs_repeats} runs each. 'formula': the values as float32 through the "
            "sRGB transfer function (what every frame took before); 'table': the same values in the type "
            "the pipeline has them in (half from the EXR, 8-bit from the colorizer), looked up. The formula's "
            "times include casting to float32, as the code before the tables did. 'same bits': the two "
            "outputs compared bit for bit.")
        say()
        for row in _table(["conversion", "formula ms", "table ms", "ratio", "same bits"], [
            [r["case"], f"{r['formula_ms']:.1f}", f"{r['table_ms']:.1f}", f"{r['formula_ms'] / r['table_ms']:.1f}x",
             "yes" if r["same"] else "**NO**"] for r in rows
        ]):
            say(row)
        say()
        say(f"Rounding a float confidence map back to 8-bit grey, which the pipeline no longer does for `paint` "
            f"(it hands over its own 8-bit map, `ColoredFrame.confidence8`): "
            f"{bench_confidence_rounding(args.cs_size, args.cs_repeats):.1f} ms a {w}x{h} frame (median).")
        say()

    say(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    from longanim.engine.sequences.image_files import atomic_write

    text = ("\n".join(lines) + "\n").encode()
    atomic_write(args.out, lambda tmp: Path(tmp).write_bytes(text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
