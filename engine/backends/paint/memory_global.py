"""Global memory: what each keyframe color looks like and which colors it borders.

LongAnimation's global memory holds features of everything colored since the shot
began. For flat fills the features that identify a color are the shapes of its
regions (size, elongation, how ragged: measures a turn-around or a tilt leave alone)
and the colors around it (a pupil sits in an eye-white, a hat on one character's
skin, a cloud in the sky). `likelihood` scores every region of a new frame against
every known color on both, as log-likelihoods; the colorizer multiplies them into
the belief the local memory carried over (`memory_local`).

Size is bounded by the keyframes: the palette holds only keyframe colors, adjacency
is a palette x palette table, and learned shape views have a fixed budget.

Adjacency counts the length of boundary two colors share, and the specks left between
crossing lines count once per region they made (counted like the body they sit on, they
made a body its own likeliest neighbour). The memory is seeded by the keyframes and grows
only from regions followed cleanly and surely, never from what the keyframes contradict.
Sky, ground and hills are cut into pieces of every shape by whatever stands in front, so a
close match to one of their views counts for less than one to a part's (what shows of a
head behind another character is not a slice of hill).
"""

from __future__ import annotations

import numpy as np

from longanim.engine.backends.paint.regions import RegionStats

# How far apart two views of one color may look, per shape descriptor (RegionStats.shape_features):
# log area (characters change scale with depth), two log moments per area, wide or tall
# ((x - y) / (x + y) of the variances), log perimeter**2/area (ragged).
SHAPE_SCALE = np.array([0.3, 0.3, 0.3, 0.4, 0.3], np.float32)
# A region's shape is a close match to a view of its color, or (half hidden, squashed, seen from
# a new side) anything at all: p(shape | color) = (1 - SHAPE_ODD) * near a view + SHAPE_ODD * anywhere,
# a close match being SHAPE_SPECIFIC nats likelier than anywhere. A shape matching nothing is
# evidence against no color; a color with no view yet (only seen cut by the frame edge) is
# scored as "anywhere" like the rest.
SHAPE_ODD = 0.2
SHAPE_SPECIFIC = 4.0
# Neighbours are either the ones a color had beside it in the keyframes (its own parts, the sky
# around a cloud) or whatever happens to pass behind or in front of it, drawn like any neighbour.
CONTEXT_INCIDENTAL = 0.3
MERGE_DISTANCE = 0.5  # squared distance under which a new view only refreshes an old one
CONTRADICTS = 4.0  # a keyframe view of another color this close makes a region not worth learning
ADJACENCY_PRIOR = 0.5  # pseudo-count spread over the palette: unseen neighbours are unlikely, not impossible
EXACT_CONTEXT = 64  # palettes up to this size read every neighbour's whole belief;
CONTEXT_COLORS = 8  # bigger ones only each neighbour's likeliest colors
LEARNED_ADJACENCY_WEIGHT = 0.05  # a frame's contacts count this much against a keyframe's


class Palette:
    """The keyframes' colors; a region's color is always one of these, by index.

    On transparent film a color is also opaque or not (`opaque`): the film around a
    character is white on the way in, and must not become the white of its eyes."""

    def __init__(self) -> None:
        self.colors = np.zeros((0, 3), np.uint8)
        self.opaque = np.zeros(0, bool)
        self._index: dict[int, int] = {}

    def __len__(self) -> int:
        return self.colors.shape[0]

    def add(self, colors: np.ndarray, opaque: np.ndarray | None = None) -> np.ndarray:
        """Indices of `colors` (m x 3 uint8; `opaque`: m bools, all True if not given),
        adding those not yet known."""
        opaque = np.ones(colors.shape[0], bool) if opaque is None else np.asarray(opaque, bool)
        out = np.empty(colors.shape[0], np.int64)
        fresh = []
        for i, key in enumerate(_keys(colors, opaque).tolist()):
            index = self._index.get(key)
            if index is None:
                index = self._index[key] = len(self._index)
                fresh.append(i)
            out[i] = index
        if fresh:
            self.colors = np.concatenate([self.colors, colors[fresh].astype(np.uint8).reshape(-1, 3)])
            self.opaque = np.concatenate([self.opaque, opaque[fresh]])
        return out

    def restore(self, colors: np.ndarray, opaque: np.ndarray | None = None) -> None:
        """Back to a saved palette (`shot_state`)."""
        self.colors = colors.astype(np.uint8)
        self.opaque = np.ones(len(colors), bool) if opaque is None else opaque.astype(bool)
        self._index = {int(key): i for i, key in enumerate(_keys(self.colors, self.opaque))}


