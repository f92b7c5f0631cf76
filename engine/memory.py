"""Dynamic global-local memory at region level: LongAnimation's idea for flat fills.

Local memory is the last colored frame: its regions are followed into the new
frame (along the optical flow of the line art, and in place, whichever explains a
region better), so motion and camera pans keep their colors. Global memory is a
bounded bank of region prototypes (size, shape, the colors of their neighbours,
color) seeded with the keyframes and merged from every confidently colored region
since; it recognises a character that comes back after hundreds of frames. Both
answer with a color and a confidence per region; backends/paint.py fuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from longanim.engine.regions import NEIGHBORS, RegionStats

FLOW_WIDTH = 480  # line art is shrunk to about this width for optical flow


@dataclass
class Candidates:
    color: np.ndarray  # (n+1, 3) uint8
    confidence: np.ndarray  # (n+1,) float in [0, 1]; 0 = no candidate
    source: np.ndarray | None = None  # (n+1,) previous frame's region each one continues, 0 = none


def flow_image(ink: np.ndarray) -> np.ndarray:
    h, w = ink.shape
    if w <= FLOW_WIDTH:
        return ink
    scale = FLOW_WIDTH / w
    return cv2.resize(ink, (FLOW_WIDTH, max(8, int(round(h * scale)))), interpolation=cv2.INTER_AREA)


class LocalMemory:
    """The previous frame's regions, carried into the next frame along the optical flow."""

    def __init__(self) -> None:
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.grid: np.ndarray | None = None
        self.small: np.ndarray | None = None
        self.color: np.ndarray | None = None
        self.confidence: np.ndarray | None = None
        self.samples: np.ndarray | None = None
        self.doubt: np.ndarray | None = None
        self.rival: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return self.grid is None

    def remember(self, stats: RegionStats, small: np.ndarray, color: np.ndarray, confidence: np.ndarray,
                 doubt: np.ndarray | None = None, rival: np.ndarray | None = None) -> None:
        """`doubt`/`rival`: how strongly, for how long, the global memory has been naming another
        color (`rival`) for each region; followed regions inherit them (see `inherited`)."""
        self.grid, self.small, self.color, self.confidence = stats.grid, small, color, confidence
        self.samples = stats.samples
        self.doubt = np.zeros(stats.count + 1) if doubt is None else doubt
        self.rival = np.zeros((stats.count + 1, 3), np.uint8) if rival is None else rival

    def inherited(self, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The doubt and rival color each current region carries over from its source region."""
        if self.doubt is None:
            return np.zeros(source.size), np.zeros((source.size, 3), np.uint8)
        doubt = np.where(source > 0, self.doubt[source], 0.0)
        return doubt, self.rival[source]

    def match(self, stats: RegionStats, small: np.ndarray) -> Candidates:
        n = stats.count
        if self.grid is None or self.grid.shape != stats.grid.shape:
            return Candidates(np.zeros((n + 1, 3), np.uint8), np.zeros(n + 1), np.zeros(n + 1, np.int64))
        # Flow follows motion but breaks on sudden changes (a character turning around
        # mirrors its parts); plain overlap survives those. Each region keeps the surer answer.
        moved = self._vote(stats, self._previous_labels_seen_from(stats, small))
        still = self._vote(stats, self.grid.astype(np.int64))
        better = still.confidence > moved.confidence
        moved.color[better] = still.color[better]
        moved.confidence[better] = still.confidence[better]
        moved.source[better] = still.source[better]
        return moved

    def _previous_labels_seen_from(self, stats: RegionStats, small: np.ndarray) -> np.ndarray:
        """Previous frame's label at the place each current grid sample came from (-1 = outside)."""
        flow = self._flow.calc(small, self.small, None)  # small(x) ~ previous(x + flow(x))
        gh, gw = stats.grid.shape
        sh, sw = small.shape
        flow = cv2.resize(flow, (gw, gh), interpolation=cv2.INTER_LINEAR)
        gx, gy = _grid_coords(gw, gh)
        map_x = gx + flow[..., 0] * (gw / sw)
        map_y = gy + flow[..., 1] * (gh / sh)
        return cv2.remap(
            self.grid.astype(np.float32),
            map_x,
            map_y,
            cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=-1,
        ).astype(np.int64)

    def _vote(self, stats: RegionStats, warped: np.ndarray) -> Candidates:
        """Each current region takes the color most of its samples came from.

        Votes are weighed by how alike the two regions' sizes are, so a body whose
        belly swung across it still finds its body; they are pooled by color, so two
        halves of a sky that a character split and rejoined still agree.
        """
        n = stats.count
        owner, source, counts, seen = _pairs(stats.grid, warped, n, self.color.shape[0] - 1)
        # Line samples say nothing; samples from outside the frame count against (new content).
        on_region = source >= 1
        owner, source, counts = owner[on_region], source[on_region], counts[on_region]
        size = np.minimum(stats.samples[owner], self.samples[source]) / np.maximum(
            np.maximum(stats.samples[owner], self.samples[source]), 1.0
        )
        weighed = counts * np.sqrt(size) ** WEIGH
        color_ids = _color_ids(self.color)
        pooled = np.zeros((n + 1, color_ids.max() + 1))
        np.add.at(pooled, (owner, color_ids[source]), weighed)
        raw = np.zeros_like(pooled)
        np.add.at(raw, (owner, color_ids[source]), counts)
        winner = pooled.argmax(axis=1)
        votes = raw[np.arange(n + 1), winner]
        agreement = votes / np.maximum(seen, 1)
        # The source region giving most to the winner, and how much of itself it gave.
        gives = np.zeros(n + 1)
        main = np.zeros(n + 1, np.int64)
        chosen = color_ids[source] == winner[owner]
        order = np.lexsort((counts[chosen], owner[chosen]))
        main[owner[chosen][order]] = source[chosen][order]
        gives[owner[chosen][order]] = counts[chosen][order]
        outgoing = np.bincount(source, counts, minlength=self.color.shape[0])
        share = gives / np.maximum(outgoing[main], 1)
        # 80% of a region's samples agreeing is as sure as flow on line art gets.
        confidence = np.clip(agreement / 0.8, 0.0, 1.0)
        # A region holding only a small part of its source is a fragment: a newly revealed
        # or newly arrived shape more often than a piece of the old one. Let the global memory judge.
        confidence = np.where(share < 0.5, confidence * FRAGMENT_TRUST, confidence)
        # A sliver of something far bigger (a shape in front of the sky) says little at all.
        confidence = np.where(share < SLIVER, confidence * SLIVER_TRUST, confidence)
        confidence = np.minimum(confidence, self.confidence[main])
        confidence[votes == 0] = 0.0
        confidence[0] = 0.0
        main[votes == 0] = 0
        palette = _palette(self.color, color_ids)
        return Candidates(palette[winner], confidence, main)


def _pairs(grid: np.ndarray, warped: np.ndarray, n: int, m: int):
    """(current label, previous label, samples) for every pair that co-occurs, and samples
    per current region not on a previous line. Previous label -1 = outside the frame."""
    cur = grid.ravel().astype(np.int64)
    prev = warped.ravel().astype(np.int64)
    width = m + 2
    codes = cur * width + (prev + 1)
    if (n + 1) * width <= 4_000_000:
        table = np.bincount(codes, minlength=(n + 1) * width)
        keys = np.flatnonzero(table)
        counts = table[keys]
    else:  # many tiny regions (hatching, noise): stay sparse
        keys, counts = np.unique(codes, return_counts=True)
    owner, source = np.divmod(keys, width)
    source = source - 1
    seen = np.bincount(owner, counts * (source != 0), minlength=n + 1)
    return owner, source, counts.astype(np.float64), seen


FRAGMENT_TRUST = 0.6
SLIVER, SLIVER_TRUST = 0.1, 0.6
WEIGH = 1


def _color_ids(color: np.ndarray) -> np.ndarray:
    packed = color[:, 0].astype(np.int64) << 16 | color[:, 1].astype(np.int64) << 8 | color[:, 2]
    _, ids = np.unique(packed, return_inverse=True)
    return ids.ravel()


def _palette(color: np.ndarray, ids: np.ndarray) -> np.ndarray:
    palette = np.zeros((ids.max() + 1, 3), np.uint8)
    palette[ids] = color
    return palette


_COORDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid_coords(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    if (w, h) not in _COORDS:
        _COORDS[(w, h)] = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    return _COORDS[(w, h)]


# How far apart two observations of one region may look, per descriptor column:
# log area (characters change scale with depth), two log shape moments per area,
# log x/y variance, log perimeter**2/area (see RegionStats.shape_features).
_SCALE = np.array([0.3, 0.3, 0.3, 0.4, 0.3], np.float32)
# Squared-distance penalty for neighbours whose colors the prototype never had beside it,
# weighted by their share of the boundary: context is what tells apart same-shaped parts
# of different characters (a body next to this head is this character's body).
CONTEXT_PENALTY = 8.0
CLOSE = 6.0  # squared distance at which a match is 1/e sure


@dataclass
class Observation:
    """What the global memory is told or asked about regions of one frame."""

    features: np.ndarray  # (k, F): RegionStats.shape_features
    context: np.ndarray  # (k, NEIGHBORS, 3) int16 neighbours' colors, -1 where none or not yet known
    contact: np.ndarray  # (k, NEIGHBORS) each neighbour's share of the boundary
    color: np.ndarray | None = None  # (k, 3) uint8, when remembering

    def rows(self, keep: np.ndarray) -> "Observation":
        color = None if self.color is None else self.color[keep]
        return Observation(self.features[keep], self.context[keep], self.contact[keep], color)


class GlobalMemory:
    """A bounded bank of region prototypes; similar observations of one color merge."""

    def __init__(self, capacity: int = 512, merge_distance: float = 1.0) -> None:
        self.capacity = capacity
        self.merge_distance = merge_distance
        self.features = np.zeros((0, _SCALE.size), np.float32)
        self.context = np.zeros((0, NEIGHBORS, 3), np.int16)
        self.color = np.zeros((0, 3), np.uint8)
        self.weight = np.zeros(0, np.float32)
        self.last_seen = np.zeros(0, np.int64)
        self.pinned = np.zeros(0, bool)  # keyframe prototypes are never evicted

    _FIELDS = ("features", "context", "color", "weight", "last_seen", "pinned")

    def __len__(self) -> int:
        return self.color.shape[0]

    def distances(self, obs: Observation) -> np.ndarray:
        """Squared normalised distance from every observation (rows) to every prototype."""
        diff = (obs.features[:, None, :] - self.features[None, :, :]) / _SCALE
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        same = np.all(obs.context[:, None, :, None, :] == self.context[None, :, None, :, :], axis=4)
        foreign = ~same.any(axis=3) & (obs.context[:, None, :, 0] >= 0)  # (k, K, NEIGHBORS)
        return d2 + CONTEXT_PENALTY * np.einsum("ijm,im->ij", foreign.astype(np.float32), obs.contact)

    def match(self, obs: Observation, *, excluded: np.ndarray | None = None) -> Candidates:
        """Best prototype per observation, with a confidence that falls with distance and
        with how close the nearest prototype of another color comes.

        `excluded` (k x prototypes, bool) removes prototypes already accounted for by
        other regions of the frame, e.g. the body of a character that is in view.
        """
        k = obs.features.shape[0]
        if len(self) == 0 or k == 0:
            return Candidates(np.zeros((k, 3), np.uint8), np.zeros(k))
        d2 = self.distances(obs)
        if excluded is not None:
            d2 = np.where(excluded, d2 + EXCLUSION_PENALTY, d2)
        best = d2.argmin(axis=1)
        best_d2 = d2[np.arange(k), best]
        other = np.any(self.color[None, :, :] != self.color[best][:, None, :], axis=2)
        rival_d2 = np.where(other, d2, np.inf).min(axis=1)
        closeness = np.exp(-best_d2 / CLOSE)
        margin = 1.0 - np.exp(-np.maximum(rival_d2 - best_d2, 0.0) / 2.0)
        return Candidates(self.color[best], closeness * margin)

    def support(self, obs: Observation, color: np.ndarray, *, excluded: np.ndarray | None = None) -> np.ndarray:
        """How well the closest prototype of each row's given color fits it (1 = exactly)."""
        k = obs.features.shape[0]
        if len(self) == 0 or k == 0:
            return np.zeros(k)
        d2 = self.distances(obs)
        if excluded is not None:
            d2 = np.where(excluded, d2 + EXCLUSION_PENALTY, d2)
        same = np.all(self.color[None, :, :] == color[:, None, :], axis=2)
        return np.exp(-np.where(same, d2, np.inf).min(axis=1) / CLOSE)

    def remember(self, obs: Observation, frame: int, *, pinned: bool = False) -> None:
        """Merge each observation into a close prototype of the same color and context, or add it."""
        if obs.features.shape[0] == 0:
            return
        if len(self):
            d2 = self.distances(obs)
            same = np.all(obs.color[:, None, :] == self.color[None, :, :], axis=2)
            d2 = np.where(same, d2, np.inf)
            best = d2.argmin(axis=1)
            close = d2[np.arange(d2.shape[0]), best] <= self.merge_distance
        else:
            best = np.zeros(obs.features.shape[0], np.int64)
            close = np.zeros(obs.features.shape[0], bool)
        for i in np.flatnonzero(close):
            j = best[i]
            w = self.weight[j]
            if not self.pinned[j]:  # keyframes stay as drawn
                self.features[j] += (obs.features[i] - self.features[j]) / (w + 1.0)
            self.weight[j] = min(w + 1.0, 50.0)
            self.last_seen[j] = frame
        new = ~close
        if new.any():
            self._add(obs.rows(new), frame, pinned)

    def _add(self, obs: Observation, frame: int, pinned: bool) -> None:
        count = obs.features.shape[0]
        added = {
            "features": obs.features.astype(np.float32),
            "context": obs.context.astype(np.int16),
            "color": obs.color,
            "weight": np.ones(count, np.float32),
            "last_seen": np.full(count, frame, np.int64),
            "pinned": np.full(count, pinned),
        }
        for name in self._FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), added[name]]))
        if len(self) > self.capacity:
            self._evict(frame)

    def _evict(self, frame: int) -> None:
        """Drop the prototypes seen least and longest ago; keyframes stay."""
        age = (frame - self.last_seen).astype(np.float32)
        score = np.log1p(self.weight) - age / 500.0
        score[self.pinned] = np.inf
        keep = np.sort(np.argsort(-score, kind="stable")[: self.capacity])
        for name in self._FIELDS:
            setattr(self, name, getattr(self, name)[keep])


