"""Seeded synthetic cel-animation long shots: the test bed for colorizers and benchmarks.

A shot is a pure function of (seed, frame index): every frame is rendered on demand,
so a 2,000-frame 1080p shot never sits in memory and any frame can be asked for in
any order. The content is built to be hard in the ways real long shots are hard:

- three or more characters, each a stack of NESTED flat regions (pupils in eyes in a
  head under a hat, a belly patch on a body, a swinging arm), drawn back to front
  with z-order that changes (while they are apart), so characters occlude each other
  and themselves;
- non-rigid motion: squash/stretch, tilt, a swinging arm, turning around (mirroring),
  blinks that close the eyes for a couple of frames (the eye regions vanish);
- a character that walks out of frame and comes back 150+ frames later
  (`reentries()`), which is where long-term color memory is tested;
- a panning camera with parallax background layers (clouds, hills, rocks);
- optional anti-aliased lines, broken lines (1-3 px gaps) and colored lines.

Two characters may share a region color (all eye whites are the same white), as in
real productions; otherwise each character has its own palette. Each character also has
its own proportions (a tall thin one, a round one with a big head...), as character
designs in a production do; `look_alike=True` gives them all one body plan, a crowd
of one model in different palettes, where only context and motion tell them apart.

Line art and ground truth are the same drawing: each region is filled (white in the
line art) and its outline stroked right after, back to front, so front fills hide the
lines behind them in both. Anti-aliased strokes are blended over the fill (for black
ink that is the same as multiplying), so ink coverage is identical in the two images.

Files written by `save()` are numbered frame index + 1001 (`shot.1001.png` is frame
index 0), the compositing convention where 1001 is the first frame of a shot.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from longanim.engine.sequences.image_files import atomic_write

FIRST_FRAME_NUMBER = 1001
LINE = 0  # region_map value of outline pixels
SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so slow motion stays smooth
BLACK = (0, 0, 0)
EYE_WHITE = (246, 246, 242)

# Background region ids (region_map); character k's region j is 16 * k + j.
SKY, CLOUD, HILL, GROUND, ROCK = 1, 2, 3, 4, 5
# Scenery of one kind shares one color, as a background painter keeps it: a keyframe then
# decides the color of every hill the pan brings in later (hills of two greens alternating
# by a hidden index could only be guessed).
HILL_GREEN = (96, 150, 110)
BODY, BELLY, HEAD, CROWN, BRIM, EYE_L, EYE_R, PUPIL_L, PUPIL_R, ARM = range(10)
REGION_NAMES = {
    SKY: "sky", CLOUD: "cloud", HILL: "hill", GROUND: "ground", ROCK: "rock",
}
PART_NAMES = ("body", "belly", "head", "hat", "brim", "eye_l", "eye_r", "pupil_l", "pupil_r", "arm")


def region_id(character: int, part: int) -> int:
    return 16 * character + part


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _rgb_from_hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def _capsule(x0: float, y0: float, angle: float, length: float, width: float, points: int = 10) -> np.ndarray:
    """A limb: a rectangle with round ends (`points` per end), in local character units,
    swung by `angle` (radians, 0 = straight down) from (x0, y0)."""
    dx, dy = math.sin(angle), math.cos(angle)
    x1, y1 = x0 + dx * length, y0 + dy * length
    base = math.atan2(dy, dx)
    r = width / 2
    a = np.linspace(base + np.pi / 2, base + 3 * np.pi / 2, points)
    b = np.linspace(base - np.pi / 2, base + np.pi / 2, points)
    start = np.stack([x0 + r * np.cos(a), y0 + r * np.sin(a)], axis=1)
    end = np.stack([x1 + r * np.cos(b), y1 + r * np.sin(b)], axis=1)
    return np.concatenate([start, end])


@dataclass
class _Shape:
    """One flat region (fill polygon may be None for a line-only stroke) and its outlines."""

    fill_pts: np.ndarray | None
    fill: tuple[int, int, int]
    owner: int  # 0 background, k >= 1 character k
    region: int
    lines: list[tuple[np.ndarray, bool]] = field(default_factory=list)  # (points, closed)
    ink: tuple[int, int, int] = BLACK
    gap_key: int = 0


@dataclass
class _Design:
    """A character's proportions, in units of its scale: what sets it apart by shape."""

    body_w: float = 0.6
    body_h: float = 0.85
    head_r: float = 0.6
    hat_h: float = 0.7
    hat_w: float = 0.38
    brim_w: float = 0.72
    belly: float = 1.0
    arm_len: float = 0.75
    arm_w: float = 0.2
    eye_r: float = 0.17


