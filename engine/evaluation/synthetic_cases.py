"""A second shot generator, unlike the first: the cases `paint` was not designed around.

`synthetic.py` draws one body plan (a hatted blob with an arm) in three proportions; a
colorizer tuned on it can learn that family rather than line art. This generator draws
other things, each case one way line art breaks a colorizer:

- `bodyplans`: a biped, a dog and a bird (flapping: its wing crosses its body every few
  frames), a rolling ball; the dog walks in front of the biped;
- `pinwheel`: a four-bladed pinwheel turning 12 degrees a frame beside a biped;
- `cartwheel`: a biped turning 6 degrees a frame as it crosses the frame;
- `zoom`: the camera zooms 1x -> 0.5x -> 2x;
- `closeup`: held at about 2x, so characters are cut by the frame edge;
- `gaps`: outlines broken by 1-3 px gaps;
- `buttons`: about 48 small regions (a coat of buttons, a spotted dog);
- `keyframes`: keyframes at the start, middle and end; the dog walks in before the middle
  keyframe that first shows it, the bird flies in before the last;
- `reentry`: the biped walks out of frame and comes back;
- `shading`: the biped, the dog and the bird shaded as hand-drawn cels are (BasicPBC's
  clips, say): a shadow on bodies and heads bounded by a vivid blue line, small highlights
  in the hair and on heads bounded by red or green lines; the dog walks in front of the biped;
- `film`: `bodyplans` on transparent film, as Grease Pencil renders with a transparent film
  or scanned cels come: RGBA line art whose alpha is the ink, no paper, no backdrop.

Every case has anti-aliased lines of varying width (each outline its own), shared eye
whites and pupils between characters, and a sky/ground/hill backdrop (but `film`). A case
is a pure function of (name, seed, frame index); `frame(i)` renders the line art, the true
colors, who owns each pixel and where the ink is in one pass, so a benchmark holds no more
than it asks for. World units are frame heights at zoom 1, y down.

The truth is the finished cel. A colored line is the painter's boundary, not ink, so the
truth has none: each of its pixels shows the fill of the region it belongs to, the two
sides meeting at the line's middle (the edge of the shadow or highlight polygon the line is
drawn along). On film the truth is RGBA: the characters opaque, their lines included, the
film clear (alpha 0), and the outer soft edge of a silhouette as opaque as its ink.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from longanim.engine.evaluation.synthetic import _capsule as synthetic_capsule
from longanim.engine.evaluation.synthetic import _cut_gaps

SHIFT = 4  # cv2 fixed-point bits
INK = (20, 20, 24)
EYE_WHITE = (247, 247, 243)
PUPIL = (52, 40, 70)
CASES = ("bodyplans", "pinwheel", "cartwheel", "zoom", "closeup", "gaps", "buttons", "keyframes", "reentry",
         "shading", "film")
HORIZON = 0.08  # world y of the line between sky and ground
BACKDROP = 0  # owner id of the sky, ground and hills
# Colored lines, vivid as a cel's are (paint's rule for a vivid core: chroma > 96, brightest
# channel > 150): blue where a shadow ends, red or green around a highlight.
SHADOW_LINE = (40, 72, 232)
LIGHT_LINES = {"red": (230, 46, 56), "green": (46, 186, 74)}
SHADOW_TONE = 0.72  # a shadow is its fill at this brightness
LIGHT_TONE = 0.5  # a highlight is its fill this far towards white
SHADOW_SHIFT = 0.3  # the lit area is the part moved towards the light by this much of its smaller side
MARK_WIDTH = 0.6  # a colored line is this much of an outline's width
# Per body plan, the parts that are shaded: a shadow (True/False) and a highlight ellipse as
# (centre dx, dy, radius x, y) in fractions of the part's box, with the color of its line.
SHADED = {
    "biped": {"body": (True, None), "head": (True, (-0.2, -0.1, 0.14, 0.16, "red")),
              "hair": (False, (-0.18, -0.12, 0.17, 0.24, "green"))},
    "dog": {"body": (True, None), "head": (False, (-0.26, 0.22, 0.12, 0.12, "red"))},  # under the ear
    "bird": {"body": (True, None)},
}


@dataclass
class Frame:
    # HxWx3 uint8: white fills, ink outlines (and colored lines, `shading`); on film HxWx4 RGBA
    # (straight): the ink's color, its coverage as alpha, alpha 0 (and black) elsewhere.
    lineart: np.ndarray
    # HxWx3 uint8: the truth, the same ink outlines over flat fills; on film HxWx4 RGBA (straight).
    color: np.ndarray
    owner: np.ndarray  # HxW int16: 0 backdrop, k >= 1 the k-th character or prop (its outline too)
    line: np.ndarray  # HxW bool: any ink (anti-aliased fringes included), colored lines not
    vivid: np.ndarray | None = None  # HxW bool: the colored lines' pixels (`shading`), fringes included

    @property
    def film(self) -> bool:
        return self.lineart.shape[2] == 4


@dataclass
class _Shape:
    pts: np.ndarray  # closed polygon, world units
    fill: tuple[int, int, int]
    owner: int
    key: int  # stable per outline: its width and its gaps stay put from frame to frame
    # Shadows and highlights inside the shape: (polygon, fill, colored line, key), each filled
    # and outlined inside the shape only, in order, before the shape's own outline.
    marks: tuple = ()


@dataclass
class _Actor:
    kind: str  # biped, dog, bird, pinwheel, ball
    owner: int
    colors: dict[str, tuple[int, int, int]]
    size: float  # frame heights
    path: object  # frame -> (x, y, angle in radians, facing +-1)
    extra: dict = field(default_factory=dict)


class CaseShot:
    """One case of the second generator; see the module docstring for the cases."""

    def __init__(self, case: str, seed: int = 0, width: int = 320, height: int = 180, num_frames: int = 120):
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")
        if width < 32 or height < 32:
            raise ValueError(f"a case shot must be at least 32x32, got {width}x{height}")
        if num_frames < 2:
            raise ValueError("a case shot needs at least two frames")
        self.case, self.seed = case, seed
        self.width, self.height, self.num_frames = width, height, num_frames
        self._rng = np.random.default_rng([seed, 7919, CASES.index(case)])
        self._used: list[tuple[int, int, int]] = [EYE_WHITE, PUPIL, (255, 255, 255)]
        self.backdrop = {"sky": self._color((0.52, 0.65), (0.25, 0.45), (0.88, 0.98)),
                         "ground": self._color((0.08, 0.18), (0.35, 0.6), (0.55, 0.75)),
                         "hill": self._color((0.25, 0.4), (0.35, 0.6), (0.5, 0.7))}
        self.keyframes = [0]
        self.gaps = case == "gaps"
        self.actors = self._cast()
        self._hills = [(x, float(self._rng.uniform(0.18, 0.32)), float(self._rng.uniform(0.08, 0.16)))
                       for x in np.arange(-3.0, 3.01, 0.9) + self._rng.uniform(-0.2, 0.2, 7)]
        self._widths: dict[int, float] = {}

    # ---------------------------------------------------------------- public API
    def frame(self, i: int) -> Frame:
        if not 0 <= i < self.num_frames:
            raise ValueError(f"frame index {i} is outside 0..{self.num_frames - 1}")
        zoom, cx, cy = self.camera(i)
        h, w = self.height, self.width
        film, shading = self.case == "film", self.case == "shading"
        lineart = np.full((h, w, 3), 255, np.uint8)
        color = np.full((h, w, 3), 255, np.uint8)
        owner = np.zeros((h, w), np.int16)
        # Coverage layers, drawn as the images are so a later fill hides what is behind it:
        # the visible ink (film: the line art's alpha), what is painted or inked (film: the
        # truth's alpha) and the visible colored lines.
        ink = np.zeros((h, w), np.uint8) if film or shading else None
        cover = np.zeros((h, w), np.uint8) if film else None
        marked = np.zeros((h, w), np.uint8) if shading else None
        for s in self._shapes(i):
            px = ((s.pts - (cx, cy)) * zoom * h + (w / 2, h / 2))
            fixed = np.round(px * (1 << SHIFT)).astype(np.int32)
            cv2.fillPoly(lineart, [fixed], (255, 255, 255), cv2.LINE_8, SHIFT)
            cv2.fillPoly(color, [fixed], s.fill, cv2.LINE_8, SHIFT)
            cv2.fillPoly(owner, [fixed], s.owner, cv2.LINE_8, SHIFT)
            for layer, value in ((ink, 0), (cover, 255), (marked, 0)):
                if layer is not None:
                    cv2.fillPoly(layer, [fixed], value, cv2.LINE_8, SHIFT)
            if s.marks:
                self._draw_marks(s, fixed, lineart, color, marked, (zoom, cx, cy))
            thickness = max(2, round(self._width(s.key) * zoom * h))
            strokes = [(fixed, True)]
            if self.gaps:  # cut in pixels: 1-3 px of paper show through each break
                strokes = [(np.round(p * (1 << SHIFT)).astype(np.int32), c)
                           for p, c in _cut_gaps(px, True, thickness, [self.seed, s.key])]
            for pts, closed in strokes:
                for img, value, kind in ((lineart, INK, cv2.LINE_AA), (color, INK, cv2.LINE_AA),
                                         (owner, s.owner, cv2.LINE_8), (ink, 255, cv2.LINE_AA),
                                         (cover, 255, cv2.LINE_AA)):
                    if img is not None:
                        cv2.polylines(img, [pts], closed, value, thickness, kind, SHIFT)
        if film:
            return self._on_film(lineart, color, owner, ink, cover)
        drawn = lineart.min(axis=2) < 255
        if not shading:
            return Frame(lineart, color, owner, drawn)
        # A pixel any ink touches is ink (it stays drawn in the truth); the rest of what is
        # drawn is colored line.
        vivid = drawn & (marked > 0) & (ink == 0)
        return Frame(lineart, color, owner, drawn & ~vivid, vivid)

    def _draw_marks(self, s: _Shape, fixed: np.ndarray, lineart, color, marked, view) -> None:
        """A shape's shadows and highlights: in the truth a fill, in the line art a colored
        line along its edge, both only inside the shape (its outline, drawn next, covers the
        line's ends). The fill's edge is the line's middle, where the two sides meet."""
        zoom, cx, cy = view
        h, w = self.height, self.width
        inside = np.zeros((h, w), np.uint8)
        cv2.fillPoly(inside, [fixed], 255, cv2.LINE_8, SHIFT)
        inside = inside.view(bool)
        for pts, fill, line_color, key in s.marks:
            mark = np.round(((pts - (cx, cy)) * zoom * h + (w / 2, h / 2)) * (1 << SHIFT)).astype(np.int32)
            area = np.zeros((h, w), np.uint8)
            cv2.fillPoly(area, [mark], 255, cv2.LINE_8, SHIFT)
            color[area.view(bool) & inside] = fill
            drawn = lineart.copy()
            thickness = max(2, round(MARK_WIDTH * self._width(key) * zoom * h))
            cv2.polylines(drawn, [mark], True, line_color, thickness, cv2.LINE_AA, SHIFT)
            hit = inside & (drawn != lineart).any(axis=2)
            lineart[hit] = drawn[hit]
            marked[hit] = 255

    @staticmethod
    def _on_film(lineart, color, owner, ink, cover) -> Frame:
        """The white-paper renders turned into film: the line art is the ink alone (its color,
        its coverage as alpha), the truth the characters alone, straight colors, the film black
        under alpha 0 (a colorizer that ignored alpha would see black paper)."""
        line_rgb = np.zeros_like(lineart)
        line_rgb[ink > 0] = INK
        truth = np.where((cover > 0)[..., None], color, np.uint8(0))
        # Past the fills (a silhouette's soft outer edge: a fill makes its pixels 255) the truth
        # is ink under its own coverage.
        truth[(cover > 0) & (cover < 255)] = INK
        return Frame(np.dstack([line_rgb, ink]), np.dstack([truth, cover]), owner, ink > 0)

    def camera(self, i: int) -> tuple[float, float, float]:
        """(zoom, x, y) of the frame centre in world units."""
        t = i / (self.num_frames - 1)
        if self.case == "zoom":
            # 1x -> 0.5x over the first third, then out to 2x, geometric so the speed feels even.
            log_zoom = (-math.log(2) * t / 0.33) if t < 0.33 else (-math.log(2) + 2 * math.log(2) * (t - 0.33) / 0.67)
            return math.exp(log_zoom), 0.0, 0.05
        if self.case == "closeup":
            return 2.0, -0.15 + 0.3 * t, 0.08
        return 1.0, 0.0, 0.0

    def figure_owners(self) -> list[int]:
        return [a.owner for a in self.actors]

    # ---------------------------------------------------------------- the cast
    def _cast(self) -> list[_Actor]:
        r, case, n = self._rng, self.case, self.num_frames
        ground = 0.24  # where the bipeds' hips are, world y
        aw = 0.5 * self.width / self.height  # half the frame width at zoom 1

        def walk(x0, x1, y, *, bob=0.01, start=0, end=None):
            end = n - 1 if end is None else end

            def at(i):
                t = min(max((i - start) / max(end - start, 1), 0.0), 1.0)
                x = x0 + (x1 - x0) * t
                return x, y - bob * abs(math.sin(i * 0.5)), 0.0, 1.0 if x1 >= x0 else -1.0
            return at

        def still(x, y):
            return lambda i: (x, y, 0.0, 1.0)

        def fly(x0, x1, y, *, start=0, end=None):
            end = n - 1 if end is None else end

            def at(i):
                t = min(max((i - start) / max(end - start, 1), 0.0), 1.0)
                return x0 + (x1 - x0) * t, y + 0.04 * math.sin(i * 0.21), 0.0, 1.0 if x1 >= x0 else -1.0
            return at

        biped = lambda owner, path, size=0.42, buttons=3: _Actor(
            "biped", owner, self._palette(("body", "head", "leg", "arm", "button", "nose", "hair"), "biped"), size, path,
            {"buttons": buttons, "phase": float(r.uniform(0, 6))})
        dog = lambda owner, path, size=0.3, spots=2: _Actor(
            "dog", owner, self._palette(("body", "head", "leg", "ear", "tail", "snout", "nose", "spot"), "dog"), size, path,
            {"spots": spots, "phase": float(r.uniform(0, 6))})
        bird = lambda owner, path, size=0.16: _Actor(
            "bird", owner, self._palette(("body", "wing", "head", "beak", "tail"), "bird"), size, path,
            {"phase": float(r.uniform(0, 6))})
        if case in ("bodyplans", "gaps", "film"):
            return [biped(1, walk(-0.55, 0.3, ground)),
                    dog(2, walk(0.75, -0.7, ground + 0.04)),
                    bird(3, fly(-0.75, 0.7, -0.25)),
                    _Actor("ball", 4, self._palette(("a", "b"), "ball"), 0.09, lambda i: (0.55 - 0.004 * i, ground - 0.045,
                                                                                 -i * 0.09, 1.0))]
        if case == "pinwheel":
            return [biped(1, walk(-0.6, -0.4, ground)),
                    _Actor("pinwheel", 2, self._palette(("b0", "b1", "b2", "b3", "hub", "stick"), "pinwheel"), 0.3,
                           lambda i: (0.25, 0.0, math.radians(12.0) * i, 1.0))]
        if case == "cartwheel":
            def spin(i):
                x, y, _, f = walk(-0.65, 0.65, ground - 0.2)(i)
                return x, y, math.radians(6.0) * i, f
            return [biped(1, spin), dog(2, still(0.45, ground + 0.05))]
        if case == "zoom":
            return [biped(1, walk(-0.25, -0.1, ground)), dog(2, walk(0.3, 0.15, ground + 0.04)),
                    bird(3, fly(-0.3, 0.3, -0.22))]
        if case == "closeup":
            return [biped(1, walk(-0.1, 0.05, ground + 0.05), size=0.5), dog(2, walk(0.2, 0.32, ground + 0.08))]
        if case == "buttons":
            return [biped(1, walk(-0.45, -0.1, ground), size=0.5, buttons=24), dog(2, walk(0.55, 0.25, ground + 0.04),
                                                                                   size=0.34, spots=24)]
        if case == "keyframes":
            self.keyframes = [0, n // 2, n - 1]
            return [biped(1, walk(-0.5, 0.0, ground)),
                    dog(2, walk(aw + 0.25, 0.35, ground + 0.04, start=int(0.15 * n), end=int(0.6 * n))),
                    bird(3, fly(-aw - 0.2, -0.2, -0.25, start=int(0.6 * n), end=n - 1))]
        if case == "reentry":
            def out_and_back(i):
                # walks right off the frame, then comes back in from the same side
                t = i / (n - 1)
                x = -0.2 + 1.6 * t / 0.4 if t < 0.4 else (1.4 - 1.2 * (t - 0.55) / 0.45 if t > 0.55 else 1.4)
                return x, ground - 0.01 * abs(math.sin(i * 0.5)), 0.0, 1.0 if t < 0.4 else -1.0
            return [biped(1, out_and_back), dog(2, walk(-0.6, -0.35, ground + 0.04))]
        if case == "shading":
            # Bigger than in `bodyplans`, as shaded characters are drawn: their highlights are small.
            return [biped(1, walk(-0.5, 0.2, ground + 0.02), size=0.48),
                    dog(2, walk(0.7, -0.6, ground + 0.06), size=0.34),
                    bird(3, fly(0.75, -0.7, -0.25), size=0.2)]
        raise AssertionError(case)

    def _color(self, hue, sat, val) -> tuple[int, int, int]:
        """A flat color at least a clear step away from every color already in the shot."""
        for _ in range(400):
            h, s, v = (self._rng.uniform(*hue) % 1.0, self._rng.uniform(*sat), self._rng.uniform(*val))
            rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))
            if all(sum(abs(a - b) for a, b in zip(rgb, u)) >= 60 for u in self._used):
                self._used.append(rgb)
                return rgb
        raise RuntimeError("could not find distinct colors for a case shot")

    def _palette(self, parts, kind: str) -> dict[str, tuple[int, int, int]]:
        """A fill per part; on `shading`, shaded parts get their shadow ("part/shadow") and
        highlight ("part/light") tones too, each as distinct from the shot's other colors."""
        if self.case != "shading":
            return {p: self._color((0.0, 1.0), (0.3, 0.85), (0.45, 0.95)) for p in parts}
        out = {}
        for p in parts:
            shadow, light = SHADED.get(kind, {}).get(p, (False, None))
            tones = (["shadow"] if shadow else []) + (["light"] if light else [])
            if not tones:
                out[p] = self._color((0.0, 1.0), (0.3, 0.85), (0.45, 0.95))
                continue
            for _ in range(400):
                base = self._color((0.0, 1.0), (0.3, 0.85), (0.5, 0.95))
                derived = {t: _tone(base, t) for t in tones}
                others = [u for u in self._used if u != base]
                if all(sum(abs(a - b) for a, b in zip(d, base)) >= 40 for d in derived.values()) and all(
                        sum(abs(a - b) for a, b in zip(d, u)) >= 60 for d in derived.values() for u in others):
                    break
                self._used.remove(base)  # its tones clash: draw another
            else:
                raise RuntimeError("could not find distinct shaded colors for a case shot")
            out[p] = base
            for t, d in derived.items():
                out[f"{p}/{t}"] = d
                self._used.append(d)
        return out

    def _width(self, key: int) -> float:
        """Outline width in frame heights: 0.75x to 1.5x a base width, one per outline (2 px at least)."""
        if key not in self._widths:
            self._widths[key] = 0.011 * float(np.random.default_rng([self.seed, 31, key]).uniform(0.75, 1.5))
        return self._widths[key]

    # ---------------------------------------------------------------- drawing
    def _shapes(self, i: int) -> list[_Shape]:
        zoom, cx, _ = self.camera(i)
        b = self.backdrop
        reach = 1.2 / zoom + 1.0
        out = []
        if self.case != "film":  # on film there is no paper and no backdrop: only the characters
            out.append(_Shape(_rect(cx - reach, -reach, cx + reach, HORIZON), b["sky"], BACKDROP, 1))
            for n, (x, rx, ry) in enumerate(self._hills):
                out.append(_Shape(_ellipse(x, HORIZON, rx, ry), b["hill"], BACKDROP, 2 + n))
            out.append(_Shape(_rect(cx - reach, HORIZON, cx + reach, reach), b["ground"], BACKDROP, 20))
        # Farther first: the bird and the biped behind the dog, the ball in front.
        order = {"bird": 0, "pinwheel": 1, "biped": 2, "dog": 3, "ball": 4}
        for a in sorted(self.actors, key=lambda a: order[a.kind]):
            x, y, angle, facing = a.path(i)
            parts = getattr(self, f"_{a.kind}")(a, i)
            c, s = math.cos(angle), math.sin(angle)
            # actor units -> world: mirrored to face its way, turned, scaled, placed
            place = (np.array([facing, 1.0]), np.array([[c, s], [-s, c]]), a.size, (x, y))
            for n, (name, pts) in enumerate(parts):
                fill = EYE_WHITE if name == "eye" else PUPIL if name == "pupil" else a.colors[name]
                key = 100 * a.owner + n
                marks = ()
                if self.case == "shading" and name in SHADED.get(a.kind, {}):
                    fill, marks = _shade(a, name, pts, key)
                    marks = tuple((_placed(m, place), f, line, k) for m, f, line, k in marks)
                out.append(_Shape(_placed(pts, place), fill, a.owner, key, marks))
        return out

    # Body plans: (color name, polygon) back to front, in units of the actor's size, origin at
    # the hips (the centre for props), y down.
    def _biped(self, a: _Actor, i: int):
        swing = 0.5 * math.sin(0.35 * i + a.extra["phase"])
        parts = [("leg", _capsule(0.05, 0.0, -swing, 0.42, 0.16)), ("arm", _capsule(0.08, -0.5, swing, 0.36, 0.14))]
        parts.append(("body", _ellipse(0.0, -0.28, 0.2, 0.32)))
        m = a.extra["buttons"]
        cols = 1 if m <= 6 else 3
        rows = math.ceil(m / cols)
        for k in range(m):
            bx = 0.0 if cols == 1 else (k % cols - (cols - 1) / 2) * 0.1
            by = -0.5 + (k // cols) * (0.44 / max(rows, 1))
            parts.append(("button", _ellipse(bx, by, 0.03, 0.03, 14)))
        parts += [("head", _ellipse(0.02, -0.78, 0.19, 0.18)), ("hair", _hair(0.02, -0.9)),
                  ("eye", _ellipse(0.09, -0.8, 0.06, 0.05, 20)), ("pupil", _ellipse(0.11, -0.8, 0.025, 0.025, 12)),
                  ("nose", _ellipse(0.19, -0.74, 0.035, 0.03, 12)),
                  ("leg", _capsule(-0.05, 0.0, swing, 0.42, 0.16)), ("arm", _capsule(-0.04, -0.5, -swing, 0.36, 0.14))]
        return parts

    def _dog(self, a: _Actor, i: int):
        s = 0.45 * math.sin(0.4 * i + a.extra["phase"])
        legs_back = [("leg", _capsule(x, -0.05, s * sign, 0.3, 0.12)) for x, sign in ((-0.3, 1), (0.22, -1))]
        legs_front = [("leg", _capsule(x, -0.05, -s * sign, 0.3, 0.12)) for x, sign in ((-0.22, 1), (0.3, -1))]
        parts = legs_back + [("tail", _capsule(-0.42, -0.2, -2.2 + 0.3 * s, 0.3, 0.07)),
                             ("body", _ellipse(0.0, -0.18, 0.45, 0.17))]
        m = a.extra["spots"]
        rng = np.random.default_rng([self.seed, 55, a.owner])
        for _ in range(m):
            sx, sy = rng.uniform(-0.33, 0.28), rng.uniform(-0.26, -0.1)
            parts.append(("spot", _ellipse(sx, sy, 0.028, 0.024, 14)))
        parts += legs_front + [("head", _ellipse(0.52, -0.38, 0.17, 0.15)), ("ear", _ellipse(0.45, -0.44, 0.05, 0.11)),
                               ("snout", _ellipse(0.66, -0.33, 0.09, 0.06)), ("nose", _ellipse(0.74, -0.35, 0.03, 0.025, 12)),
                               ("eye", _ellipse(0.56, -0.43, 0.045, 0.04, 16)), ("pupil", _ellipse(0.57, -0.43, 0.02, 0.02, 10))]
        return parts

    def _bird(self, a: _Actor, i: int):
        flap = math.sin(0.8 * i + a.extra["phase"])  # +1 up, -1 down across the body
        # A leaf hinged at the shoulder: up, it stands in the sky; down, it lies across the body.
        t = math.pi + 0.3 - 1.3 * flap
        leaf = _ellipse(0.28, 0.0, 0.3, 0.09, 24)
        c, s = math.cos(t), math.sin(t)
        wing = leaf @ np.array([[c, s], [-s, c]]) + (0.05, -0.12)
        return [("tail", np.array([[-0.5, 0.0], [-0.95, -0.18], [-0.95, 0.18]])), ("body", _ellipse(0.0, 0.0, 0.5, 0.27)),
                ("head", _ellipse(0.5, -0.22, 0.2, 0.19)), ("beak", np.array([[0.66, -0.28], [0.92, -0.2], [0.66, -0.13]])),
                ("eye", _ellipse(0.55, -0.28, 0.06, 0.055, 16)), ("pupil", _ellipse(0.57, -0.28, 0.028, 0.028, 10)),
                ("wing", wing)]

    def _pinwheel(self, a: _Actor, i: int):
        # The stick does not turn: it is drawn in frame axes by undoing the actor's angle.
        angle = math.radians(12.0) * i
        c, s = math.cos(-angle), math.sin(-angle)
        stick = _rect(-0.04, 0.0, 0.04, 1.3) @ np.array([[c, s], [-s, c]])
        blades = []
        for k in range(4):
            t = k * math.pi / 2
            blade = np.array([[0.0, 0.0], [math.cos(t) * 0.95, math.sin(t) * 0.95],
                              [math.cos(t + 0.9) * 0.75, math.sin(t + 0.9) * 0.75]])
            blades.append((f"b{k}", blade))
        return [("stick", stick), *blades, ("hub", _ellipse(0.0, 0.0, 0.1, 0.1, 20))]

    def _ball(self, a: _Actor, i: int):
        half = np.concatenate([[[0.0, 0.0]], _ellipse(0.0, 0.0, 1.0, 1.0, 40)[:21]])
        return [("a", _ellipse(0.0, 0.0, 1.0, 1.0, 40)), ("b", half)]


def _placed(pts: np.ndarray, place) -> np.ndarray:
    mirror, turn, size, at = place
    return (pts * mirror) @ turn * size + at  # in this order: the recorded shots' exact pixels


def _tone(rgb: tuple[int, int, int], which: str) -> tuple[int, int, int]:
    """A shadow (the fill darker) or a highlight (the fill towards white) of a fill."""
    if which == "shadow":
        return tuple(round(c * SHADOW_TONE) for c in rgb)
    return tuple(round(c + (255 - c) * LIGHT_TONE) for c in rgb)


def _shade(a: _Actor, name: str, pts: np.ndarray, key: int):
    """(the part's own fill, its marks) in the actor's units: a shaded part is filled with its
    shadow and its lit area, the part moved towards the light (up and back: the light comes
    from behind a character's head), is marked in the part's color with a blue line; a
    highlight is a small ellipse marked in the light tone with a red or green line."""
    shadow, light = SHADED[a.kind][name]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size, centre = hi - lo, (lo + hi) / 2
    base, fill, marks = a.colors[name], a.colors[name], []
    if shadow:
        fill = a.colors[f"{name}/shadow"]
        step = SHADOW_SHIFT * float(size.min())
        marks.append((pts + step * np.array([-0.6, -0.8]), base, SHADOW_LINE, 10_000 + 4 * key))
    if light:
        dx, dy, rx, ry, line = light
        marks.append((_ellipse(centre[0] + dx * size[0], centre[1] + dy * size[1], rx * size[0], ry * size[1], 24),
                      a.colors[f"{name}/light"], LIGHT_LINES[line], 10_001 + 4 * key))
    return fill, marks


def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 36) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def _rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _capsule(x0: float, y0: float, angle: float, length: float, width: float) -> np.ndarray:
    """A limb hanging from (x0, y0): the first generator's, 9 points an end."""
    return synthetic_capsule(x0, y0, angle, length, width, points=9)


