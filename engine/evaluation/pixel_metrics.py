"""How right one colorized frame is against its truth, pixel by pixel.

All take uint8 sRGB HxWx3 arrays. The ones that matter for cel colorization are
color-based: CIEDE2000 per pixel, the share of flat-region pixels whose color is right
(`flat_region_accuracy`) and flicker where the truth holds still. PSNR/SSIM are
here because papers report them. Network-based scores live in `feature_metrics`, the
whole-shot report in `report`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from longanim.engine.errors import InputError

# A pixel's color is "right" when CIEDE2000 to the truth is <= 3: above the ~2.3 just-
# noticeable difference so quantization and codec noise pass, far below what a wrong
# fill costs (two palette colors of a cel are almost always > 10 apart).
DEFAULT_TOLERANCE = 3.0
# Truth pixels that change by at most this many 8-bit levels count as "still" for flicker.
STATIC_LEVELS = 2
# A prediction pixel whose channels move by more than this counts as a flicker.
FLICKER_LEVELS = 8
PSNR_CAP_DB = 100.0

# --------------------------------------------------------------------------- color science
_SRGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_D65 = np.array([0.95047, 1.0, 1.08883])
_c = np.arange(256) / 255.0
_LINEAR = np.where(_c <= 0.04045, _c / 12.92, ((_c + 0.055) / 1.055) ** 2.4)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> CIE L*a*b* (D65, 2 degree observer), float64."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise TypeError(f"srgb_to_lab expects uint8, got {rgb.dtype}")
    xyz = _LINEAR[rgb] @ _SRGB_TO_XYZ.T / _D65
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray, kL: float = 1.0, kC: float = 1.0, kH: float = 1.0) -> np.ndarray:
    """CIEDE2000 color difference, elementwise over (..., 3) Lab arrays (Sharma, Wu, Dalal 2005)."""
    lab1 = np.asarray(lab1, np.float64)
    lab2 = np.asarray(lab2, np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    c7 = c_bar ** 7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.mod(np.arctan2(b1, a1p), 2 * np.pi)
    h2p = np.mod(np.arctan2(b2, a2p), 2 * np.pi)
    chroma0 = (c1p * c2p) == 0

    dLp = L2 - L1
    dCp = c2p - c1p
    dhp = h2p - h1p
    dhp = np.where(dhp > np.pi, dhp - 2 * np.pi, np.where(dhp < -np.pi, dhp + 2 * np.pi, dhp))
    dhp = np.where(chroma0, 0.0, dhp)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(dhp / 2)

    Lbp = (L1 + L2) / 2
    Cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) <= np.pi, hsum / 2,
                   np.where(hsum < 2 * np.pi, (hsum + 2 * np.pi) / 2, (hsum - 2 * np.pi) / 2))
    hbp = np.where(chroma0, hsum, hbp)

    t = (1 - 0.17 * np.cos(hbp - np.radians(30)) + 0.24 * np.cos(2 * hbp)
         + 0.32 * np.cos(3 * hbp + np.radians(6)) - 0.20 * np.cos(4 * hbp - np.radians(63)))
    d_theta = np.radians(30) * np.exp(-(((np.degrees(hbp) - 275) / 25) ** 2))
    cbp7 = Cbp ** 7
    rc = 2 * np.sqrt(cbp7 / (cbp7 + 25.0 ** 7))
    sl = 1 + 0.015 * (Lbp - 50) ** 2 / np.sqrt(20 + (Lbp - 50) ** 2)
    sc = 1 + 0.045 * Cbp
    sh = 1 + 0.015 * Cbp * t
    rt = -np.sin(2 * d_theta) * rc
    tl, tc, th = dLp / (kL * sl), dCp / (kC * sc), dHp / (kH * sh)
    return np.sqrt(np.maximum(tl ** 2 + tc ** 2 + th ** 2 + rt * tc * th, 0.0))


def check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    for name, a in (("prediction", pred), ("ground truth", gt)):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise InputError(f"{name} frame must be HxWx3 uint8 RGB, got {a.dtype} {a.shape}")
    if pred.shape != gt.shape:
        raise InputError(f"frame sizes differ: prediction {pred.shape[1]}x{pred.shape[0]}, "
                         f"ground truth {gt.shape[1]}x{gt.shape[0]}")


def _channel_max(img: np.ndarray) -> np.ndarray:
    c = cv2.split(img)
    return cv2.max(cv2.max(c[0], c[1]), c[2])


def _channel_min(img: np.ndarray) -> np.ndarray:
    c = cv2.split(img)
    return cv2.min(cv2.min(c[0], c[1]), c[2])


def masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of `values` where `mask`; NaN on an empty mask (cv2: no boolean-index copy)."""
    m = mask.astype(np.uint8)
    if not cv2.countNonZero(m):
        return float("nan")
    return float(cv2.mean(values, mask=m)[0])


def count_pixels(mask: np.ndarray) -> int:
    """True pixels of a bool mask (cv2 counts faster than numpy's sum)."""
    return int(cv2.countNonZero(mask.view(np.uint8)))


