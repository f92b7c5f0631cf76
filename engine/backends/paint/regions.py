"""Per-region facts the memory matches on: size, shape, position, and who encloses whom.

Everything is measured on a strided sample grid (every `step`-th pixel), which keeps
a 1080p frame's statistics to a few milliseconds; areas are scaled back to pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from longanim.engine.backends.paint.segment import Segmentation

NEIGHBORS = 6


@dataclass
class RegionStats:
    grid: np.ndarray  # h x w int32 labels sampled every `step` pixels
    step: int
    sparse: np.ndarray  # the grid thinned to at most ~480x270 samples: shape and following need no more
    thinning: int  # grid samples per sparse sample, each way
    count: int
    samples: np.ndarray  # (count+1,) grid samples per label
    area: np.ndarray  # (count+1,) float, pixels (samples * step**2)
    centroid: np.ndarray  # (count+1, 2) x, y in full-resolution pixels
    moments: np.ndarray  # (count+1, 2) larger and smaller eigenvalue of the covariance, pixels**2
    spread: np.ndarray  # (count+1, 2) variance along x and along y, pixels**2
    perimeter: np.ndarray  # (count+1,) pixels of outline, roughly
    border: np.ndarray  # (count+1,) bool: region touches the frame edge (it may be cut off)
    neighbors: np.ndarray  # (count+1, NEIGHBORS) int: neighbours across a line, longest boundary first, 0 = none
    contact: np.ndarray  # (count+1, NEIGHBORS) float: each neighbour's share of the region's boundary

    @property
    def parent(self) -> np.ndarray:
        """The neighbour sharing the longest boundary: the enclosing region for nested parts."""
        return self.neighbors[:, 0]

    def shape_features(self) -> np.ndarray:
        """Log area; elongation (principal moments per area); whether it is wide or tall
        (variance along x against y: a hat is tall, a slice of hill wide, and characters
        stay upright), bounded: as a plain log ratio a thin arm swinging past upright changed
        it tenfold in a few degrees and looked like something else; how ragged its outline is
        (a piece cut out by occluders is)."""
        area = np.maximum(self.area, 1.0)
        m = np.maximum(self.moments, 1e-3)
        xy = np.maximum(self.spread, 1e-3)
        ragged = np.maximum(self.perimeter, 1.0) ** 2 / area
        wide = (xy[:, 0] - xy[:, 1]) / (xy[:, 0] + xy[:, 1])  # tanh of half the log ratio, -1..1
        return np.stack([np.log(area), np.log(m[:, 0] / area), np.log(m[:, 1] / area),
                         wide, np.log(ragged)], axis=1)


def grid_step(height: int, width: int) -> int:
    """Sample roughly a 960x540 grid whatever the frame size."""
    return max(1, int(round(min(height, width) / 540)))


def measure(seg: Segmentation, step: int) -> RegionStats:
    grid = np.ascontiguousarray(seg.labels[::step, ::step])
    n = seg.count
    samples = np.bincount(grid.ravel(), minlength=n + 1).astype(np.float64)
    # Shape and following need no more than a ~480x270 sampling, whatever the frame size.
    coarse = 2 if grid.size > 300_000 else 1
    sparse = np.ascontiguousarray(grid[::coarse, ::coarse])
    centroid, moments, spread = _moments(sparse, n, coarse * step)
    border = np.zeros(n + 1, bool)
    for edge in (grid[0], grid[-1], grid[:, 0], grid[:, -1]):
        border[edge] = True
    return RegionStats(
        grid=grid,
        step=step,
        sparse=sparse,
        thinning=coarse,
        count=n,
        samples=samples,
        area=samples * step * step,
        centroid=centroid,
        moments=moments,
        spread=spread,
        perimeter=_perimeter(sparse, n) * (coarse * step),
        border=border,
        **_neighbors(grid, n),
    )


def _moments(grid: np.ndarray, n: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid and principal second moments per region; a coarser grid is plenty for shape."""
    flat = grid.ravel()
    xs, ys, xx, yy, xy = _coordinate_powers(*grid.shape, step)
    count = np.maximum(np.bincount(flat, minlength=n + 1), 1.0)
    sx = np.bincount(flat, xs, minlength=n + 1) / count
    sy = np.bincount(flat, ys, minlength=n + 1) / count
    sxx = np.bincount(flat, xx, minlength=n + 1) / count - sx * sx
    syy = np.bincount(flat, yy, minlength=n + 1) / count - sy * sy
    sxy = np.bincount(flat, xy, minlength=n + 1) / count - sx * sy
    half_trace = (sxx + syy) / 2
    spread = np.sqrt(np.maximum(((sxx - syy) / 2) ** 2 + sxy * sxy, 0.0))
    moments = np.stack([half_trace + spread, np.maximum(half_trace - spread, 0.0)], axis=1)
    return np.stack([sx, sy], axis=1), moments, np.stack([np.maximum(sxx, 0.0), np.maximum(syy, 0.0)], axis=1)