def _hair(cx: float, cy: float) -> np.ndarray:
    """A tuft over the head: a half-disc with a jagged lower edge."""
    top = _ellipse(cx, cy, 0.2, 0.1, 24)[12:]
    teeth = np.array([[cx + 0.2 - 0.4 * k / 6, cy + (0.06 if k % 2 else 0.0)] for k in range(7)])
    return np.concatenate([top, teeth])


# ---------------------------------------------------------------- scoring
RIGHT_LEVELS = 6  # a pixel is right when every channel is within this of the truth (fills are flat)
MIN_FIGURE_PIXELS = 200  # frames showing fewer countable figure pixels have no worst-frame say
_SQUARE3 = np.ones((3, 3), np.uint8)
_AROUND = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


@dataclass
class Score:
    """One colorizer on one case shot, judged by `judge`: pixels within 1 px of ink are not
    counted (as in `pixel_metrics.countable_mask`), colored lines' pixels are; figure pixels
    are the characters' and props' own."""

    right: int = 0
    counted: int = 0
    figure_right: int = 0
    figure_counted: int = 0
    worst_figure: float = 1.0
    worst_frame: int = -1
    seconds: float = 0.0
    frames: int = 0
    flagged_frames: int = 0  # frames whose review share exceeds the pipeline's REVIEW_FRACTION
    wrong_in_flagged: int = 0  # wrong counted pixels on flagged frames
    wrong_under_mask: int = 0  # wrong counted pixels whose confidence is below the review threshold
    vivid_right: int = 0  # colored lines' counted pixels (`shading`) that show a fill beside them
    vivid_counted: int = 0
    line_alpha_right: int = 0  # ink pixels (film) whose alpha is the truth's, within RIGHT_LEVELS
    line_alpha_counted: int = 0
    per_frame: list = field(default_factory=list)  # figure accuracy per frame (NaN: none shown)
    kept: dict = field(default_factory=dict)  # frame -> (output as written, confidence) for the frames asked to keep

    @property
    def accuracy(self) -> float:
        return _share(self.right, self.counted)

    @property
    def figure_accuracy(self) -> float:
        return _share(self.figure_right, self.figure_counted)

    @property
    def vivid_accuracy(self) -> float:
        return _share(self.vivid_right, self.vivid_counted)

    @property
    def line_alpha_accuracy(self) -> float:
        return _share(self.line_alpha_right, self.line_alpha_counted)

    @property
    def wrong(self) -> int:
        return self.counted - self.right

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


