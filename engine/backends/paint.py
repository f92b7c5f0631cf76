"""`paint`: the embedded CPU colorizer for clean line art, no weights needed.

Each frame is split into flat regions (engine/segment.py). A region the local
memory (the last frame) is sure of keeps its color; the others ask the global
memory (prototypes seeded by the keyframes, grown from confident regions since),
with their neighbours' colors as context and excluding identities already on
screen, and the memory of what was hidden lately (a character walking out from
behind another); the more confident answer wins (engine/memory.py). Lines are
multiplied over the fills, so anti-aliased and colored lines keep their look.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from longanim.engine.backends.base import Backend, Cancelled, ColoredFrame, Keyframe
from longanim.engine.memory import GlobalMemory, HiddenMemory, LocalMemory, Observation, flow_image
from longanim.engine.regions import RegionStats, grid_step, measure
from longanim.engine.segment import Segmentation, segment

OVERRIDE_MARGIN = 0.1  # an unsure local answer yields to a global one at least this much surer
REMEMBER_CONFIDENCE = 0.97  # regions at least this sure are written into the global memory
MIN_SAMPLES = 6  # regions smaller than this many grid samples are too small to describe
SETTLED = 0.8  # local matches this sure are kept without asking the global memory
CLAIM_DISTANCE = 3.0  # a region of a prototype's color this close to it accounts for it
SWITCH_DOUBT = 3.0  # the global memory's accumulated disagreement that overturns a sure color
ROUNDS = 2  # newcomers are identified twice: the second time with each other's answers as context


class PaintBackend(Backend):
    name = "paint"

    def __init__(
        self,
        *,
        gap_close: int = 1,
        global_memory: bool = True,
        memory_capacity: int = 512,
        review_threshold: float = 0.7,
    ) -> None:
        if gap_close < 0 or gap_close > 8:
            raise ValueError(f"gap_close must be 0..8 pixels, got {gap_close}")
        self.gap_close = gap_close
        self.use_global = global_memory
        self.memory_capacity = memory_capacity
        self.review_threshold = review_threshold

    def describe(self) -> dict:
        return {"name": self.name, "devices": ["cpu"], "needs_weights": False}

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        shot = _Shot(self, keyframes)
        # Segmenting a frame needs no memory, so the next frame is segmented on a second
        # thread (OpenCV and NumPy release the GIL) while this one is matched and painted.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="longanim-segment") as ahead:
            pending = None
            for number, lineart in frames:
                if cancelled is not None and cancelled():
                    raise Cancelled(f"cancelled before frame {number}")
                upcoming = (number, lineart, ahead.submit(shot.look, lineart))
                if pending is not None:
                    yield shot.colorize(*pending)
                pending = upcoming
            if pending is not None:
                yield shot.colorize(*pending)


class _Shot:
    """Memory and keyframes of one shot being colorized."""

    def __init__(self, backend: PaintBackend, keyframes: list[Keyframe]) -> None:
        self.backend = backend
        self.local = LocalMemory()
        self.global_ = GlobalMemory(capacity=backend.memory_capacity)
        self.hidden = HiddenMemory()
        self.last: tuple | None = None  # previous frame's stats, colors, confidences
        self.keyframes = {k.number: k for k in keyframes}
        self.seeds: dict[int, tuple] = {}  # keyframe -> what the local memory starts from
        for key in keyframes:
            seg = self._segment(key.lineart if key.lineart is not None else key.color)
            stats = measure(seg, grid_step(*seg.shape))
            color = region_colors(key.color, seg)
            confident = np.ones(seg.count + 1, bool)
            self._remember_globally(stats, color, confident, key.number, pinned=True)
            self.seeds[key.number] = (stats, flow_image(seg.ink), color, np.ones(seg.count + 1))

    def _segment(self, image: np.ndarray) -> Segmentation:
        return segment(image, gap_close=self.backend.gap_close)

    def look(self, lineart: np.ndarray) -> tuple[Segmentation, RegionStats, np.ndarray]:
        """Everything about a frame that does not depend on the frames before it."""
        seg = self._segment(lineart)
        return seg, measure(seg, grid_step(*seg.shape)), flow_image(seg.ink)

    def colorize(self, number: int, lineart: np.ndarray, looked: Future) -> ColoredFrame:
        seg, stats, small = looked.result()
        key = self.keyframes.get(number)
        if self.local.empty and self.seeds and key is None:
            # A shot that starts before its first keyframe: begin from the nearest one, so its
            # background and whatever else still overlaps carry over (a keyframe at the end
            # colors the frames before it).
            nearest = min(self.seeds, key=lambda k: abs(k - number))
            if self.seeds[nearest][0].grid.shape == stats.grid.shape:
                self.local.remember(*self.seeds[nearest])
        doubt = rival = None
        if key is not None and key.color.shape[:2] == seg.shape:
            color = region_colors(key.color, seg)
            confidence = np.ones(seg.count + 1)
            source = "keyframe"
        else:
            color, confidence, doubt, rival = self._recall(number, stats, small)
            source = "memory"
        color[0] = 255  # under a line core the line itself shows (multiplied over white)
        confidence[0] = 1.0
        self.local.remember(stats, small, color, confidence, doubt, rival)
        if self.last is not None:
            self.hidden.update(*self.last, stats, color, number)
        self.last = (stats, color, confidence)
        if self.backend.use_global:
            self._remember_globally(stats, color, confidence >= REMEMBER_CONFIDENCE, number)
        rgb, sure = render(lineart, color, confidence, seg.labels)
        below = cv2.compare(sure, self.backend.review_threshold * 255.0, cv2.CMP_LT)
        review = cv2.countNonZero(below) / below.size
        conf_map = sure.astype(np.float32)
        conf_map *= 1.0 / 255.0
        return ColoredFrame(
            number, rgb, conf_map, {"regions": seg.count, "review_fraction": review, "source": source}
        )

    def _recall(self, number: int, stats: RegionStats, small: np.ndarray):
        local = self.local.match(stats, small)
        color, confidence = local.color.copy(), local.confidence.copy()
        if not self.backend.use_global or len(self.global_) == 0:
            return color, confidence, None, None
        memory = self.global_
        features = describe(stats)
        decided = confidence >= SETTLED
        decided[0] = True
        # Prototypes that regions tracked in view already account for are unlikely
        # identities for a newcomer: of three look-alike characters, the one coming
        # back is the one not on screen.
        tracked = np.flatnonzero(decided[1:]) + 1
        claimed = np.zeros(len(memory), bool)
        if tracked.size:
            claimed = _claims(memory, stats, features, color, decided, tracked).any(axis=0)
        open_ = np.flatnonzero(~decided)
        open_ = open_[np.argsort(-stats.area[open_], kind="stable")]
        # Large regions first: they become the context that identifies the small ones inside
        # them; a second round lets the large ones see the small ones' answers too.
        by_open = np.zeros((0, len(memory)), bool)
        for round_ in range(ROUNDS):
            for i, r in enumerate(open_):
                rows = np.array([r])
                obs = _observe(stats, features, color, decided, rows)
                excluded = claimed
                if round_ > 0:  # claims of the other newcomers from round one, not its own
                    excluded = claimed | ((by_open.sum(axis=0) - by_open[i]) > 0)
                found = memory.match(obs, excluded=excluded[None, :])
                # Away from the frame edge, a shape appearing where another vanished a moment
                # ago is most likely that one coming out from behind something.
                hidden_color, hidden_conf = self.hidden.match(stats.centroid[r], stats.area[r], number)
                if hidden_conf > found.confidence[0] and not stats.border[r]:
                    found.color[0], found.confidence[0] = hidden_color, hidden_conf
                if np.array_equal(found.color[0], color[r]):
                    confidence[r] = max(confidence[r], found.confidence[0])  # both memories agree
                elif found.confidence[0] > confidence[r] + OVERRIDE_MARGIN:
                    color[r], confidence[r] = found.color[0], found.confidence[0]
                elif round_ == ROUNDS - 1 and confidence[r] == 0:
                    parent = stats.parent[r]  # unrecognised: continue the enclosing fill
                    color[r] = color[parent] if decided[parent] else 255
                decided[r] = True
            if round_ == 0 and open_.size:
                by_open = _claims(memory, stats, features, color, decided, open_)
        doubt, rival = self._doubt(stats, features, color, confidence, *self.local.inherited(local.source))
        return color, confidence, doubt, rival

    def _doubt(self, stats, features, color, confidence, doubt, rival):
        """Ask the global memory about every region, however it was colored, every frame.

        A color picked on a sliver, or two parts swapped during an occlusion, is followed
        faithfully by the local memory; the global memory naming the same other color frame
        after frame is evidence that adds up until it outweighs the color's confidence.
        """
        memory = self.global_
        rows = np.flatnonzero(~stats.border & (stats.samples >= MIN_SAMPLES))
        rows = rows[rows > 0]
        new_doubt = np.zeros(stats.count + 1)
        new_rival = np.zeros((stats.count + 1, 3), np.uint8)
        if rows.size == 0:
            return new_doubt, new_rival
        known = np.ones(stats.count + 1, bool)
        claims = _claims(memory, stats, features, color, known, rows)
        others = (claims.sum(axis=0)[None, :] - claims) > 0
        obs = _observe(stats, features, color, known, rows)
        found = memory.match(obs, excluded=others)
        # Doubt grows only as far as the memory does not also know the region in its own color.
        backing = memory.support(obs, color[rows], excluded=others)
        disagrees = np.any(found.color != color[rows], axis=1)
        same_rival = np.all(rival[rows] == found.color, axis=1)
        grown = np.where(same_rival, doubt[rows], 0.0) + found.confidence * (1.0 - backing)
        new_doubt[rows] = np.where(disagrees, grown, 0.0)
        new_rival[rows] = found.color
        flip = rows[new_doubt[rows] > SWITCH_DOUBT * np.maximum(confidence[rows], 0.2)]
        if flip.size:
            color[flip] = new_rival[flip]
            confidence[flip] = np.minimum(new_doubt[flip] / SWITCH_DOUBT, 1.0)
            new_doubt[flip] = 0.0
        return new_doubt, new_rival

    def _remember_globally(self, stats, color, confident, number, *, pinned=False) -> None:
        confident = confident.copy()
        confident[0] = False
        known = np.ones(stats.count + 1, bool)
        obs = _observe(stats, describe(stats), color, known, np.flatnonzero(confident), remember=True)
        # Regions cut by the frame edge have no trustworthy shape to remember.
        whole = (~stats.border & (stats.samples >= MIN_SAMPLES))[confident]
        obs = obs.rows(whole)
        if not pinned and len(self.global_) and obs.features.shape[0]:
            # Learn only what the keyframes do not contradict: a confident mistake written
            # into the global memory would come back to confirm itself.
            others = np.broadcast_to(~self.global_.pinned, (obs.features.shape[0], len(self.global_)))
            drawn = self.global_.match(obs, excluded=others)
            agrees = np.all(drawn.color == obs.color, axis=1) | (drawn.confidence < 0.3)
            obs = obs.rows(agrees)
        self.global_.remember(obs, number, pinned=pinned)


def _observe(stats: RegionStats, features, color: np.ndarray, known: np.ndarray, rows: np.ndarray,
             remember: bool = False) -> Observation:
    """Rows' descriptors with their neighbours' colors where those are known (-1 elsewhere)."""
    neighbors = stats.neighbors[rows]
    ok = (neighbors > 0) & known[neighbors]
    context = np.where(ok[..., None], color[neighbors].astype(np.int16), np.int16(-1))
    return Observation(features[rows], context, stats.contact[rows], color[rows] if remember else None)


def _claims(memory, stats, features, color, decided, rows) -> np.ndarray:
    """(rows x prototypes): which prototypes each region accounts for (its color, close shape)."""
    d2 = memory.distances(_observe(stats, features, color, decided, rows))
    same = np.all(color[rows][:, None, :] == memory.color[None, :, :], axis=2)
    return same & (d2 <= CLAIM_DISTANCE)


def describe(stats: RegionStats) -> np.ndarray:
    """Size and shape, invariant to position: where a part sits is told by its neighbours."""
    return stats.shape_features().astype(np.float32)


def region_colors(image: np.ndarray, seg: Segmentation) -> np.ndarray:
    """Per-region color of a colored frame: the most common color of its clean interior.

    The mode, not the mean: a painted detail the line art does not outline (a highlight,
    a pupil) must not tint the whole region.
    """
    n = seg.count
    rgb = image[..., :3].astype(np.int64)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    color = np.zeros((n + 1, 3), np.uint8)
    found = np.zeros(n + 1, bool)
    # Interior pixels first; regions with no clean interior (slivers) fall back to all their pixels.
    for labels in (np.where(seg.seeds > 0, seg.labels, 0), seg.labels):
        keys, counts = np.unique(labels.astype(np.int64).ravel() << 24 | packed.ravel(), return_counts=True)
        owner, value = keys >> 24, keys & 0xFFFFFF
        order = np.lexsort((counts, owner))  # per owner, the most common value comes last
        last = np.r_[owner[order][1:] != owner[order][:-1], True]
        winners, colors = owner[order][last], value[order][last]
        todo = ~found[winners]
        winners, colors = winners[todo], colors[todo]
        color[winners] = np.stack([colors >> 16, (colors >> 8) & 255, colors & 255], axis=1)
        found[winners] = True
    return color


def render(lineart: np.ndarray, color: np.ndarray, confidence: np.ndarray, labels: np.ndarray):
    """Fills under the line art, multiplied (paper shows the fill, ink darkens it), and the
    per-pixel confidence (uint8), gathered together in one pass over the label image."""
    packed = np.zeros(color.shape[0], np.uint32)
    table = packed.view(np.uint8).reshape(-1, 4)
    table[:, :3] = color
    table[:, 3] = np.round(np.clip(confidence, 0.0, 1.0) * 255.0)
    rgba = np.take(packed, labels).view(np.uint8).reshape(*labels.shape, 4)
    fill = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    rgb = cv2.multiply(fill, np.ascontiguousarray(lineart[..., :3]), scale=1.0 / 255.0)
    return rgb, cv2.extractChannel(rgba, 3)
