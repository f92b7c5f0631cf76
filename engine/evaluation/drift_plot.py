"""The drift curve as a PNG, drawn with cv2 (matplotlib is not a dependency).

Two panels sharing the frame axis: mean CIEDE2000 over flat regions per frame (with
the tolerance as a dashed line) above, flat-region accuracy below. A colorizer
whose memory fades shows the top curve climbing and the bottom one sinking.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WIDTH, HEIGHT = 1000, 600
LEFT, RIGHT, TOP, GAP, BOTTOM = 80, 24, 40, 60, 50
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, GRID, CURVE_DE, CURVE_ACC, TOL = (30, 30, 30), (225, 225, 225), (40, 70, 200), (30, 150, 60), (160, 160, 160)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"


def _panel(img, box, xs, ys, x_ticks, y_ticks, color, title, hline=None):
    x0, y0, x1, y1 = box
    xlo, xhi, ylo, yhi = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(x):
        return x0 + (x - xlo) / (xhi - xlo) * (x1 - x0)

    def py(y):
        return y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)

    for t in y_ticks:
        y = int(round(py(t)))
        cv2.line(img, (x0, y), (x1, y), GRID, 1)
        cv2.putText(img, _label(t), (8, y + 4), FONT, 0.4, INK, 1, cv2.LINE_AA)
    for t in x_ticks:
        x = int(round(px(t)))
        cv2.line(img, (x, y0), (x, y1), GRID, 1)
        cv2.line(img, (x, y1), (x, y1 + 4), INK, 1)
    cv2.rectangle(img, (x0, y0), (x1, y1), INK, 1)
    cv2.putText(img, title, (x0, y0 - 10), FONT, 0.5, INK, 1, cv2.LINE_AA)
    if hline is not None and ylo <= hline <= yhi:
        y = int(round(py(hline)))
        for x in range(x0, x1, 12):
            cv2.line(img, (x, y), (min(x + 6, x1), y), TOL, 1)
    finite = np.isfinite(ys)
    # Break the curve at missing values rather than bridging them.
    runs = np.split(np.arange(len(ys)), np.flatnonzero(np.diff(finite.astype(np.int8))) + 1)
    for run in runs:
        if not finite[run[0]]:
            continue
        pts = np.stack([px(xs[run]), py(ys[run])], axis=1)
        pts = np.round(pts * 16).astype(np.int32)
        if len(run) == 1:
            cv2.circle(img, tuple(int(v) for v in pts[0]), 2 * 16, color, -1, cv2.LINE_AA, 4)
        else:
            cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA, 4)


def drift_image(frames, delta_e, accuracy, tolerance: float) -> np.ndarray:
    """RGB uint8 image of the two panels."""
    xs = np.asarray(frames, np.float64)
    de = np.asarray(delta_e, np.float64)
    acc = np.asarray(accuracy, np.float64) * 100
    img = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    x_ticks = nice_ticks(float(xs.min()), float(xs.max()) if len(xs) > 1 else float(xs.min()) + 1, 10)
    fin = de[np.isfinite(de)]
    de_hi = max(float(fin.max()) if fin.size else 0.0, tolerance * 1.5)
    panel_h = (HEIGHT - TOP - GAP - BOTTOM) // 2
    top = (LEFT, TOP, WIDTH - RIGHT, TOP + panel_h)
    bottom = (LEFT, TOP + panel_h + GAP, WIDTH - RIGHT, TOP + 2 * panel_h + GAP)
    _panel(img, top, xs, de, x_ticks, nice_ticks(0.0, de_hi, 5), CURVE_DE,
           "mean CIEDE2000, flat regions (dashed: tolerance)", hline=tolerance)
    fa = acc[np.isfinite(acc)]
    acc_lo = min(90.0, math.floor(float(fa.min()) / 10) * 10) if fa.size else 0.0
    _panel(img, bottom, xs, acc, x_ticks, nice_ticks(acc_lo, 100.0, 5), CURVE_ACC,
           f"flat-region accuracy % (CIEDE2000 <= {tolerance:g})")
    for t in x_ticks:
        x = int(round(LEFT + (t - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (WIDTH - RIGHT - LEFT)))
        for y in (top[3] + 18, bottom[3] + 18):
            text = _label(t)
            w = cv2.getTextSize(text, FONT, 0.4, 1)[0][0]
            cv2.putText(img, text, (x - w // 2, y), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.putText(img, "frame", (WIDTH // 2 - 20, HEIGHT - 8), FONT, 0.5, INK, 1, cv2.LINE_AA)
    return img


def drift_png(frames, delta_e, accuracy, tolerance: float) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(drift_image(frames, delta_e, accuracy, tolerance), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("cv2 could not encode the drift plot")
    return buf.tobytes()