def counted_pixels(f: Frame) -> np.ndarray:
    """HxW bool: the pixels scored, all but those within 1 px of ink (an anti-aliased edge
    has no one right color). Colored lines are counted: taking the fill there is the point."""
    return cv2.dilate(f.line.astype(np.uint8), _SQUARE3) == 0


def judge(f: Frame, out: np.ndarray) -> np.ndarray:
    """HxW bool: where `out` (HxWx3 uint8; on film HxWx4 RGBA, straight, as written) is right.

    A pixel is right when every color channel is within RIGHT_LEVELS of the truth. On a
    colored line the two fills beside it meet at its middle, which a colorizer can place a
    pixel off: a colored line's pixel is right when it shows the fill of its own region or
    of one touching it (within 1 px), never the line's color. On film the alpha must be
    right too (within RIGHT_LEVELS), everywhere, and the color only where the truth is
    opaque: under alpha 0 there is no color to get wrong."""
    rgb = np.ascontiguousarray(out[..., :3])
    truth = np.ascontiguousarray(f.color[..., :3])
    ok = cv2.absdiff(rgb, truth).max(axis=2) <= RIGHT_LEVELS
    if f.vivid is not None and f.vivid.any():
        h, w = ok.shape
        padded = cv2.copyMakeBorder(truth, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        beside = np.zeros_like(ok)
        for dy, dx in _AROUND:
            beside |= cv2.absdiff(rgb, padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]).max(axis=2) <= RIGHT_LEVELS
        ok |= beside & f.vivid
    if f.film:
        if out.shape[2] != 4:
            raise ValueError("a film shot's output must be RGBA (as `written` gives it)")
        alpha_ok = cv2.absdiff(np.ascontiguousarray(out[..., 3]), np.ascontiguousarray(f.color[..., 3])) <= RIGHT_LEVELS
        ok = alpha_ok & (ok | (f.color[..., 3] < 255))
    return ok


