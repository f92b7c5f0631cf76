"""The simplest colorizer there is, as the floor a real one must never fall below.

Each region takes the color of the region of the frame before that it overlaps most, in
place (no flow, no memory, no shapes); a keyframe resets the colors to its own. It segments
with `paint`'s own segmentation, so a benchmark beside `paint` compares how colors are
decided, not how regions are found. Where following regions frame to frame is clean (a
pinwheel turning slowly, a zoom) this is hard to beat; where it fails (a character walking in
front of another, a fast limb, re-entry) it is wrong for good, which is what memory is for.
"""

from __future__ import annotations

import numpy as np
from longanim.engine.backends.base import ColoredFrame, Keyframe

# paint's own segmentation, as its colorizer names it (paint's parts stay private to paint/).
from longanim.engine.backends.paint.colorizer import region_colors, render, segment
from longanim.engine.errors import InputError


class NaivePropagation:
    """`Backend.colorize`'s signature, so a benchmark runs it like any backend."""

    name = "naive"

    def __init__(self, *, gap_close: int = 1) -> None:
        self.gap_close = gap_close

    def colorize(self, frames, keyframes: list[Keyframe], *, progress=None, cancelled=None):
        if not keyframes:
            raise InputError("naive propagation needs at least one colored keyframe")
        keys = {k.number: k for k in keyframes}
        last_labels = last_colors = None
        for number, lineart in frames:
            seg = segment(lineart, gap_close=self.gap_close)
            key = keys.get(number)
            if key is not None and key.color.shape[:2] == seg.shape:
                colors = region_colors(key.color, seg)
            else:
                if last_labels is None or last_labels.shape != seg.shape:
                    # A shot starting before its first keyframe starts from the nearest one.
                    near = keys[min(keys, key=lambda k: abs(k - number))]
                    near_seg = segment(near.lineart if near.lineart is not None else near.color,
                                       gap_close=self.gap_close)
                    last_labels, last_colors = near_seg.labels, region_colors(near.color, near_seg)
                colors = carry(seg.labels, seg.count, last_labels, last_colors)
            colors[0] = 255
            rgb, _ = render(lineart, colors, np.ones(seg.count + 1), seg.labels)
            last_labels, last_colors = seg.labels, colors
            yield ColoredFrame(number, rgb, np.ones(seg.shape, np.float32), {"regions": seg.count})


def carry(labels: np.ndarray, count: int, last_labels: np.ndarray, last_colors: np.ndarray) -> np.ndarray:
    """(count+1, 3) colors: each region's most overlapped region of the last frame's color
    (line pixels of either frame ignored); a region lying wholly on old lines stays white."""
    m = last_colors.shape[0]
    both = (labels > 0) & (last_labels > 0)
    codes = labels[both].astype(np.int64) * m + last_labels[both]
    keys, counts = np.unique(codes, return_counts=True)
    owner, source = np.divmod(keys, m)
    order = np.lexsort((counts, owner))  # per region, the biggest overlap comes last
    last = np.r_[owner[order][1:] != owner[order][:-1], True]
    colors = np.full((count + 1, 3), 255, np.uint8)
    colors[owner[order][last]] = last_colors[source[order][last]]
    return colors