def delta_e_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 (float32 HxW). Only differing pixels are computed: flat cels
    colored well are mostly identical to the truth, which makes this cheap."""
    check_pair(pred, gt)
    out = np.zeros(gt.shape[:2], np.float32)
    diff = _channel_max(cv2.absdiff(pred, gt)) > 0
    if diff.any():
        out[diff] = ciede2000(srgb_to_lab(pred[diff]), srgb_to_lab(gt[diff]))
    return out


# --------------------------------------------------------------------------- classic metrics
def psnr(pred: np.ndarray, gt: np.ndarray, max_db: float = PSNR_CAP_DB) -> float:
    """PSNR over all channels in dB; identical frames give `max_db` (not inf) so that
    shot averages and JSON stay finite."""
    check_pair(pred, gt)
    mse = cv2.norm(pred, gt, cv2.NORM_L2SQR) / pred.size
    if mse == 0:
        return max_db
    return min(max_db, 10 * math.log10(255.0 ** 2 / mse))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.transform(rgb.astype(np.float32), np.array([[0.299, 0.587, 0.114]], np.float32))


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) on BT.601 luma: 11x11 Gaussian window, sigma 1.5, K1=0.01,
    K2=0.03, L=255, averaged over the valid region (5 px border dropped) like the
    reference implementation."""
    check_pair(pred, gt)
    x, y = _luma(pred), _luma(gt)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a):
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    h, w = m.shape
    if h > 10 and w > 10:
        m = m[5:-5, 5:-5]
    return float(m.mean())


# --------------------------------------------------------------------------- cel metrics
def line_mask_from_lineart(lineart: np.ndarray, threshold: int = 8) -> np.ndarray:
    """Ink pixels of a line-art frame on white paper: darker than white by > threshold."""
    return _channel_min(lineart) < 255 - threshold


def line_mask_from_color(gt: np.ndarray, dark: int = 60) -> np.ndarray:
    """Best guess at the lines when only the colored truth is at hand: every pixel next to
    a color change (edges, anti-aliasing) plus near-black pixels (black ink). Dark fills
    are excluded along with it; pass the real line art when you have it."""
    k = np.ones((3, 3), np.uint8)
    edge = _channel_max(cv2.absdiff(cv2.dilate(gt, k), cv2.erode(gt, k))) > 0
    return edge | (_channel_max(gt) <= dark)


def countable_mask(gt: np.ndarray, line_mask: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels flat-region accuracy counts: not within 1 px of a line; inside `mask` if given."""
    lines = line_mask_from_color(gt) if line_mask is None else np.asarray(line_mask, bool)
    if lines.shape != gt.shape[:2]:
        raise InputError(f"line mask is {lines.shape[1]}x{lines.shape[0]}, frame is {gt.shape[1]}x{gt.shape[0]}")
    near = cv2.dilate(lines.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    keep = ~near
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape[:2] != gt.shape[:2]:
            raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]}, frame is {gt.shape[1]}x{gt.shape[0]}")
        keep &= (mask.reshape(mask.shape[0], mask.shape[1], -1) != 0).any(axis=2)
    return keep


def flat_region_accuracy(pred: np.ndarray, gt: np.ndarray, line_mask: np.ndarray | None = None,
                         mask: np.ndarray | None = None, tolerance: float = DEFAULT_TOLERANCE,
                         delta_e: np.ndarray | None = None) -> float:
    """Share of countable pixels (see `countable_mask`) within `tolerance` CIEDE2000 of
    the truth; NaN when no pixel counts (e.g. no character in frame)."""
    keep = countable_mask(gt, line_mask, mask)
    n = count_pixels(keep)
    if n == 0:
        return float("nan")
    de = delta_e_map(pred, gt) if delta_e is None else delta_e
    return count_pixels(keep & (de <= tolerance)) / n


def flicker(pred_prev: np.ndarray, pred: np.ndarray, gt_prev: np.ndarray, gt: np.ndarray,
            static_levels: int = STATIC_LEVELS, change_levels: int = FLICKER_LEVELS) -> tuple[float, float]:
    """Temporal flicker over pixels whose truth did not change between the two frames
    (every channel within `static_levels`): (mean absolute change of the prediction in
    8-bit levels, share of those pixels whose prediction moved by > `change_levels`).
    Colors that should hold still and do not is flicker; NaN, NaN if nothing held still."""
    check_pair(pred, gt)
    check_pair(pred_prev, gt_prev)
    if pred_prev.shape != pred.shape:
        raise InputError("consecutive frames differ in size")
    still = (_channel_max(cv2.absdiff(gt, gt_prev)) <= static_levels).astype(np.uint8)
    n = cv2.countNonZero(still)
    if not n:
        return float("nan"), float("nan")
    d = cv2.absdiff(pred, pred_prev)
    mae = float(np.mean(cv2.mean(d, mask=still)[:3]))
    moved = cv2.countNonZero(cv2.bitwise_and(still, (_channel_max(d) > change_levels).astype(np.uint8)))
    return mae, moved / n
