"""Local memory: the last frame's beliefs, carried into the new frame.

Each region of the last frame holds a belief: a probability for every palette color.
A region of the new frame inherits the beliefs of the regions its pixels came from,
followed along the optical flow of the line art or in place (whichever explains it
better). It continues one thing, not a blend: the sources' shares are sharpened before
their beliefs are mixed. How plausible the continuation is, is its `trust`; the rest
is new content for the global memory to recognise.

Trust drops where following pixels is known to mislead: a region far bigger than what
it came from (a character that turned around puts its body where its arm was), a
small piece of something bigger (a newly revealed shape more often than a piece of the
old one), a sudden change of shape. Whole regions are also matched by shape and place
to the last frame's, which a turn-around or a move too fast for the flow leaves intact.

`HiddenMemory` keeps, for a while, the beliefs of regions that vanished without leaving
the frame, for whatever re-emerges there (a character walking out from behind another).
A region that goes on whole in one place gives no color to whatever took its other
pixels (the hill a character uncovers as it walks on is not the character). Following
reads regions on a grid of about 480x270 samples whatever the frame size, as shape does:
a 1080p frame is half a million samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from longanim.engine.backends.paint.regions import RegionStats

FLOW_WIDTH = 480  # line art is shrunk to about this width for optical flow
MIN_FLOW_SIDE = 32  # smaller flow images are padded (see `_dis_flow`)
MIN_SAMPLES = 6  # regions smaller than this many grid samples have no shape to speak of
GROWTH = 1.3  # a region takes at most this many times a source's samples from it (flow can fan out)
GROWTH_LIMIT, GROWN_TRUST = 1.6, 0.4  # bigger than all it came from by this much: trust drops
FRAGMENT_TRUST = 0.6  # holding under half of its source
SLIVER, SLIVER_TRUST = 0.1, 0.6  # holding under a tenth of it
SIZE_SLACK = 0.7  # a region may grow by 1/SIZE_SLACK per frame before it looks like something else
MIN_COVERAGE = 0.3  # regions less covered by the last frame's regions than this are partly new
SHARPEN = 4.0  # sources' shares are raised to this power before their beliefs are mixed
CLEAN = 0.7  # a region taking this much of its pixels from one source continues it
CHANGED_TRUST = 0.5  # at most this much less trust for a continuation that changed shape at once
SHAPE_SLACK = 2.0  # squared shape change (in RECENT_SCALE units) a continuation may show at no cost
MOVE_REGIONS = 400  # at most this many regions per frame are matched by shape and place
WHOLE_AGAIN = 0.9  # a region whose main heir is at least this big goes on whole there
MOVED_AWAY = 0.1  # weight of pixels from a region that visibly moved elsewhere
RECENT_REACH = 0.1  # regions are matched by shape to last frame's within this fraction of the frame
RECENT_SCALE = np.array([0.2, 0.2, 0.2, 0.125, 0.2], np.float32)  # one frame apart shapes barely change


def flow_image(ink: np.ndarray) -> np.ndarray:
    h, w = ink.shape
    if w <= FLOW_WIDTH:
        return ink
    scale = FLOW_WIDTH / w
    return cv2.resize(ink, (FLOW_WIDTH, max(8, int(round(h * scale)))), interpolation=cv2.INTER_AREA)


def _dis_flow(dis, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """DIS optical flow, safe on small frames: OpenCV's DIS fails below 8 px a side and
    crashes the process on low wide images (under 32 rows it picks more pyramid levels
    than the height allows), so a side under MIN_FLOW_SIDE is padded with paper, the same
    in both frames, and the flow cropped back."""
    h, w = current.shape
    if h >= MIN_FLOW_SIDE and w >= MIN_FLOW_SIDE:
        return dis.calc(current, previous, None)
    pad = ((0, max(0, MIN_FLOW_SIDE - h)), (0, max(0, MIN_FLOW_SIDE - w)))
    flow = dis.calc(np.pad(current, pad), np.pad(previous, pad), None)
    return np.ascontiguousarray(flow[:h, :w])


@dataclass
class Carried:
    belief: np.ndarray  # (n+1, K): inherited probability mass per color; rows sum to `trust`
    trust: np.ndarray  # (n+1,) how plausibly each region continues what was there, 0..1
    source: np.ndarray  # (n+1,) last frame's region each one mostly continues, 0 = none


class LocalMemory:
    """The last frame: its regions, line art (for flow) and beliefs."""

    def __init__(self) -> None:
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.stats: RegionStats | None = None
        self.small: np.ndarray | None = None
        self.belief: np.ndarray | None = None
        self.assurance: np.ndarray | None = None  # per region: how surely its color was decided
        self._features: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return self.stats is None

    def remember(self, stats: RegionStats, small: np.ndarray, belief: np.ndarray,
                 assurance: np.ndarray | None = None) -> None:
        self.stats, self.small, self.belief = stats, small, belief
        self.assurance = np.ones(stats.count + 1) if assurance is None else assurance
        self._features = stats.shape_features()

    def carry(self, stats: RegionStats, small: np.ndarray, palette_size: int) -> Carried:
        n = stats.count
        if self.stats is None or self.stats.grid.shape != stats.grid.shape:
            return Carried(np.zeros((n + 1, palette_size)), np.zeros(n + 1), np.zeros(n + 1, np.int64))
        belief = widen(self.belief, palette_size)
        # Whole regions that plainly moved (same shape nearby, no look-alike around) are found
        # first: their old pixels are no evidence for whatever now covers them.
        src, dst, sure = self._moves(stats)
        went = np.zeros(self.stats.count + 1, np.int64)
        went[src] = dst
        # Flow follows motion but breaks on sudden changes; plain overlap survives those.
        moved = self._follow(stats, self._previous_labels_seen_from(stats, small), belief, went)
        still = self._follow(stats, self.stats.sparse, belief, went)
        better = still.trust * still.belief.max(axis=1) > moved.trust * moved.belief.max(axis=1)
        for name in ("belief", "trust", "source"):
            getattr(moved, name)[better] = getattr(still, name)[better]
        # A region that moved takes its old self's belief, as far as the pixels left room.
        weight = (1.0 - moved.trust[dst]) * sure
        moved.belief[dst] += weight[:, None] * belief[src]
        moved.trust[dst] += weight
        took = weight > 0.5 * moved.trust[dst]
        moved.source[dst[took]] = src[took]
        moved.belief[0] = 0.0
        moved.trust[0] = 0.0
        return moved

    def _moves(self, stats: RegionStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(last frame's region, this frame's region, how sure) for whole regions that are each
        other's best match by shape and place, with no other candidate close. Shape is
        mirror-invariant, so a character that turned around, or moved too fast for the flow,
        is found again."""
        prev = self.stats
        rows = np.flatnonzero(~stats.border & (stats.samples >= MIN_SAMPLES))
        cand = np.flatnonzero(~prev.border & (prev.samples >= MIN_SAMPLES))
        rows, cand = rows[rows > 0], cand[cand > 0]
        # In a busy drawing (hatching, a crowd) only the biggest regions are matched this way:
        # parts that turn or fly, not the texture.
        rows = rows[np.argsort(-stats.samples[rows], kind="stable")[:MOVE_REGIONS]]
        cand = cand[np.argsort(-prev.samples[cand], kind="stable")[:MOVE_REGIONS]]
        none = np.zeros(0, np.int64)
        if rows.size == 0 or cand.size == 0:
            return none, none, np.zeros(0)
        diff = (stats.shape_features()[rows][:, None, :] - self._features[cand][None, :, :]) / RECENT_SCALE
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        reach = RECENT_REACH * max(stats.grid.shape) * stats.step
        shift = stats.centroid[rows][:, None, :] - prev.centroid[cand][None, :, :]
        d2 += np.einsum("ijk,ijk->ij", shift, shift) / reach**2
        best_prev = d2.argmin(axis=1)
        best_cur = d2.argmin(axis=0)
        mutual = best_cur[best_prev] == np.arange(rows.size)
        i = np.flatnonzero(mutual)
        j = best_prev[i]
        best = d2[i, j]
        # The runner-up either way, among regions not believed to be the same color.
        label = self.belief[cand].argmax(axis=1)
        other_prev = np.where(label[None, :] != label[j][:, None], d2[i], np.inf).min(axis=1)
        same_color_cur = label[best_prev][None, :] == label[j][:, None]
        other_cur = np.where(~same_color_cur, d2[:, j].T, np.inf)
        other_cur[np.arange(i.size), i] = np.inf
        margin = np.minimum(other_prev, other_cur.min(axis=1)) - best
        sure = np.exp(-best / 2.0) * (1.0 - np.exp(-np.maximum(margin, 0.0) / 2.0))
        keep = sure > 0.05
        return cand[j[keep]], rows[i[keep]], sure[keep]

    def _previous_labels_seen_from(self, stats: RegionStats, small: np.ndarray) -> np.ndarray:
        """Last frame's label at the place each current sparse-grid sample came from (-1 = outside)."""
        flow = _dis_flow(self._flow, small, self.small)  # small(x) ~ previous(x + flow(x))
        gh, gw = stats.sparse.shape
        sh, sw = small.shape
        flow = cv2.resize(flow, (gw, gh), interpolation=cv2.INTER_LINEAR)
        gx, gy = _grid_coords(gw, gh)
        map_x = gx + flow[..., 0] * (gw / sw)
        map_y = gy + flow[..., 1] * (gh / sh)
        return cv2.remap(self.stats.sparse.astype(np.float32), map_x, map_y, cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=-1).astype(np.int32)

    def _follow(self, stats: RegionStats, warped: np.ndarray, belief: np.ndarray, went: np.ndarray) -> Carried:
        """Each region inherits its sources' beliefs, weighed by how plausibly it continues each."""
        n, prev = stats.count, self.stats
        owner, source, counts, seen = _pairs(stats.sparse, warped, n, prev.count)
        # Counted on the sparse grid; in grid samples, like the regions' sizes.
        counts *= stats.thinning**2
        seen *= stats.thinning**2
        # Line samples say nothing; samples from outside the frame are new content.
        on_region = source >= 1
        owner, source, counts = owner[on_region], source[on_region], counts[on_region]
        counts = np.minimum(counts, prev.samples[source] * GROWTH + 4)
        # Pixels of a region that moved elsewhere are uncovered ground, not that region.
        counts = np.where((went[source] > 0) & (went[source] != owner), counts * MOVED_AWAY, counts)
        # The same for any region that goes on about as big as it was in one place (its main
        # heir): whatever else took its pixels was under it, uncovered as it moved on (the hill
        # behind a hat brim walking off, the body of the character behind). Found from the
        # pixels, so it works for regions cut by the frame edge or too alike to match by shape.
        if counts.size:
            order = np.lexsort((counts, source))
            heir = np.zeros(prev.count + 1, np.int64)
            heir[source[order]] = owner[order]
            whole = (heir > 0) & (stats.samples[heir] >= WHOLE_AGAIN * prev.samples) & (prev.samples >= MIN_SAMPLES)
            counts = np.where(whole[source] & (owner != heir[source]), counts * MOVED_AWAY, counts)
        # A small piece of a big source (a shape in front of the sky, a part newly revealed)
        # is that source less often than its pixels say.
        outgoing = np.bincount(source, counts, minlength=prev.count + 1)
        share = counts / np.maximum(outgoing[source], 1.0)
        weight = counts * np.where(share < 0.5, FRAGMENT_TRUST, 1.0) * np.where(share < SLIVER, SLIVER_TRUST, 1.0)
        # ... and a region much bigger than a source is unlikely to be it (a smaller one may be a
        # piece of it, cut off by something passing in front).
        grown = stats.samples[owner] / np.maximum(prev.samples[source], 1.0)
        weight *= np.sqrt(np.minimum(1.0 / np.maximum(SIZE_SLACK * grown, 1e-9), 1.0))
        given = np.bincount(owner, counts, minlength=n + 1)
        kept = np.bincount(owner, weight, minlength=n + 1)
        # Trust is how plausible the continuation is, not how much of the region was in view
        # before: a hill sliding in from the frame edge is still that hill. Only a region mostly
        # new to the frame (or mostly on last frame's lines) is trusted less.
        coverage = given / np.maximum(seen, 1.0)
        trust = kept / np.maximum(given, 1e-9) * np.minimum(coverage / MIN_COVERAGE, 1.0)
        # A region continues one thing, not a blend of everything its pixels touched: the
        # minor sources (a few boundary pixels the flow got wrong) would otherwise leak their
        # beliefs in, frame after frame, until neighbours' colors mix.
        odds = (weight / np.maximum(kept[owner], 1e-9)) ** SHARPEN
        total = np.maximum(np.bincount(owner, odds, minlength=n + 1), 1e-12)[:, None]
        carried = np.zeros((n + 1, belief.shape[1]))
        np.add.at(carried, owner, odds[:, None] * belief[source])
        carried /= total
        # The source giving most.
        order = np.lexsort((counts, owner))
        main = np.zeros(n + 1, np.int64)
        gives = np.zeros(n + 1)
        main[owner[order]] = source[order]
        gives[owner[order]] = counts[order]
        # A clean continuation keeps its shape; one that changed shape at once (a body where
        # an arm was, after a turn-around) is not what it came from.
        clean = (gives >= CLEAN * given) & ~stats.border & ~prev.border[main] & (stats.samples >= MIN_SAMPLES) \
            & (prev.samples[main] >= MIN_SAMPLES)
        rows = np.flatnonzero(clean)
        if rows.size:
            diff = (stats.shape_features()[rows] - self._features[main[rows]]) / RECENT_SCALE
            changed = np.maximum(np.einsum("ij,ij->i", diff, diff) - SHAPE_SLACK, 0.0)
            trust[rows] *= np.maximum(np.exp(-changed / 2.0), CHANGED_TRUST)
        # Far bigger than everything it came from (sources giving a tenth of it or more).
        big = counts >= 0.1 * given[owner]
        size = np.bincount(owner[big], prev.samples[source[big]], minlength=n + 1)
        at_edge = np.bincount(owner[big], prev.border[source[big]], minlength=n + 1) > 0
        grown = (stats.samples > GROWTH_LIMIT * np.maximum(size, 1.0)) & ~stats.border & ~at_edge
        trust = np.where(grown, trust * GROWN_TRUST, trust)
        carried *= trust[:, None]
        main[given == 0] = 0
        return Carried(carried, trust, main)

