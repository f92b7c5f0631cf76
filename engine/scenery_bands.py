"""Scenery bands: the rows of the picture each backdrop color has been seen in.

A pan brings new scenery in at the frame edge, cut by it, so its shape says nothing, and
its neighbours (sky above, ground below) fit a hill, the sky and the ground alike. What
does tell them apart is height: the ground is below the horizon, clouds high up, hills
between. So each backdrop color keeps the bands of rows it covered in the keyframes (and
in frames where it was surely followed), widened a little for camera moves, and a region
lying in rows a backdrop color was never seen in is less likely that color than another
backdrop color that was. Only backdrop colors are judged: characters go anywhere.
"""

from __future__ import annotations

import numpy as np

from longanim.engine.regions import RegionStats

BANDS = 36  # rows of the picture are judged in this many bands
WIDEN = 2  # bands each seen band is widened by on either side (a tilt, a bob of the camera)
OUTSIDE = 2.0  # nats against a backdrop color for a region lying wholly where it was never seen


class SceneryBands:
    def __init__(self) -> None:
        self.seen = np.zeros((0, BANDS), bool)  # (colors, bands), widened

    def learn(self, stats: RegionStats, label: np.ndarray, backdrop: np.ndarray, sure: np.ndarray | None = None) -> None:
        """Mark the bands each backdrop color covers in this frame (only `sure` regions count)."""
        k = max(backdrop.size, int(label.max()) + 1)
        self._grow(k)
        backdrop = np.r_[backdrop.astype(bool), np.zeros(k - backdrop.size, bool)]
        keep = backdrop[label] if sure is None else backdrop[label] & sure
        keep[0] = False
        hist = self._histogram(stats)
        covered = np.zeros((k, BANDS))
        np.add.at(covered, label[keep], hist[keep])
        seen = covered > 0
        for shift in range(1, WIDEN + 1):
            seen[:, shift:] |= covered[:, :-shift] > 0
            seen[:, :-shift] |= covered[:, shift:] > 0
        self.seen[:k] |= seen

    def evidence(self, stats: RegionStats, backdrop: np.ndarray, k: int) -> np.ndarray:
        """((n+1) x k) log-evidence: 0 for colors that are not backdrop or whose bands hold the
        region; down to -OUTSIDE for a backdrop color the region lies wholly outside of,
        counted against the backdrop color that fits it best."""
        self._grow(k)
        out = np.zeros((stats.count + 1, k))
        judged = np.flatnonzero(backdrop[:k] & self.seen[:k].any(axis=1))
        if judged.size < 2:
            return out
        hist = self._histogram(stats)
        share = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
        outside = share @ (~self.seen[judged]).T.astype(float)  # (n+1, judged)
        out[:, judged] = -OUTSIDE * (outside - outside.min(axis=1, keepdims=True))
        return out

    def _histogram(self, stats: RegionStats) -> np.ndarray:
        """Grid samples of each region per band of rows."""
        gh, gw = stats.grid.shape
        band = (np.arange(gh) * BANDS // gh).astype(np.int64)
        codes = stats.grid.astype(np.int64) * BANDS + band[:, None]
        return np.bincount(codes.ravel(), minlength=(stats.count + 1) * BANDS).reshape(-1, BANDS).astype(float)

    def _grow(self, k: int) -> None:
        if k > self.seen.shape[0]:
            seen = np.zeros((k, BANDS), bool)
            seen[: self.seen.shape[0]] = self.seen
            self.seen = seen