# Body plans far enough apart to be told by shape, jittered per seed.
_ARCHETYPES = (
    _Design(),
    _Design(body_w=0.78, body_h=0.62, head_r=0.5, hat_h=0.42, hat_w=0.48, brim_w=0.9, belly=1.25,
            arm_len=0.55, arm_w=0.26, eye_r=0.16),
    _Design(body_w=0.45, body_h=1.05, head_r=0.72, hat_h=1.0, hat_w=0.3, brim_w=0.6, belly=0.8,
            arm_len=0.95, arm_w=0.16, eye_r=0.2),
)


@dataclass
class _Character:
    index: int  # 1-based
    palette: dict[int, tuple[int, int, int]]
    base_x: float
    amp: tuple[float, float]
    freq: tuple[float, float]
    phase: np.ndarray
    blinks: np.ndarray  # sorted blink start frames
    exit: tuple[int, int, int] | None  # (start leaving, start coming back, direction +-1)
    design: _Design = field(default_factory=_Design)


@dataclass
class SyntheticShot:
    width: int
    height: int
    num_frames: int
    seed: int
    antialias: bool = False
    broken_lines: bool = False
    colored_lines: bool = False
    camera_pan: bool = True
    num_characters: int = 3
    keyframes: list[int] = field(default_factory=lambda: [0])
    look_alike: bool = False

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"synthetic shot must be at least 16x16, got {self.width}x{self.height}")
        if self.num_frames < 1:
            raise ValueError("synthetic shot needs at least one frame")
        if not 1 <= self.num_characters <= 15:
            raise ValueError("num_characters must be between 1 and 15")
        for k in self.keyframes:
            if not 0 <= k < self.num_frames:
                raise ValueError(f"keyframe {k} is outside 0..{self.num_frames - 1}")
        self.thickness = max(2, int(round(3.0 * math.sqrt(self.height / 270.0))))
        self._line_type = cv2.LINE_AA if self.antialias else cv2.LINE_8
        self._characters = [self._make_character(k) for k in range(1, self.num_characters + 1)]
        self._visibility: np.ndarray | None = None
        self._orders: np.ndarray | None = None

    # ---------------------------------------------------------------- public API
    def lineart(self, i: int) -> np.ndarray:
        """White fills, outlines in their ink color: what an artist hands the colorizer."""
        return self._paint(self._shapes(i), colored=False)

    def color(self, i: int) -> np.ndarray:
        """Ground truth: flat fills with the very same outlines drawn over them."""
        return self._paint(self._shapes(i), colored=True)

    def character_mask(self, i: int) -> np.ndarray:
        """0 background, k where character k is visible (its outline included)."""
        return self._labels(self._shapes(i), by_owner=True).astype(np.int16)

    def region_map(self, i: int) -> np.ndarray:
        """Region id per pixel (see `region_id`), 0 on outlines: lets tests recolor one region."""
        return self._labels(self._shapes(i), by_owner=False)

    def scenery_map(self, i: int) -> np.ndarray:
        """Which piece of scenery each pixel shows: a stable id per cloud, hill and rock of the
        endless background (the same hill has the same id in every frame; the sky and the
        ground are one piece each), 0 on characters and on lines. Lets a benchmark tell
        scenery a keyframe shows from scenery that first comes into view later."""
        return self._labels(self._shapes(i), fill_value=lambda s: 0 if s.owner else (s.gap_key or 1))

    def line_mask(self, i: int) -> np.ndarray:
        """True where the line art has any ink (anti-aliased fringes included)."""
        c = cv2.split(self.lineart(i))
        return cv2.min(cv2.min(c[0], c[1]), c[2]) < 255

    def reentries(self) -> list[tuple[int, int, int]]:
        """(character, frame it is back in frame, frames it was out of frame), for every
        absence of at least one frame after it had been seen. Out of frame means none of
        its pixels would be inside the picture; being hidden behind another character
        does not count."""
        vis = self._visible_table()
        out: list[tuple[int, int, int]] = []
        for c in range(vis.shape[0]):
            seen, away = False, 0
            for i in range(vis.shape[1]):
                if vis[c, i]:
                    if seen and away:
                        out.append((c + 1, i, away))
                    seen, away = True, 0
                elif seen:
                    away += 1
        return sorted(out, key=lambda r: (r[1], r[0]))

    def save(self, dirpath, kinds=("lineart", "color"), ext: str = "png", frames=None) -> list[Path]:
        """Write `<dirpath>/<kind>/shot.####.<ext>` (#### = index + 1001), each file atomically.
        Kinds: lineart, color (8-bit RGB), mask (16-bit character ids), lines (0/255)."""
        renderers = {
            "lineart": lambda i: cv2.cvtColor(self.lineart(i), cv2.COLOR_RGB2BGR),
            "color": lambda i: cv2.cvtColor(self.color(i), cv2.COLOR_RGB2BGR),
            "mask": lambda i: self.character_mask(i).astype(np.uint16),
            "lines": lambda i: self.line_mask(i).astype(np.uint8) * 255,
        }
        unknown = [k for k in kinds if k not in renderers]
        if unknown:
            raise ValueError(f"unknown kind(s) {unknown}; choose from {sorted(renderers)}")
        ext = ext.lstrip(".")
        indices = range(self.num_frames) if frames is None else frames
        root = Path(dirpath)
        written = []
        for kind in kinds:
            (root / kind).mkdir(parents=True, exist_ok=True)
        for i in indices:
            if not 0 <= i < self.num_frames:
                raise ValueError(f"frame index {i} is outside 0..{self.num_frames - 1}")
            for kind in kinds:
                ok, buf = cv2.imencode(f".{ext}", renderers[kind](i))
                if not ok:
                    raise ValueError(f"cannot encode {kind} frame {i} as .{ext}")
                path = root / kind / f"shot.{i + FIRST_FRAME_NUMBER:04d}.{ext}"
                _write_atomic(path, buf.tobytes())
                written.append(path)
        return written

    # ---------------------------------------------------------------- scene setup
    def _make_character(self, k: int) -> _Character:
        rng = np.random.default_rng([self.seed, 101, k])
        n = self.num_characters
        hue = (self._hue0() + (k - 1) / n + rng.uniform(-0.04, 0.04)) % 1.0
        palette = {
            BODY: _rgb_from_hsv(hue, 0.55, 0.80),
            BELLY: _rgb_from_hsv(hue + 0.03, 0.25, 0.95),
            HEAD: _rgb_from_hsv(0.07 + 0.015 * (k % 3), 0.22 + 0.08 * (k % 3), 0.97 - 0.1 * (k % 2)),
            CROWN: _rgb_from_hsv(hue + 0.5, 0.70, 0.65),
            BRIM: _rgb_from_hsv(hue + 0.33, 0.60, 0.75),
            EYE_L: EYE_WHITE,
            EYE_R: EYE_WHITE,
            PUPIL_L: _rgb_from_hsv(hue + 0.6, 0.65, 0.45),
            PUPIL_R: _rgb_from_hsv(hue + 0.6, 0.65, 0.45),
            ARM: _rgb_from_hsv(hue - 0.05, 0.70, 0.55),
        }
        base_x = (k - 0.5) / n
        amp = (rng.uniform(0.12, 0.22), rng.uniform(0.02, 0.05))
        freq = (2 * np.pi / rng.uniform(250, 500), 2 * np.pi / rng.uniform(60, 120))
        phase = rng.uniform(0, 2 * np.pi, size=8)
        # The walk starts at the character's own place (sin = 0 at frame 0), so the opening
        # frame shows everyone whole, as an artist's reference frame would.
        phase[1:3] = rng.choice([0.0, np.pi], size=2)
        # ... and with the arm hanging down, in front of no belly (a reference shows every part).
        phase[6] = np.pi * (1 / 6 + (4 / 6) * phase[6] / (2 * np.pi))
        gaps = rng.integers(60, 140, size=max(1, self.num_frames // 60 + 1))
        blinks = np.cumsum(gaps) - rng.integers(0, 60)
        return _Character(k, palette, base_x, amp, freq, phase, blinks, self._exit_schedule(k), self._design(k))

    def _design(self, k: int) -> _Design:
        if self.look_alike:
            return _Design()
        rng = np.random.default_rng([self.seed, 103, k])
        base = _ARCHETYPES[(k - 1 + self.seed) % len(_ARCHETYPES)]
        jitter = {name: getattr(base, name) * float(rng.uniform(0.94, 1.06)) for name in _Design.__dataclass_fields__}
        return _Design(**jitter)

    def _hue0(self) -> float:
        return float(np.random.default_rng([self.seed, 100]).uniform(0, 1))

    def _exit_schedule(self, k: int) -> tuple[int, int, int] | None:
        """Character 1 leaves for 150+ frames in shots of 400+ frames; in shots of 900+
        frames character 2 does too, later and to the other side."""
        n = self.num_frames
        rng = np.random.default_rng([self.seed, 102, k])
        if k == 1 and n >= 400:
            start = int(0.15 * n) + int(rng.integers(0, 20))
            return start, start + 185 + int(rng.integers(0, 40)), 1
        if k == 2 and n >= 900 and self.num_characters >= 2:
            start = int(0.55 * n) + int(rng.integers(0, 20))
            return start, start + 185 + int(rng.integers(0, 60)), -1
        return None

    # ---------------------------------------------------------------- geometry
    def _camera(self, i: int) -> float:
        if not self.camera_pan:
            return 0.0
        v = 0.004 * self.width
        return v * (i + 30.0 * math.sin(2 * math.pi * i / 400.0))

    def _shapes(self, i: int) -> list[_Shape]:
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame index {i} is outside 0..{self.num_frames - 1}")
        shapes = self._background(i)
        for c in self._drawing_order(i):
            shapes.extend(self._character_shapes(c, i))
        return shapes

    def _background(self, i: int) -> list[_Shape]:
        W, H = self.width, self.height
        cam = self._camera(i)
        horizon = 0.58 * H
        big = np.array([[-8, -8], [W + 8, -8], [W + 8, H + 8], [-8, H + 8]], float)
        shapes = [_Shape(big, (150, 200, 238), 0, SKY)]
        for j, x, rng in self._layer(cam * 0.3, spacing=0.55 * W, layer=1):
            y = H * rng.uniform(0.1, 0.3)
            pts = _ellipse(x, y, W * rng.uniform(0.06, 0.1), H * rng.uniform(0.04, 0.07), 40)
            shapes.append(_Shape(pts, (236, 240, 250), 0, CLOUD, [(pts, True)], gap_key=1000 + j))
        for j, x, rng in self._layer(cam * 0.6, spacing=0.45 * W, layer=2):
            ax, ay = W * rng.uniform(0.15, 0.25), H * rng.uniform(0.12, 0.22)
            t = np.linspace(np.pi, 2 * np.pi, 40)
            arc = np.stack([x + ax * np.cos(t), horizon + 2 + ay * np.sin(t)], axis=1)
            pts = np.concatenate([arc, [[x + ax, horizon + 10], [x - ax, horizon + 10]]])
            shapes.append(_Shape(pts, HILL_GREEN, 0, HILL, [(arc, False)], gap_key=2000 + j))
        ground = np.array([[-8, horizon], [W + 8, horizon], [W + 8, H + 8], [-8, H + 8]], float)
        edge = np.array([[-8, horizon], [W + 8, horizon]], float)
        shapes.append(_Shape(ground, (196, 184, 120), 0, GROUND, [(edge, False)], gap_key=3000))
        for j, x, rng in self._layer(cam, spacing=0.35 * W, layer=3):
            y = horizon + (H - horizon) * rng.uniform(0.15, 0.9)
            pts = _ellipse(x, y, W * rng.uniform(0.015, 0.03), H * rng.uniform(0.01, 0.02), 24)
            shapes.append(_Shape(pts, (150, 140, 130), 0, ROCK, [(pts, True)], gap_key=4000 + j))
        return shapes

    def _layer(self, offset: float, spacing: float, layer: int):
        """Objects placed every `spacing` world pixels with seeded jitter, seen through a camera
        at `offset`: an endless background drawn only where visible."""
        margin = 0.3 * self.width
        first = math.floor((offset - margin) / spacing)
        last = math.ceil((offset + self.width + margin) / spacing)
        for j in range(first, last + 1):
            rng = np.random.default_rng([self.seed, 200 + layer, j + (1 << 30)])
            x = j * spacing + rng.uniform(0, 0.6 * spacing) - offset
            yield j, x, rng

    def _drawing_order(self, i: int) -> list[_Character]:
        """Back to front. Each character's depth swings on its own, but two characters trade
        places only while their boxes are apart: an animator never pops one character in
        front of another it overlaps, so the order is worked out frame by frame from the
        first and kept in a table (any frame can still be asked for in any order)."""
        return [self._characters[k] for k in self._order_table()[i]]

    def _order_table(self) -> np.ndarray:
        if self._orders is not None:
            return self._orders
        chars = self._characters
        order = sorted(range(len(chars)), key=lambda k: (self._depth(chars[k], 0), k))
        table = np.zeros((self.num_frames, len(chars)), np.int16)
        table[0] = order
        for i in range(1, self.num_frames):
            depth = [(self._depth(c, i), k) for k, c in enumerate(chars)]
            boxes = [self._bbox(c, i) for c in chars]
            swapped = True
            while swapped:  # bubble sort where only pairs that are apart may trade places
                swapped = False
                for p in range(len(order) - 1):
                    a, b = order[p], order[p + 1]
                    if depth[a] > depth[b] and not _overlap(boxes[a], boxes[b]):
                        order[p], order[p + 1] = b, a
                        swapped = True
            table[i] = order
        self._orders = table
        return table

    def _depth(self, c: _Character, i: int) -> float:
        return math.sin(2 * math.pi * i / 340.0 + c.phase[0])

    def _pose(self, c: _Character, i: int):
        W, H = self.width, self.height
        p = c.phase
        x = W * (0.1 + 0.8 * c.base_x + c.amp[0] * math.sin(c.freq[0] * i + p[1])
                 + c.amp[1] * math.sin(c.freq[1] * i + p[2]))
        vx = c.amp[0] * c.freq[0] * math.cos(c.freq[0] * i + p[1]) + c.amp[1] * c.freq[1] * math.cos(c.freq[1] * i + p[2])
        if c.exit is not None:
            leave, back, direction = c.exit
            T = 30.0
            far = 1.6 * W + 2 * 0.2 * H
            x += direction * far * (_smoothstep((i - leave) / T) - _smoothstep((i - back) / T))
            if leave <= i < back + T:
                vx = direction if i < leave + T else -direction
        z = self._depth(c, i)
        scale = 0.16 * H * (1.0 + 0.12 * z)
        y = H * (0.8 + 0.07 * z) - 0.03 * H * abs(math.sin(math.pi * i / 16.0 + p[3]))
        squash = 1.0 + 0.07 * math.sin(2 * math.pi * i / 45.0 + p[4])
        tilt = 0.1 * math.sin(2 * math.pi * i / 130.0 + p[5])
        arm = 0.35 + 0.6 * math.sin(2 * math.pi * i / 38.0 + p[6])
        facing = 1.0 if vx >= 0 else -1.0
        return x, y, scale, squash, tilt, arm, facing

    def _openness(self, c: _Character, i: int) -> float:
        """Eyes close over a 5-frame blink, fully shut for the middle two frames."""
        k = int(np.searchsorted(c.blinks, i, side="right")) - 1
        if k < 0:
            return 1.0
        return (1.0, 0.45, 0.0, 0.0, 0.45, 1.0)[min(5, i - int(c.blinks[k]))]

    def _character_shapes(self, c: _Character, i: int) -> list[_Shape]:
        x, y, scale, squash, tilt, arm_angle, facing = self._pose(c, i)
        sx, sy = scale / squash, scale * squash
        ct, st = math.cos(tilt), math.sin(tilt)

        def tf(local: np.ndarray) -> np.ndarray:
            u = local[:, 0] * facing * sx
            v = local[:, 1] * sy
            return np.stack([x + u * ct - v * st, y + u * st + v * ct], axis=1)

        pal, k = c.palette, c.index
        colored = self.colored_lines
        inner_ink = _rgb_from_hsv(_hue_of(pal[BODY]), 0.8, 0.35) if colored else BLACK
        eye_ink = (84, 44, 30) if colored else BLACK
        mouth_ink = (128, 28, 40) if colored else BLACK

        def region(part, local, closed=True, ink=BLACK, lines=None):
            pts = tf(local)
            outline = [(pts, closed)] if lines is None else [(tf(p), cl) for p, cl in lines]
            return _Shape(pts, pal[part], k, region_id(k, part), outline, ink, gap_key=100 * k + part)

        d = c.design
        top = -2.0 * d.body_h  # top of the body; the head sits on it, overlapping a little
        head_y = top - 0.5 * d.head_r
        brim_y = head_y - 0.75 * d.head_r
        shapes = [
            region(BODY, _ellipse(0.0, -d.body_h, d.body_w, d.body_h)),
            region(BELLY, _ellipse(0.2 * d.body_w, -0.82 * d.body_h, 0.53 * d.body_w * d.belly,
                                   0.53 * d.body_h * d.belly, 40), ink=inner_ink),
            region(HEAD, _ellipse(0.0, head_y, d.head_r, d.head_r)),
            region(CROWN, np.array([[-d.hat_w, brim_y], [d.hat_w, brim_y],
                                    [0.74 * d.hat_w, brim_y - d.hat_h], [-0.74 * d.hat_w, brim_y - d.hat_h]])),
            region(BRIM, _ellipse(0.0, brim_y, d.brim_w, 0.13, 40)),
        ]
        mouth_y = head_y + 0.53 * d.head_r
        mouth = np.stack([np.linspace(-0.05, 0.25, 8), mouth_y + 0.07 * np.sin(np.linspace(0, np.pi, 8))], axis=1)
        shapes.append(_Shape(None, BLACK, k, region_id(k, HEAD), [(tf(mouth), False)], mouth_ink, 100 * k + 10))
        openness = self._openness(c, i)
        look = 0.05 * facing * math.sin(2 * math.pi * i / 90.0 + c.phase[7])
        for eye, pupil, ex in ((EYE_L, PUPIL_L, -0.1 * d.head_r), (EYE_R, PUPIL_R, 0.5 * d.head_r)):
            if openness <= 0.0:
                shut = np.array([[ex - d.eye_r, head_y], [ex, head_y + 0.04], [ex + d.eye_r, head_y]])
                shapes.append(_Shape(None, BLACK, k, region_id(k, HEAD), [(tf(shut), False)], eye_ink, 100 * k + 11))
                continue
            ay = 1.4 * d.eye_r * openness
            shapes.append(region(eye, _ellipse(ex, head_y, d.eye_r, ay, 40), ink=eye_ink))
            pr = min(0.6 * d.eye_r, 0.6 * ay)
            shapes.append(region(pupil, _ellipse(ex + look * facing, head_y, pr, pr, 24)))
        shapes.append(region(ARM, _capsule(0.6 * d.body_w, -1.47 * d.body_h, arm_angle, d.arm_len, d.arm_w)))
        return shapes

    def _bbox(self, c: _Character, i: int) -> tuple[float, float, float, float]:
        pts = np.concatenate([s.fill_pts if s.fill_pts is not None else s.lines[0][0]
                              for s in self._character_shapes(c, i)])
        pad = self.thickness
        return pts[:, 0].min() - pad, pts[:, 1].min() - pad, pts[:, 0].max() + pad, pts[:, 1].max() + pad

    def _visible_table(self) -> np.ndarray:
        """Per character and frame: would any of its pixels be in the picture. Exact: a
        character whose box straddles the border is rendered alone to decide."""
        if self._visibility is not None:
            return self._visibility
        vis = np.zeros((len(self._characters), self.num_frames), bool)
        for ci, c in enumerate(self._characters):
            for i in range(self.num_frames):
                x0, y0, x1, y1 = self._bbox(c, i)
                if x1 < 0 or y1 < 0 or x0 >= self.width or y0 >= self.height:
                    continue
                if x0 >= 0 and y0 >= 0 and x1 < self.width and y1 < self.height:
                    vis[ci, i] = True
                    continue
                vis[ci, i] = bool(self._labels(self._character_shapes(c, i), by_owner=True).any())
        self._visibility = vis
        return vis

    # ---------------------------------------------------------------- rendering
    def _stroke_sets(self, shape: _Shape) -> list[tuple[np.ndarray, bool]]:
        if not self.broken_lines:
            return shape.lines
        out: list[tuple[np.ndarray, bool]] = []
        for n, (pts, closed) in enumerate(shape.lines):
            out.extend(_cut_gaps(pts, closed, self.thickness, [self.seed, 300, shape.gap_key, n]))
        return out

    def _paint(self, shapes: list[_Shape], colored: bool) -> np.ndarray:
        img = np.empty((self.height, self.width, 3), np.uint8)
        img[:] = 255
        for s in shapes:
            if s.fill_pts is not None:
                cv2.fillPoly(img, [_fixed(s.fill_pts)], s.fill if colored else (255, 255, 255), cv2.LINE_8, SHIFT)
            sets = self._stroke_sets(s)
            strokes = [_fixed(p) for p, closed in sets if closed]
            opens = [_fixed(p) for p, closed in sets if not closed]
            if strokes:
                cv2.polylines(img, strokes, True, s.ink, self.thickness, self._line_type, SHIFT)
            if opens:
                cv2.polylines(img, opens, False, s.ink, self.thickness, self._line_type, SHIFT)
        return img

    def _labels(self, shapes: list[_Shape], by_owner: bool = False, fill_value=None) -> np.ndarray:
        """Per-pixel label painted back to front like the drawing: each shape's fill takes
        `fill_value(shape)` (default: its owner or region id), its outline the owner or LINE."""
        lab = np.zeros((self.height, self.width), np.int32)
        for s in shapes:
            value = fill_value(s) if fill_value else (s.owner if by_owner else s.region)
            if s.fill_pts is not None:
                cv2.fillPoly(lab, [_fixed(s.fill_pts)], value, cv2.LINE_8, SHIFT)
            line_value = s.owner if by_owner else LINE
            for pts, closed in self._stroke_sets(s):
                cv2.polylines(lab, [_fixed(pts)], closed, line_value, self.thickness, cv2.LINE_8, SHIFT)
        return lab


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _hue_of(rgb: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0]


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * (1 << SHIFT)).astype(np.int32)


def _cut_gaps(pts: np.ndarray, closed: bool, thickness: int, key) -> list[tuple[np.ndarray, bool]]:
    """Split a stroke at seeded places so 1-3 px of paper show through. Round line caps
    reach thickness/2 into each cut, so the cut in the path is gap + thickness long."""
    path = np.concatenate([pts, pts[:1]]) if closed else pts
    seg = np.hypot(*np.diff(path, axis=0).T)
    total = float(seg.sum())
    rng = np.random.default_rng(key)
    count = min(int(total // 90), 6)
    if count == 0 or total < 4 * (thickness + 3):
        return [(pts, closed)]
    cuts = []
    for _ in range(count):
        length = float(rng.integers(1, 4)) + thickness
        start = float(rng.uniform(0, total - length))
        cuts.append((start, start + length))
    cuts.sort()
    keep, pos = [], 0.0
    for a, b in cuts:
        if a > pos:
            keep.append((pos, a))
        pos = max(pos, b)
    if pos < total:
        keep.append((pos, total))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    out = []
    for a, b in keep:
        if b - a < 0.5:
            continue
        inside = (cum > a) & (cum < b)
        ends = np.stack([np.interp(a, cum, path[:, 0]), np.interp(a, cum, path[:, 1])])
        tail = np.stack([np.interp(b, cum, path[:, 0]), np.interp(b, cum, path[:, 1])])
        out.append((np.concatenate([ends[None], path[inside], tail[None]]), False))
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def make_shot(num_frames: int = 500, width: int = 480, height: int = 270, seed: int = 0, *,
              antialias: bool = False, broken_lines: bool = False, colored_lines: bool = False,
              camera_pan: bool = True, num_characters: int = 3, keyframes=(0,),
              look_alike: bool = False) -> SyntheticShot:
    return SyntheticShot(width, height, num_frames, seed, antialias=antialias, broken_lines=broken_lines,
                         colored_lines=colored_lines, camera_pan=camera_pan, num_characters=num_characters,
                         keyframes=list(keyframes), look_alike=look_alike)