def on_white(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """An image as the pipeline gives it to a colorizer (`display_rgb_on_white`): HxWx3 uint8,
    film composited over white paper, with the alpha (float, None for opaque images)."""
    if image.shape[2] == 3:
        return image, None
    from longanim.engine.pipeline import display_rgb_on_white
    from longanim.engine.sequences.image_files import ImageData

    return display_rgb_on_white(ImageData(image, "srgb"))


def written(f: Frame, rgb: np.ndarray) -> np.ndarray:
    """A colorizer's frame as the pipeline would write it for this shot (8-bit): on film the
    line art's alpha and the colorizer's fill coverage put together (`with_coverage`), RGBA;
    else the RGB."""
    rgb = np.asarray(rgb)
    if not f.film:
        return rgb[..., :3]
    from longanim.engine.pipeline import with_coverage
    from longanim.engine.sequences.colorspace import quantize

    view, alpha = on_white(f.lineart)
    color, alpha = with_coverage(rgb, (alpha, view))
    color = color if color.dtype == np.uint8 else quantize(color, np.uint8)
    return np.dstack([color, quantize(alpha, np.uint8)])


def keyframes_of(shot: CaseShot, frames: dict[int, Frame]):
    """The shot's keyframes as the pipeline reads them: on film, colored over white with the
    keyframe's alpha (which fills are opaque)."""
    from longanim.engine.backends.base import Keyframe
    from longanim.engine.sequences.colorspace import quantize

    keys = []
    for k in shot.keyframes:
        color, alpha = on_white(frames[k].color)
        keys.append(Keyframe(k, color, on_white(frames[k].lineart)[0],
                             None if alpha is None else quantize(alpha, np.uint8)))
    return keys


def score_run(shot: CaseShot, colorizer, frames: dict[int, Frame] | None = None, *,
              review_threshold: float = 0.7, review_fraction: float = 0.01, keep=()) -> Score:
    """Run `colorizer.colorize` over the whole shot (frames rendered, and film composited over
    white, before timing) and score it; the outputs of the frames in `keep` are kept, as
    written, for a contact sheet."""
    import time

    frames = {i: shot.frame(i) for i in range(shot.num_frames)} if frames is None else frames
    keys = keyframes_of(shot, frames)
    views = {i: on_white(frames[i].lineart)[0] for i in range(shot.num_frames)}
    score = Score()
    stream = colorizer.colorize(((i, views[i]) for i in range(shot.num_frames)), keys)
    while True:
        start = time.perf_counter()
        out = next(stream, None)
        score.seconds += time.perf_counter() - start
        if out is None:
            break
        f = frames[out.number]
        result = written(f, out.rgb)
        if out.number in keep:
            score.kept[out.number] = (result, np.asarray(out.confidence))
        keep_px = counted_pixels(f)
        ok = judge(f, result) & keep_px
        figure = keep_px & (f.owner > 0)
        n_fig, ok_fig = int(figure.sum()), int((ok & figure).sum())
        score.frames += 1
        score.counted += int(keep_px.sum())
        score.right += int(ok.sum())
        score.figure_counted += n_fig
        score.figure_right += ok_fig
        if f.vivid is not None:
            vivid = f.vivid & keep_px
            score.vivid_counted += int(vivid.sum())
            score.vivid_right += int((ok & vivid).sum())
        if f.film:
            alpha_ok = cv2.absdiff(np.ascontiguousarray(result[..., 3]),
                                   np.ascontiguousarray(f.color[..., 3])) <= RIGHT_LEVELS
            score.line_alpha_counted += int(f.line.sum())
            score.line_alpha_right += int((alpha_ok & f.line).sum())
        frame_acc = ok_fig / n_fig if n_fig else float("nan")
        score.per_frame.append(frame_acc)
        if n_fig >= MIN_FIGURE_PIXELS and frame_acc < score.worst_figure:
            score.worst_figure, score.worst_frame = frame_acc, out.number
        unsure = np.asarray(out.confidence) < review_threshold
        wrong = keep_px & ~ok
        if float(unsure.mean()) > review_fraction:
            score.flagged_frames += 1
            score.wrong_in_flagged += int(wrong.sum())
        score.wrong_under_mask += int((wrong & unsure).sum())
    return score