def _pairs(grid: np.ndarray, warped: np.ndarray, n: int, m: int):
    """(current label, previous label, samples) for every pair that co-occurs, and samples
    per current region not on a previous line. Previous label -1 = outside the frame."""
    width = m + 2
    codes = grid.astype(np.int64).ravel()  # one copy, then in place: no temporaries per frame
    codes *= width
    codes += warped.ravel()
    codes += 1
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


_COORDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid_coords(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    if (w, h) not in _COORDS:
        _COORDS[(w, h)] = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    return _COORDS[(w, h)]


def widen(table: np.ndarray, palette_size: int) -> np.ndarray:
    """Pad per-color columns when a keyframe met since added colors to the palette."""
    if table.shape[1] >= palette_size:
        return table
    return np.concatenate([table, np.zeros((table.shape[0], palette_size - table.shape[1]))], axis=1)


class HiddenMemory:
    """Beliefs of regions that went out of sight lately without leaving the frame. What
    re-emerges where something vanished a moment ago is most likely that thing."""

    def __init__(self, horizon: int = 60, capacity: int = 128) -> None:
        self.horizon = horizon
        self.capacity = capacity
        self.belief = np.zeros((0, 0))
        self.centroid = np.zeros((0, 2))
        self.area = np.zeros(0)
        self.frame = np.zeros(0, np.int64)

    def update(self, before: RegionStats, before_belief: np.ndarray, now: RegionStats, now_belief: np.ndarray,
               frame: int) -> None:
        """Note sure regions of the last frame that no region of their color continues nearby."""
        k = now_belief.shape[1]
        self.belief, before_belief = widen(self.belief, k), widen(before_belief, k)
        label = before_belief.argmax(axis=1)
        sure = before_belief.max(axis=1) >= 0.8
        rows = np.flatnonzero(sure & ~before.border & (before.samples >= MIN_SAMPLES))
        rows = rows[rows > 0]
        if rows.size:
            # Compare each with the current regions of its own color only (a busy drawing has
            # thousands of regions, few of any one color).
            now_label = now_belief.argmax(axis=1)
            order = np.argsort(now_label[1:], kind="stable") + 1
            sorted_label = now_label[order]
            lo = np.searchsorted(sorted_label, label[rows], side="left")
            hi = np.searchsorted(sorted_label, label[rows], side="right")
            kept = np.zeros(rows.size, bool)
            for i, r in enumerate(rows):
                cur = order[lo[i]:hi[i]]
                if not cur.size:
                    continue
                dist = np.linalg.norm(now.centroid[cur] - before.centroid[r], axis=1)
                kept[i] = np.any((dist <= 2.0 * np.sqrt(before.area[r])) & (now.area[cur] >= 0.3 * before.area[r]))
            gone = rows[~kept]
            self.belief = np.concatenate([self.belief, before_belief[gone]])
            self.centroid = np.concatenate([self.centroid, before.centroid[gone]])
            self.area = np.concatenate([self.area, before.area[gone]])
            self.frame = np.concatenate([self.frame, np.full(gone.size, frame)])
        keep = (frame - self.frame) <= self.horizon
        keep[: max(0, keep.size - self.capacity)] = False
        self.belief, self.centroid, self.area, self.frame = (
            self.belief[keep], self.centroid[keep], self.area[keep], self.frame[keep])

    def match(self, centroid: np.ndarray, area: float, frame: int) -> tuple[np.ndarray | None, float]:
        """The belief of what vanished nearest this place lately, and how much to trust it."""
        if self.frame.size == 0:
            return None, 0.0
        age = frame - self.frame
        reach = 1.5 * np.sqrt(self.area) + REACH_PER_FRAME * age
        dist = np.linalg.norm(self.centroid - centroid, axis=1)
        fits = (dist <= reach) & (area <= 1.5 * self.area)
        if not fits.any():
            return None, 0.0
        score = np.where(fits, np.exp(-((dist / reach) ** 2)) * (1.0 - age / (self.horizon + 1)), 0.0)
        best = int(score.argmax())
        return self.belief[best], HIDDEN_TRUST * float(score[best])


HIDDEN_TRUST = 0.75
REACH_PER_FRAME = 1.0