EXCLUSION_PENALTY = 6.0


class HiddenMemory:
    """Regions that went out of sight in the last frames without leaving the frame: a character
    walking behind another. What re-emerges where something vanished a moment ago is most
    likely that thing, whatever else the global memory would match by shape."""

    def __init__(self, horizon: int = 60, capacity: int = 128) -> None:
        self.horizon = horizon
        self.capacity = capacity
        self.color = np.zeros((0, 3), np.uint8)
        self.centroid = np.zeros((0, 2))
        self.area = np.zeros(0)
        self.frame = np.zeros(0, np.int64)

    def update(self, before: RegionStats, before_color, before_conf, now: RegionStats, now_color, frame: int):
        """Note settled regions of the previous frame that no region of their color continues."""
        rows = np.flatnonzero((before_conf >= 0.8) & ~before.border & (before.samples >= 6))
        rows = rows[rows > 0]
        if rows.size:
            cur = np.arange(1, now.count + 1)
            same = np.all(before_color[rows][:, None, :] == now_color[cur][None, :, :], axis=2)
            dist = np.linalg.norm(before.centroid[rows][:, None, :] - now.centroid[cur][None, :, :], axis=2)
            near = dist <= 2.0 * np.sqrt(before.area[rows])[:, None]
            big = now.area[cur][None, :] >= 0.3 * before.area[rows][:, None]
            gone = rows[~np.any(same & near & big, axis=1)]
            self.color = np.concatenate([self.color, before_color[gone]])
            self.centroid = np.concatenate([self.centroid, before.centroid[gone]])
            self.area = np.concatenate([self.area, before.area[gone]])
            self.frame = np.concatenate([self.frame, np.full(gone.size, frame)])
        keep = (frame - self.frame) <= self.horizon
        keep[: max(0, keep.size - self.capacity)] = False
        self.color, self.centroid, self.area, self.frame = (
            self.color[keep], self.centroid[keep], self.area[keep], self.frame[keep])

    def match(self, centroid: np.ndarray, area: float, frame: int) -> tuple[np.ndarray | None, float]:
        if self.color.shape[0] == 0:
            return None, 0.0
        age = frame - self.frame
        reach = 1.5 * np.sqrt(self.area) + REACH_PER_FRAME * age
        dist = np.linalg.norm(self.centroid - centroid, axis=1)
        fits = (dist <= reach) & (area <= 1.5 * self.area)
        if not fits.any():
            return None, 0.0
        score = np.where(fits, np.exp(-((dist / reach) ** 2)) * (1.0 - age / (self.horizon + 1)), 0.0)
        best = int(score.argmax())
        return self.color[best], HIDDEN_TRUST * float(score[best])


HIDDEN_TRUST = 0.75
REACH_PER_FRAME = 1.0
