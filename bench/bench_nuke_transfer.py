"""What a 2K frame costs on the Nuke plug-in's side of the engine, for the parts this
repository owns (Nuke itself is commercial and not installed here).

    python bench/bench_nuke_transfer.py [--repeats 9] [--width 2048 --height 1080] [--out FILE]

Per frame, medians over `--repeats`:

1. the temporary sequence's frame as Nuke's Write would leave it (RGBA float32 EXR, ZIP),
   written here by the project's own writer as a stand-in: Nuke's own Write time is NOT
   measured (it cannot be here);
2. reading that frame back (`image_files.read_image`) and converting it to what the
   colorizer takes (`colour.plate_to_display`, the engine's sRGB): the plug-in's work;
3. a result coming back: `colour.display_to_plate` and `results.write_frame` (half RGBA
   plus the confidence layer, atomic).

The issue's question, Write-to-temp-sequence against pixel transfer from `nuke.Node`
samples, needs Nuke to answer; the results file says what is and is not measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "nuke"))

from longanim.engine.sequences.image_files import atomic_write, read_image, write_image  # noqa: E402
from longanim_nuke import colour, results  # noqa: E402


def _plate(height: int, width: int) -> np.ndarray:
    """Line art as a plate: white paper, dark strokes, premultiplied by an opaque alpha."""
    rng = np.random.default_rng(0)
    rgba = np.ones((height, width, 4), np.float32)
    for _ in range(200):
        y, x = rng.integers(0, height), rng.integers(0, width)
        rgba[max(0, y - 2):y + 2, max(0, x - 300):x + 300, :3] = 0.02
    return rgba


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "nuke_transfer.md"))
    args = ap.parse_args(argv)

    plate = _plate(args.height, args.width)
    transform = colour.EngineSrgb()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        temp_frame = Path(tmp) / "lineart.1001.exr"
        result = Path(tmp) / "colorized.1001.exr"
        write_s = _time(lambda: write_image(temp_frame, plate), args.repeats)
        size = temp_frame.stat().st_size
        read_s = _time(lambda: read_image(temp_frame), args.repeats)
        pixels = read_image(temp_frame).pixels
        to_display_s = _time(lambda: colour.plate_to_display(pixels, transform), args.repeats)
        rgb, alpha = colour.plate_to_display(pixels, transform)
        confidence = np.full(rgb.shape[:2], 0.9, np.float32)
        back_s = _time(lambda: colour.display_to_plate(rgb, alpha, transform), args.repeats)
        linear = colour.display_to_plate(rgb, alpha, transform)
        result_s = _time(lambda: results.write_frame(result, linear, confidence), args.repeats)
        result_size = result.stat().st_size
    load_after = os.getloadavg()

    samples = args.width * args.height * 4
    rows = [
        ("1. temp frame written (stand-in for Nuke's Write: float32 RGBA EXR, ZIP)", write_s,
         f"{size / 2**20:.1f} MiB"),
        ("2a. temp frame read back (read_image)", read_s, ""),
        ("2b. to display sRGB, uint8 RGB on white (plate_to_display)", to_display_s,
         f"{rgb.nbytes / 2**20:.1f} MiB sent"),
        ("3a. result to scene-linear premultiplied (display_to_plate)", back_s, ""),
        ("3b. result frame written (half RGBA + confidence layer, atomic)", result_s,
         f"{result_size / 2**20:.1f} MiB"),
    ]
    ours = read_s + to_display_s + back_s + result_s
    table = ["| step | median ms | size |", "| --- | ---: | --- |"]
    table += [f"| {name} | {s * 1e3:.1f} | {extra} |" for name, s, extra in rows]
    table.append(f"| plug-in's own work per frame (2a + 2b + 3a + 3b) | {ours * 1e3:.1f} | |")
    print("\n".join(table))

    cmd = "python bench/bench_nuke_transfer.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    text = f"""# Nuke plug-in: a {args.width}x{args.height} frame through the parts this repository owns

Command, from the repository root:

    {cmd}

Medians of {args.repeats} repeats, one run. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python
{platform.python_version()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (the machine is
shared; numbers move with the load).

{chr(10).join(table)}

## What is not measured: Write-to-temp-sequence against pixel transfer

The issue asks which is faster at 2K: rendering the input range with a Write to a temporary
EXR sequence (what the plug-in does, `longanim_nuke/render.py`), or taking the pixels from
`nuke.Node` samples. Both need Nuke, which is commercial and cannot be installed here, so
**neither Nuke's Write nor `nuke.sample` has been timed**, and this file gives no number for
them. Step 1 above is this repository's own EXR writer standing in for Nuke's Write, to show
the size of the file and the order of the cost; it is not Nuke's time.

What is known without timing: Nuke's Python API hands out pixels through
`nuke.sample(node, channel, x, y)` (or `Node.sample`), one value per call, so a
{args.width}x{args.height} RGBA frame is {samples:,} Python calls per frame, against one
`nuke.execute` of a Write for the whole range, which renders in Nuke's own threads. That is
why the plug-in uses the Write. To measure it on a machine with Nuke, time
`nuke.execute(write, f, f)` on a 2K plate against a loop of `nuke.sample` over the same
frame, in `nuke -t`.
"""
    atomic_write(Path(args.out), lambda tmp: Path(tmp).write_text(text))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
