"""Memory of the Video-XL frame store against shot length.

Streams a synthetic shot of N colored frames into a `FrameStore` (the release's
settings: 650 global picks, 20 local, 336x336 squares, history capacity 1300,
64 recent) in 33-frame segments, sampling the memory after each segment as the
pipeline does, and reports the peak bytes Python allocated (tracemalloc, which
sees numpy buffers) and the frame bytes the store holds at the end, beside what
keeping every square would take (what a store that re-reads the growing video
must hold at least). Frames are small (72x128) so the run takes seconds; the
store keeps 336x336 squares whatever the input size.

    python bench/bench_memory_store.py --out bench/results/memory_store.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from longanim.engine.backends.longanimation.memory_store import (
    FrameStore,
    reference_indices,
)

SEGMENT = 33  # new frames per segment at the release's 49-frame segments with 16 overlap


def run(n: int, height: int, width: int) -> dict:
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (256, height, width, 3), dtype=np.uint8)  # reused: input frames are not measured
    tracemalloc.start()
    store = FrameStore()
    sample_s = []
    max_dev = 0
    for start in range(0, n, SEGMENT):
        store.add(palette[i % 256] for i in range(start, min(start + SEGMENT, n)))
        t0 = time.perf_counter()
        glob, local, served = store.sample()
        sample_s.append(time.perf_counter() - t0)
        max_dev = max(max_dev, int(np.abs(served - reference_indices(len(store))).max()))
        del glob, local
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    square = 336 * 336 * 3
    return dict(n=n, peak=peak, held=store.nbytes, all_frames=n * square, stride=store.stride,
                max_dev=max_dev, sample_ms=1e3 * statistics.median(sample_s))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[500, 1300, 5000])
    parser.add_argument("--height", type=int, default=72)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    rows = [run(n, args.height, args.width) for n in args.frames]
    mib = 2**20
    lines = [
        "| shot frames | store peak (MiB) | held at end (MiB) | every square (MiB) | stride | max pick offset (frames) | sample (ms, median) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['peak'] / mib:.1f} | {r['held'] / mib:.1f} | {r['all_frames'] / mib:.1f} | {r['stride']} "
            f"| {r['max_dev']} | {r['sample_ms']:.1f} |"
        )
    first, last = rows[0], rows[-1]
    lines.append("")
    lines.append(
        f"{last['n']} vs {first['n']} frames: store peak x{last['peak'] / first['peak']:.2f}, "
        f"every square x{last['all_frames'] / first['all_frames']:.2f}"
    )
    table = "\n".join(lines)
    print(table)
    if args.out:  # written beside and renamed, so an interrupted run leaves no half table
        partial = args.out.with_name(f".{args.out.name}.partial")
        partial.write_text(table + "\n")
        partial.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
