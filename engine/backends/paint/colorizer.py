"""The paint backend's frame loop: segment, measure, believe, render.

How the memories combine is the package's story (`longanim.engine.backends.paint`); here
the beliefs meet. Segmenting and measuring frame n+1 overlaps colorizing frame n (a
one-thread pool) because both are cv2 work that releases the GIL. A region's color is its
most probable one; its confidence is how surely that color was decided when it last was,
never raised by following it cleanly (that re-reads the same evidence), and a region
that changes color is no surer of the new one than it was unsure of the old. Lines are
multiplied over the fills, so anti-aliased lines and dark colored ink keep their look;
vivid colored lines (shadow and highlight boundaries, `vivid_lines`) take the fill of
the region beside them. On transparent film each fill is as opaque as the keyframe
region that taught its color was; the output's fourth channel says so.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
from longanim.engine.backends.base import Backend, Cancelled, ColoredFrame, Keyframe
from longanim.engine.backends.paint import shot_state
from longanim.engine.backends.paint.colored_lines import vivid_lines
from longanim.engine.backends.paint.memory_global import GlobalMemory, Palette
from longanim.engine.backends.paint.memory_local import (
    MIN_SAMPLES,
    HiddenMemory,
    LocalMemory,
    flow_image,
    widen,
)
from longanim.engine.backends.paint.objects import ObjectPalette
from longanim.engine.backends.paint.regions import RegionStats, grid_step, measure
from longanim.engine.backends.paint.scenery_bands import SceneryBands
from longanim.engine.backends.paint.segment import Segmentation, segment
from longanim.engine.errors import InputError

SHAPE_WEIGHT = 0.5  # scale of the shape evidence against the context and layout evidence
BACKDROP_SHAPE = 1.0  # most nats of (weighted) shape evidence for a backdrop color
CONTEXT_WEIGHT = 1.0
LAYOUT_FOLLOWED = 0.2  # weight of the layout evidence for a cleanly followed region
DEAD_ZONE = 1.0  # nats of evidence a cleanly followed color may be behind the best by, unpenalised
SETTLED = 0.9  # followed this cleanly and believed this surely, a region holds its part
CLAIMED = 0.05  # how likely new content is a part already held elsewhere
STICKY = 1e-3  # least chance a followed region is not what it was: keeps strong contrary evidence able to win
ROUNDS = 3
LEARN_BELIEF = 0.99  # regions at least this sure, and cleanly followed, teach the global memory
LEARN_TRUST = 0.9
HIDDEN_BELOW = 0.5  # regions explained less than this ask what vanished nearby
MIN_SIDE = 2  # px; a frame of one row or column has no inside to fill
REVIEW_THRESHOLD = 0.7  # confidence below this asks an artist to look
GOES_ON = 0.5  # a region continuing the last frame with this much trust carries its assurance on


class PaintBackend(Backend):
    name = "paint"
    causal = True  # frame n is decided from the keyframes and frames up to n (the look-ahead only segments)

    def __init__(
        self,
        *,
        gap_close: int = 1,
        global_memory: bool = True,
        memory_capacity: int = 512,
        review_threshold: float = REVIEW_THRESHOLD,
        vivid_lines: str = "fill",
        output_alpha: str = "keyframe",
    ) -> None:
        """`vivid_lines`: "fill" (vivid colored lines take their region's fill) or "keep"
        (drawn over the fills like ink). `output_alpha`: "keyframe" (a fill is opaque where the
        keyframe region that taught its color was, for line art on transparent film) or
        "lineart" (no fourth channel: the output keeps the line art's alpha)."""
        if isinstance(gap_close, bool) or not isinstance(gap_close, int) or not 0 <= gap_close <= 8:
            raise ValueError(f"gap_close must be a whole number of pixels, 0..8, got {gap_close!r}")
        if isinstance(memory_capacity, bool) or not isinstance(memory_capacity, int) or memory_capacity < 1:
            raise ValueError(f"memory_capacity must be a whole number, at least 1, got {memory_capacity!r}")
        if not isinstance(global_memory, bool):
            raise ValueError(f"global_memory must be true or false, got {global_memory!r}")
        if isinstance(review_threshold, bool) or not isinstance(review_threshold, (int, float)) \
                or not math.isfinite(review_threshold):
            raise ValueError(f"review_threshold must be a number (confidences run 0..1), got {review_threshold!r}")
        self.gap_close = gap_close
        self.use_global = global_memory
        self.memory_capacity = memory_capacity
        self.review_threshold = review_threshold
        for name, value, choices in (("vivid_lines", vivid_lines, ("fill", "keep")),
                                     ("output_alpha", output_alpha, ("keyframe", "lineart"))):
            if value not in choices:
                raise ValueError(f"{name} must be {' or '.join(choices)}, got {value!r}")
        self.vivid_lines = vivid_lines
        self.output_alpha = output_alpha

    def describe(self) -> dict:
        return {"name": self.name, "devices": ["cpu"], "needs_weights": False}

    resumable = True

    def state_identity(self) -> dict:
        return {**self.cache_identity(), "state_version": shot_state.VERSION,
                "options": {"gap_close": self.gap_close, "global_memory": self.use_global,
                            "memory_capacity": self.memory_capacity, "review_threshold": self.review_threshold,
                            "vivid_lines": self.vivid_lines, "output_alpha": self.output_alpha}}

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        for frame, _ in self.colorize_resumable(frames, keyframes, progress=progress, cancelled=cancelled):
            yield frame

    def colorize_resumable(self, frames, keyframes, state=None, *, progress=None, cancelled=None):
        if not keyframes:
            raise InputError("paint needs at least one colored keyframe: its colors are all it paints with")
        shot = _Shot(self, keyframes)
        if state is not None:
            shot_state.restore(shot, state)
        # Segmenting a frame needs no memory, so the next frame is segmented on a second
        # thread (OpenCV and NumPy release the GIL) while this one is matched and painted.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="longanim-segment") as ahead:
            pending = None
            for number, lineart in frames:
                if cancelled is not None and cancelled():
                    raise Cancelled(f"cancelled before frame {number}")
                if min(lineart.shape[:2]) < MIN_SIDE:
                    raise InputError(f"frame {number} is {lineart.shape[1]}x{lineart.shape[0]} px; paint needs "
                                     f"at least {MIN_SIDE}x{MIN_SIDE} (a region and the paper around it)")
                upcoming = (number, lineart, ahead.submit(shot.look, lineart))
                if pending is not None:
                    yield shot.colorize(*pending), lambda: shot_state.snapshot(shot)
                pending = upcoming
            if pending is not None:
                yield shot.colorize(*pending), lambda: shot_state.snapshot(shot)


class _Shot:
    """Memories and keyframes of one shot being colorized."""

    def __init__(self, backend: PaintBackend, keyframes: list[Keyframe]) -> None:
        self.backend = backend
        self.palette = Palette()
        self.local = LocalMemory()
        self.global_ = GlobalMemory(self.palette, capacity=backend.memory_capacity)
        self.objects = ObjectPalette()
        self.hidden = HiddenMemory()
        self.bands = SceneryBands()
        self.last: tuple[RegionStats, np.ndarray] | None = None
        self.keyframes = {k.number: k for k in keyframes}
        # Fills get a coverage of their own only on film: opaque line art has no alpha to decide.
        self.film = backend.output_alpha == "keyframe" and any(k.alpha is not None for k in keyframes)
        self.seeds: dict[int, tuple] = {}  # keyframe -> what the local memory starts from
        for key in keyframes:
            seg = self._segment(key.lineart if key.lineart is not None else key.color)
            stats = measure(seg, grid_step(*seg.shape))
            label = self._labels(key.color, seg, key.alpha)
            self.global_.learn(stats, label, _whole(stats), key.number, keyframe=True)
            self.objects.learn_keyframe(stats, label, len(self.palette))
            self.bands.learn(stats, label, self._scenery(len(self.palette)))
            self.seeds[key.number] = (stats, flow_image(seg.ink), label)
        if not len(self.palette):  # keyframes with no fill at all (solid ink): paper is all there is
            self.palette.add(np.array([[255, 255, 255]], np.uint8))

    def _segment(self, image: np.ndarray) -> Segmentation:
        return segment(image, gap_close=self.backend.gap_close)

    def _labels(self, color_image: np.ndarray, seg: Segmentation, alpha: np.ndarray | None = None) -> np.ndarray:
        """Palette index per region of a colored frame (0 for the line label, never read);
        with the keyframe's `alpha` (film shots), a region mostly on film is a color of its own."""
        label = np.zeros(seg.count + 1, np.int64)
        opaque = region_opacity(alpha, seg)[1:] if alpha is not None and self.film else None
        label[1:] = self.palette.add(region_colors(color_image, seg)[1:], opaque)
        return label

    def _certain(self, label: np.ndarray) -> np.ndarray:
        belief = np.zeros((label.size, len(self.palette)))
        belief[np.arange(label.size), label] = 1.0
        belief[0] = 0.0
        return belief

    def look(self, lineart: np.ndarray) -> tuple[Segmentation, RegionStats, np.ndarray, tuple | None]:
        """Everything about a frame that does not depend on the frames before it (its vivid
        lines too: looking for them costs a few ms a 1080p frame, better spent off the loop)."""
        seg = self._segment(lineart)
        vivid = vivid_lines(lineart, seg.ink, seg.labels) if self.backend.vivid_lines == "fill" else None
        return seg, measure(seg, grid_step(*seg.shape)), flow_image(seg.ink), vivid

    def colorize(self, number: int, lineart: np.ndarray, looked: Future) -> ColoredFrame:
        seg, stats, small, vivid = looked.result()
        key = self.keyframes.get(number)
        if self.local.empty and self.seeds and key is None:
            # A shot that starts before its first keyframe: begin from the nearest one, so its
            # background and whatever else still overlaps carry over (a keyframe at the end
            # colors the frames before it).
            nearest = min(self.seeds, key=lambda k: abs(k - number))
            seed_stats, seed_small, seed_label = self.seeds[nearest]
            if seed_stats.grid.shape == stats.grid.shape:
                self.local.remember(seed_stats, seed_small, self._certain(seed_label))
        if key is not None and key.color.shape[:2] == seg.shape:
            belief = self._certain(self._labels(key.color, seg, key.alpha))
            followed = np.ones(stats.count + 1)
            source = "keyframe"
            assurance = np.ones(stats.count + 1)
        else:
            belief, followed, came_from = self._believe(number, stats, small)
            source = "memory"
            assurance = self._assurance(belief, followed, came_from)
        label = belief.argmax(axis=1)
        color = self.palette.colors[label]
        confidence = assurance
        color[0] = 255  # under a line core the line itself shows (multiplied over white)
        confidence[0] = 1.0
        self.local.remember(stats, small, belief, assurance)
        if self.last is not None:
            self.hidden.update(*self.last, stats, belief, number)
        self.last = (stats, belief)
        if self.backend.use_global and source == "memory":
            # Learn new views of a color only from regions both sure and cleanly followed: a
            # confident mistake written into the global memory would come back to confirm itself.
            sure = (belief.max(axis=1) >= LEARN_BELIEF) & (followed >= LEARN_TRUST)
            self.global_.learn(stats, label, _whole(stats), number, sure=sure)
            self.bands.learn(stats, label, self._scenery(len(self.palette)), sure)
        coverage = None
        if self.film:
            coverage = np.where(self.palette.opaque[label], 255, 0).astype(np.uint8)
            coverage[0] = 0  # a line's coverage is the line art's own
        rgb, sure_map = render(lineart, color, confidence, seg.labels, coverage=coverage, vivid=vivid)
        below = cv2.compare(sure_map, self.backend.review_threshold * 255.0, cv2.CMP_LT)
        review = cv2.countNonZero(below) / below.size
        conf_map = sure_map.astype(np.float32)
        conf_map *= 1.0 / 255.0
        return ColoredFrame(
            number, rgb, conf_map, {"regions": seg.count, "review_fraction": review, "source": source},
            confidence8=sure_map,
        )

    def _assurance(self, belief: np.ndarray, trust: np.ndarray, came_from: np.ndarray) -> np.ndarray:
        """How surely each region's color was decided, for the review mask. A region that goes on
        in the color it had is never surer than it was: following it frame after frame re-reads
        the same evidence, which makes its belief surer without making it any truer."""
        decided = belief.max(axis=1)
        before = self.local.belief.argmax(axis=1)
        followed = (came_from > 0) & (trust >= GOES_ON)
        same = belief.argmax(axis=1) == before[came_from]
        held = self.local.assurance[came_from]
        # A region that changes color cannot be surer of the new one than it was unsure of the old.
        changed = np.minimum(decided, 1.0 - held)
        return np.where(followed, np.where(same, np.minimum(held, decided), changed), decided)

    def _believe(self, number: int, stats: RegionStats, small: np.ndarray):
        """This frame's beliefs, how plausibly each region continues the last frame (trust), and
        the last frame's region it mostly continues (0 = none)."""
        k = len(self.palette)
        carried = self.local.carry(stats, small, k)
        trust = carried.trust
        anything = np.full(k, 1.0 / k)
        followed = _normalised(carried.belief, anything)
        # The rest is new content: away from the frame edge, most likely what vanished nearby a
        # moment ago coming out from behind another; never a part already held elsewhere.
        fresh = np.tile(anything, (stats.count + 1, 1))
        for r in np.flatnonzero((trust < HIDDEN_BELOW) & ~stats.border):
            hidden, sure = self.hidden.match(stats.centroid[r], stats.area[r], number)
            if hidden is not None and r > 0:
                fresh[r] = sure * hidden[:k] + (1.0 - sure) * anything
        if self.backend.use_global:
            settled = (trust >= SETTLED) & (followed.max(axis=1) >= SETTLED)
            fresh[:, self.objects.claimed(stats, followed, settled)] *= CLAIMED
            fresh /= fresh.sum(axis=1, keepdims=True)
        prior = trust[:, None] * followed + (1.0 - trust[:, None]) * fresh
        # A floor, not a mixture: mixed in every frame, the chance would pile up over a long shot
        # in a region no evidence tells apart from its neighbours (the ground beside the sky),
        # until its belief, and confidence, drained away with nothing having happened.
        prior = np.maximum(prior, STICKY / k)
        prior /= prior.sum(axis=1, keepdims=True)
        if not self.backend.use_global:
            return prior, trust, carried.source
        # The global memory's word counts in full where following is in doubt. Where a color was
        # followed cleanly only a clear contradiction counts (colors within `slack` nats of the
        # best are not penalised): the memory's small leanings are wrong often enough that,
        # repeated frame after frame, they would otherwise overturn colors followed correctly.
        slack = (DEAD_ZONE * np.clip((trust - 0.5) / 0.5, 0.0, 1.0))[:, None]
        shape = self._shape(stats, k)
        log_prior = np.log(prior)
        belief = prior
        # Where a part sits in its character says most for regions new to the frame; a part that
        # was followed cleanly and now sits oddly is more often half hidden than something else.
        placed = np.clip(1.0 - trust, LAYOUT_FOLLOWED, 1.0)[:, None]
        # Scenery new at the frame edge has no shape and fits between sky and ground whatever
        # it is; the rows it lies in say which scenery it can be.
        bands = self.bands.evidence(stats, self._scenery(k), k)
        # A part that settled regions already show whole is not also this region (the character
        # behind wearing the front one's body, found by shape while the two overlap).
        taken = self.objects.taken(stats, followed, settled)
        # A region beside the backdrop is no part drawn inside its character (the strip of body
        # left beside a character in front is not the belly it hides).
        beside_backdrop = self.objects.beside_backdrop(stats, followed, settled)
        # No region is a part or prop far smaller than it ever was (a strip of hill is no arm).
        too_big = self.objects.too_big(stats, self.global_.largest(k))
        # Nor does a region followed as a part of a character on screen turn into one off screen.
        off_screen = 0.0
        if self.local.stats is not None:
            off_screen = self.objects.off_screen(stats, followed, trust, self.local.stats, widen(self.local.belief, k))
        for _ in range(ROUNDS):  # neighbours' beliefs settle, so their context is read again
            barred, layout = self.objects.evidence(stats, belief)
            score = (shape + CONTEXT_WEIGHT * self.global_.context_loglik(stats, belief) + barred + placed * layout
                     + bands + taken + too_big + off_screen + beside_backdrop)
            score = np.minimum(score - score.max(axis=1, keepdims=True) + slack, 0.0)
            belief = _softmax(log_prior + score)
        # Specks too small to describe and new to this frame continue the fill around them.
        specks = np.flatnonzero((stats.samples < MIN_SAMPLES) & (trust < 0.1))
        specks = specks[specks > 0]
        if specks.size:
            belief[specks] = 0.5 * belief[stats.parent[specks]] + 0.5 * anything
        belief[0] = 0.0
        return belief, trust, carried.source

    def _scenery(self, k: int) -> np.ndarray:
        """Which of the first k palette colors are scenery: the keyframes' big colors (sky,
        ground, hills) and those seen as a lone prop (a cloud, a rock), even where another
        one touches a character."""
        out = np.zeros(k, bool)
        n = min(k, self.objects.backdrop.size)
        out[:n] = self.objects.backdrop[:n] | self.objects.loose[:n]
        return out

    def _shape(self, stats: RegionStats, k: int) -> np.ndarray:
        shape = np.zeros((stats.count + 1, k))
        whole = _whole(stats)
        shape[whole] = SHAPE_WEIGHT * self.global_.shape_loglik(stats.shape_features()[whole])
        # Sky, ground and hills are cut into pieces of every shape by whatever stands in front,
        # and the memory holds views of them all: a close match to one says less than it does
        # for a part (what shows of a head behind another character matched a slice of hill).
        backdrop = np.flatnonzero(self.objects.backdrop[: min(k, self.objects.backdrop.size)])
        shape[:, backdrop] = np.minimum(shape[:, backdrop], BACKDROP_SHAPE)
        return shape


def _whole(stats: RegionStats) -> np.ndarray:
    """Regions whose shape can be trusted: inside the frame and big enough to describe."""
    whole = ~stats.border & (stats.samples >= MIN_SAMPLES)
    whole[0] = False
    return whole


def _normalised(p: np.ndarray, empty: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to sum to 1; all-zero rows become `empty` (uniform if not given)."""
    total = p.sum(axis=1, keepdims=True)
    out = p / np.maximum(total, 1e-300)
    zero = total[:, 0] <= 1e-12
    if zero.any():
        out[zero] = empty if empty is not None else 1.0 / p.shape[1]
    return out


def _softmax(logp: np.ndarray) -> np.ndarray:
    logp = logp - logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


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


def render(lineart: np.ndarray, color: np.ndarray, confidence: np.ndarray, labels: np.ndarray, *,
           coverage: np.ndarray | None = None,
           vivid: tuple[np.ndarray, np.ndarray] | None = None):
    """Fills under the line art, multiplied (paper shows the fill, ink darkens it), and the
    per-pixel confidence (uint8), gathered together in one pass over the label image.

    `vivid` (from `vivid_lines`): those pixels show the fill of the region they were given,
    with no line over it. `coverage` (uint8 per region): the fills'
    opacity, as a fourth channel (`fill_coverage`)."""
    line = np.ascontiguousarray(lineart[..., :3])
    if vivid is not None:
        where, labels = vivid
        line = line.copy()
        np.copyto(line, np.uint8(255), where=where[..., None])
    packed = np.zeros(color.shape[0], np.uint32)
    table = packed.view(np.uint8).reshape(-1, 4)
    table[:, :3] = color
    table[:, 3] = np.round(np.clip(confidence, 0.0, 1.0) * 255.0)
    rgba = np.take(packed, labels).view(np.uint8).reshape(*labels.shape, 4)
    fill = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    rgb = cv2.multiply(fill, line, scale=1.0 / 255.0)
    if coverage is not None:
        rgb = np.dstack([rgb, fill_coverage(coverage, labels)])
    return rgb, cv2.extractChannel(rgba, 3)


PINHOLE_REACH = 4  # px through a line a pinhole of paper in it looks for the fill it lies in


def fill_coverage(coverage: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per pixel, how opaque the fill under it is (uint8). A line pixel lies over the fills it
    touches: the least opaque of them (between two opaque fills, opaque, so a stroke's soft
    inner edge leaves no see-through seam inside a character; on the silhouette, where one
    side is film, none, and the line art's alpha stays its own). A line pixel that touches no
    fill (a stroke's core, the fainter ink where two strokes nearly meet, a speck of paper left
    inside a line) lies over what the line pixels around it do, up to PINHOLE_REACH away: on
    film such a pixel would otherwise be a hole through an opaque character."""
    alpha = np.take(coverage, labels)
    line = cv2.compare(labels, 0, cv2.CMP_EQ)
    on_line = line.view(bool)
    touched = cv2.bitwise_and(line, cv2.dilate(cv2.bitwise_not(line), _SQUARE3)).view(bool)
    if not touched.any():
        return alpha
    least = cv2.erode(np.where(on_line, np.uint8(255), alpha), _SQUARE3)
    np.copyto(alpha, least, where=touched)
    inside = on_line & ~touched
    if inside.any():
        reach = alpha.copy()
        for _ in range(PINHOLE_REACH):
            np.copyto(reach, cv2.dilate(reach, _SQUARE3), where=inside)
        np.copyto(alpha, reach, where=inside)
    return alpha


_SQUARE3 = np.ones((3, 3), np.uint8)


def region_opacity(alpha: np.ndarray, seg: Segmentation) -> np.ndarray:
    """Per region of a keyframe, whether it is mostly opaque (alpha HxW uint8)."""
    labels = seg.labels.ravel()
    total = np.bincount(labels, minlength=seg.count + 1)
    opaque = np.bincount(labels, weights=np.asarray(alpha).ravel() >= 128, minlength=seg.count + 1)
    return 2 * opaque > total
