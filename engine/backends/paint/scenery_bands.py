"""Scenery bands: the rows of the picture each scenery color has been seen in.

A pan brings new scenery in at the frame edge, cut by it, so its shape says nothing, and
its neighbours (sky above, ground below) fit a hill, the sky and the ground alike. What
does tell them apart is height: the ground is below the horizon, clouds high up, hills
between. So each scenery color keeps the bands of rows it covered in the keyframes (and
in frames where it was surely followed), widened a little for camera moves, and a region
lying in rows a scenery color was never seen in is less likely that color than another
scenery color that was. Only scenery colors are judged: characters go anywhere.
"""

from __future__ import annotations

import numpy as np

from longanim.engine.backends.paint.regions import RegionStats

BANDS = 36  # rows of the picture are judged in this many bands
WIDEN = 2  # bands each seen band is widened by on either side (a tilt, a bob of the camera)
OUTSIDE = 2.0  # nats against a scenery color for a region lying wholly where it was never seen


class SceneryBands:
    def __init__(self) -> None:
        self.seen = np.zeros((0, BANDS), bool)  # (colors, bands), widened
        self._last: tuple[RegionStats, np.ndarray] | None = None  # a frame is read, then learnt from

    def learn(self, stats: RegionStats, label: np.ndarray, scenery: np.ndarray, sure: np.ndarray | None = None) -> None:
        """Mark the bands each scenery color covers in this frame (only `sure` regions count)."""
        k = max(scenery.size, int(label.max()) + 1)
        self._grow(k)
        scenery = np.r_[scenery.astype(bool), np.zeros(k - scenery.size, bool)]
        keep = scenery[label] if sure is None else scenery[label] & sure
        keep[0] = False
        hist = self._histogram(stats)
        covered = np.zeros((k, BANDS))
        np.add.at(covered, label[keep], hist[keep])
        seen = covered > 0
        for shift in range(1, WIDEN + 1):
            seen[:, shift:] |= covered[:, :-shift] > 0
            seen[:, :-shift] |= covered[:, shift:] > 0
        self.seen[:k] |= seen

    def evidence(self, stats: RegionStats, scenery: np.ndarray, k: int) -> np.ndarray:
        """((n+1) x k) log-evidence: 0 for colors that are not scenery or whose bands hold the
        region; down to -OUTSIDE for a scenery color the region lies wholly outside of,
        counted against the scenery color that fits it best."""
        self._grow(k)
        out = np.zeros((stats.count + 1, k))
        judged = np.flatnonzero(scenery[:k] & self.seen[:k].any(axis=1))
        if judged.size < 2:
            return out
        hist = self._histogram(stats)
        share = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
        outside = share @ (~self.seen[judged]).T.astype(float)  # (n+1, judged)
        out[:, judged] = -OUTSIDE * (outside - outside.min(axis=1, keepdims=True))
        return out

    def _histogram(self, stats: RegionStats) -> np.ndarray:
        """Grid samples of each region per band of rows (kept for the frame last asked about)."""
        if self._last is not None and self._last[0] is stats:
            return self._last[1]
        gh, gw = stats.grid.shape
        band = (np.arange(gh) * BANDS // gh).astype(np.int64)
        codes = stats.grid.astype(np.int64) * BANDS + band[:, None]
        hist = np.bincount(codes.ravel(), minlength=(stats.count + 1) * BANDS).reshape(-1, BANDS).astype(float)
        self._last = (stats, hist)
        return hist

    def _grow(self, k: int) -> None:
        if k > self.seen.shape[0]:
            seen = np.zeros((k, BANDS), bool)
            seen[: self.seen.shape[0]] = self.seen
            self.seen = seen