@functools.lru_cache(maxsize=2)
def _coordinate_powers(gh: int, gw: int, step: int) -> tuple[np.ndarray, ...]:
    """x, y, x*x, y*y, x*y of every grid sample, flat: the same for every frame of a shot."""
    xs = np.tile(np.arange(gw, dtype=np.float64) * step, gh)
    ys = np.repeat(np.arange(gh, dtype=np.float64) * step, gw)
    powers = (xs, ys, xs * xs, ys * ys, xs * ys)
    for a in powers:
        a.setflags(write=False)  # shared by every frame
    return powers


def _perimeter(grid: np.ndarray, n: int) -> np.ndarray:
    """Samples of each region next to a sample of another label (a line, mostly)."""
    edge = np.zeros(grid.shape, bool)
    edge[:, :-1] |= grid[:, :-1] != grid[:, 1:]
    edge[:, 1:] |= grid[:, 1:] != grid[:, :-1]
    edge[:-1, :] |= grid[:-1, :] != grid[1:, :]
    edge[1:, :] |= grid[1:, :] != grid[:-1, :]
    return np.bincount(grid[edge], minlength=n + 1).astype(np.float64)


def _neighbors(grid: np.ndarray, n: int) -> dict:
    """Each region's neighbours across a line, by length of shared boundary."""
    filled = grid.astype(np.uint16) if n < 65535 else grid.astype(np.float32)
    square = np.ones((3, 3), np.uint8)
    for _ in range(4):  # lines are a few grid pixels wide; close them so neighbours touch
        zero = cv2.compare(filled, 0, cv2.CMP_EQ)
        if not cv2.countNonZero(zero):
            break
        np.copyto(filled, cv2.dilate(filled, square), where=zero.view(bool))
    filled = filled.astype(np.int64)
    pairs = []
    for a, b in ((filled[:, :-1], filled[:, 1:]), (filled[:-1, :], filled[1:, :])):
        diff = (a != b) & (a > 0) & (b > 0)
        pairs.append(a[diff] * (n + 1) + b[diff])
        pairs.append(b[diff] * (n + 1) + a[diff])
    codes, contact = np.unique(np.concatenate(pairs), return_counts=True)
    neighbors = np.zeros((n + 1, NEIGHBORS), np.int64)
    share = np.zeros((n + 1, NEIGHBORS), np.float32)
    if codes.size:
        owner, neighbour = np.divmod(codes, n + 1)
        order = np.lexsort((-contact, owner))
        owner, neighbour, contact = owner[order], neighbour[order], contact[order]
        first = np.r_[0, np.flatnonzero(owner[1:] != owner[:-1]) + 1]
        rank = np.arange(owner.size) - np.repeat(first, np.diff(np.r_[first, owner.size]))
        total = np.bincount(owner, contact, minlength=n + 1)
        top = rank < NEIGHBORS
        neighbors[owner[top], rank[top]] = neighbour[top]
        share[owner[top], rank[top]] = contact[top] / total[owner[top]]
    return {"neighbors": neighbors, "contact": share}