class GlobalMemory:
    """Shape views per color and a color adjacency table, seeded by keyframes."""

    def __init__(self, palette: Palette, capacity: int = 512) -> None:
        if capacity < 1:
            raise ValueError(f"memory capacity must be at least 1 view, got {capacity}")
        self.palette = palette
        self.capacity = capacity  # learned views; keyframe views are kept on top
        width = SHAPE_SCALE.size
        self.features = np.zeros((0, width), np.float32)
        self.color = np.zeros(0, np.int64)
        self.pinned = np.zeros(0, bool)
        self.last_seen = np.zeros(0, np.int64)
        self._keyframe_contacts = np.zeros((0, 0))
        self._learned_contacts = np.zeros((0, 0))
        self._adjacency: np.ndarray | None = None

    def __len__(self) -> int:
        return self.color.shape[0]

    # ------------------------------------------------------------------ learning
    def learn(self, stats: RegionStats, color: np.ndarray, whole: np.ndarray, frame: int, *,
              keyframe: bool = False, sure: np.ndarray | None = None) -> None:
        """Remember a colored frame. `color`: palette index per region; `whole`: regions whose
        shape is trustworthy (inside the frame, big enough); `sure`: regions whose color is
        certain enough to learn from (all of them for a keyframe)."""
        sure = np.ones(stats.count + 1, bool) if sure is None else sure
        self._learn_contacts(stats, color, sure, keyframe)
        rows = np.flatnonzero(whole & sure)
        rows = rows[rows > 0]
        if not rows.size:
            return
        features = stats.shape_features()[rows].astype(np.float32)
        if not keyframe and self.pinned.any():
            # Learn only what the keyframes do not contradict: a confident mistake written into
            # the memory would come back to confirm itself.
            d2 = _distances(features, self.features[self.pinned])
            nearest = d2.argmin(axis=1)
            close = d2[np.arange(rows.size), nearest] <= CONTRADICTS
            agree = ~close | (self.color[self.pinned][nearest] == color[rows])
            features, rows = features[agree], rows[agree]
        self._learn_views(features, color[rows], frame, keyframe)

    def _learn_contacts(self, stats, color, sure, keyframe) -> None:
        k = len(self.palette)
        self._grow(k)
        neighbors, contact = stats.neighbors, stats.contact
        ok = (neighbors > 0) & sure[neighbors] & sure[:, None]
        ok[0] = False
        rows, slots = np.nonzero(ok)
        # Which colors a color borders is counted by the length of boundary shared, not one per
        # region: the specks left between crossing lines are many and small, and counted like the
        # body they sit on, the specks on both sides of an arm made a body its own likeliest
        # neighbour (so a piece of another character's body beside it, or its own arm, looked like
        # more of it). How much that says still goes by how many regions showed it.
        share = contact[rows, slots]
        table = np.zeros((k, k))
        np.add.at(table, (color[rows], color[neighbors[rows, slots]]), share * stats.perimeter[rows])
        regions = np.bincount(color[rows], share, minlength=k)
        table *= (regions / np.maximum(table.sum(axis=1), 1e-12))[:, None]
        if keyframe:
            self._keyframe_contacts += table
        else:
            self._learned_contacts += table
        self._adjacency = None

    def _learn_views(self, features, color, frame, keyframe) -> None:
        if len(self):
            d2 = _distances(features, self.features)
            d2 = np.where(color[:, None] == self.color[None, :], d2, np.inf)
            best = d2.argmin(axis=1)
            close = d2[np.arange(d2.shape[0]), best] <= MERGE_DISTANCE
            self.last_seen[best[close]] = frame
            features, color = features[~close], color[~close]
        if not color.size:
            return
        self.features = np.concatenate([self.features, features])
        self.color = np.concatenate([self.color, color])
        self.pinned = np.concatenate([self.pinned, np.full(color.size, keyframe)])
        self.last_seen = np.concatenate([self.last_seen, np.full(color.size, frame)])
        learned = np.flatnonzero(~self.pinned)
        if learned.size > self.capacity:  # forget the learned views seen longest ago
            drop = learned[np.argsort(self.last_seen[learned], kind="stable")[: learned.size - self.capacity]]
            keep = np.ones(len(self), bool)
            keep[drop] = False
            for name in ("features", "color", "pinned", "last_seen"):
                setattr(self, name, getattr(self, name)[keep])

    def _grow(self, k: int) -> None:
        old = self._keyframe_contacts.shape[0]
        if old < k:
            for name in ("_keyframe_contacts", "_learned_contacts"):
                grown = np.zeros((k, k))
                grown[:old, :old] = getattr(self, name)
                setattr(self, name, grown)

    # ------------------------------------------------------------------ recognition
    @property
    def adjacency(self) -> np.ndarray:
        """P(the region across a stretch of outline has color j | a region has color i), rows sum to 1."""
        if self._adjacency is None:
            k = len(self.palette)
            self._grow(k)
            counts = self._keyframe_contacts + LEARNED_ADJACENCY_WEIGHT * self._learned_contacts
            counts = counts + ADJACENCY_PRIOR / max(k, 1)
            specific = counts / counts.sum(axis=1, keepdims=True)
            anyone = counts.sum(axis=0) / counts.sum()
            self._adjacency = (1.0 - CONTEXT_INCIDENTAL) * specific + CONTEXT_INCIDENTAL * anyone[None, :]
        return self._adjacency

    def shape_loglik(self, features: np.ndarray) -> np.ndarray:
        """(rows x palette) log-likelihood of each row's shape under each color, against
        "any shape at all" (0)."""
        k = len(self.palette)
        if not len(self) or not features.shape[0]:
            return np.full((features.shape[0], k), np.log(SHAPE_ODD))
        order = np.argsort(self.color, kind="stable")
        colors = self.color[order]
        d2 = _distances(features.astype(np.float32), self.features[order])
        starts = np.flatnonzero(np.r_[True, colors[1:] != colors[:-1]])
        best = np.full((features.shape[0], k), np.inf)
        best[:, colors[starts]] = np.minimum.reduceat(d2, starts, axis=1)  # nearest view of each color
        near = np.exp(SHAPE_SPECIFIC - best / 2.0)  # 0 for colors with no view
        return np.log((1.0 - SHAPE_ODD) * near + SHAPE_ODD)

    def largest(self, k: int) -> np.ndarray:
        """Per color, the log area of its biggest view (-inf for a color with none)."""
        out = np.full(k, -np.inf)
        np.maximum.at(out, self.color, self.features[:, 0].astype(np.float64))
        return out

    def context_loglik(self, stats: RegionStats, belief: np.ndarray) -> np.ndarray:
        """((n+1) x palette) log-likelihood of each region's neighbours under each color of the
        region, neighbours weighed by their share of its boundary and by what they are believed to be."""
        neighbors, contact = stats.neighbors, stats.contact
        # [r, slot, c] = sum_j P(j | c) belief(neighbour = j); with many keyframe colors, over each
        # neighbour's few likeliest colors only (beliefs are peaked, and a full palette x palette
        # product per region is slow for a busy drawing).
        adjacency_t = self.adjacency.T  # [j, c] = P(j | c)
        if belief.shape[1] <= EXACT_CONTEXT:
            compatible = belief[neighbors] @ adjacency_t
        else:
            top = np.argpartition(-belief, CONTEXT_COLORS - 1, axis=1)[:, :CONTEXT_COLORS]
            mass = np.take_along_axis(belief, top, axis=1)
            compatible = np.einsum("rsm,rsmc->rsc", mass[neighbors], adjacency_t[top[neighbors]])
        weight = np.where(neighbors > 0, contact, 0.0)
        return np.einsum("rs,rsc->rc", weight, np.log(np.maximum(compatible, 1e-12)))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared scaled distances, rows of `a` to rows of `b` (|a|^2 + |b|^2 - 2ab: one matrix product)."""
    a = a.astype(np.float64) / SHAPE_SCALE
    b = b.astype(np.float64) / SHAPE_SCALE
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def _packed(colors: np.ndarray) -> np.ndarray:
    c = colors.astype(np.int64)
    return c[:, 0] << 16 | c[:, 1] << 8 | c[:, 2]


def _keys(colors: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """A palette entry's identity: its color, and bit 24 set for a color on film."""
    return _packed(colors) | (~opaque).astype(np.int64) << 24
