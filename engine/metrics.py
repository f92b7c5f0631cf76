"""How right a colorized shot is, frame by frame and over its whole length.

All pixel metrics take uint8 sRGB HxWx3 arrays. The ones that matter for cel
colorization are color-based: CIEDE2000 per pixel, the share of flat-region pixels
whose color is right (`flat_region_accuracy`), flicker where the truth holds still,
and the drift curve (per-frame color error along the shot: a method whose memory
fades shows a rising curve). PSNR/SSIM are reported because papers do.

FID, FVD and LPIPS need pretrained networks that cannot ship with us; they load the
standard TorchScript files from a path the user gives (see `feature_models` below).
`evaluate()` streams: it holds two frames (and small feature statistics), never a shot.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from longanim.engine.errors import InputError, LonganimError

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


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
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


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of `values` where `mask`; NaN on an empty mask (cv2: no boolean-index copy)."""
    m = mask.astype(np.uint8)
    if not cv2.countNonZero(m):
        return float("nan")
    return float(cv2.mean(values, mask=m)[0])


def delta_e_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 (float32 HxW). Only differing pixels are computed: flat cels
    colored well are mostly identical to the truth, which makes this cheap."""
    _check_pair(pred, gt)
    out = np.zeros(gt.shape[:2], np.float32)
    diff = _channel_max(cv2.absdiff(pred, gt)) > 0
    if diff.any():
        out[diff] = ciede2000(srgb_to_lab(pred[diff]), srgb_to_lab(gt[diff]))
    return out


# --------------------------------------------------------------------------- classic metrics
def psnr(pred: np.ndarray, gt: np.ndarray, max_db: float = PSNR_CAP_DB) -> float:
    """PSNR over all channels in dB; identical frames give `max_db` (not inf) so that
    shot averages and JSON stay finite."""
    _check_pair(pred, gt)
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
    _check_pair(pred, gt)
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
    n = _count(keep)
    if n == 0:
        return float("nan")
    de = delta_e_map(pred, gt) if delta_e is None else delta_e
    return _count(keep & (de <= tolerance)) / n


def flicker(pred_prev: np.ndarray, pred: np.ndarray, gt_prev: np.ndarray, gt: np.ndarray,
            static_levels: int = STATIC_LEVELS, change_levels: int = FLICKER_LEVELS) -> tuple[float, float]:
    """Temporal flicker over pixels whose truth did not change between the two frames
    (every channel within `static_levels`): (mean absolute change of the prediction in
    8-bit levels, share of those pixels whose prediction moved by > `change_levels`).
    Colors that should hold still and do not is flicker; NaN, NaN if nothing held still."""
    _check_pair(pred, gt)
    _check_pair(pred_prev, gt_prev)
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


# --------------------------------------------------------------------------- Frechet distance
def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between Gaussians: |mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2).
    tr (S1 S2)^1/2 = tr (S1^1/2 S2 S1^1/2)^1/2, a symmetric PSD product, so two symmetric
    eigendecompositions replace the general sqrtm (no scipy)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(ev, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


class FeatureStats:
    """Running mean and covariance of feature vectors, so FID over a 2,000-frame shot needs
    no list of 2,000 features (sums in float64)."""

    def __init__(self) -> None:
        self.n = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def add(self, feats: np.ndarray) -> None:
        f = np.asarray(feats, np.float64).reshape(len(feats), -1)
        if self._sum is None:
            self._sum = np.zeros(f.shape[1])
            self._outer = np.zeros((f.shape[1], f.shape[1]))
        self.n += len(f)
        self._sum += f.sum(axis=0)
        self._outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise ValueError("need at least two feature vectors for a covariance")
        mu = self._sum / self.n
        cov = (self._outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


# --------------------------------------------------------------------------- feature models
# The standard TorchScript files and how each is called (checked against clean-fid,
# StyleGAN2-ADA/3 and StyleGAN-V, which publish them):
#   FID  inception-2015-12-05.pt: model(x, return_features=True) -> (N, 2048); x float32
#        NCHW RGB in [0, 255]. We resize to 299x299 ourselves (cv2 area/cubic), so the
#        network's own resize is a no-op; numbers track clean-fid but are not bit-identical.
#   FVD  i3d_torchscript.pt: model(x, rescale=False, resize=False, return_features=True)
#        -> (N, 400); x float32 NCTHW in [-1, 1] at 224x224, clips of 16 frames.
#   LPIPS: either StyleGAN's vgg16.pt, model(x, resize_images=False, return_lpips=True)
#        -> embedding, x in [0, 255] (256x256 when larger), distance = squared L2 of the
#        embeddings; or any TorchScript model(a, b) -> distance with a, b in [-1, 1]
#        (the `lpips` package convention, e.g. a traced lpips.LPIPS(net="alex")).
FID_FILE, FVD_FILE, LPIPS_FILE = "inception-2015-12-05.pt", "i3d_torchscript.pt", "vgg16.pt"
FVD_CLIP = 16


def load_torchscript(path, metric: str, filename: str, flag: str, device=None):
    """torch.jit.load with an error that tells the user which file to fetch and pass."""
    hint = f"{metric} needs the TorchScript file {filename}; download it and pass its path with {flag} PATH"
    if path is None:
        raise LonganimError(hint)
    p = Path(path)
    if not p.is_file():
        raise LonganimError(f"{hint} ({str(p)!r} is not a file)")
    import torch

    try:
        model = torch.jit.load(str(p), map_location=device or "cpu")
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for bad files
        raise LonganimError(f"{metric}: {str(p)!r} is not a loadable TorchScript file ({exc}); {hint}") from exc
    return model.eval()


def _device(device=None):
    import torch

    return torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resize(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    if frame.shape[1] == w and frame.shape[0] == h:
        return frame
    shrink = frame.shape[1] > w or frame.shape[0] > h
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


class InceptionFeatures:
    """Pool3 features of frames for FID, batched."""

    def __init__(self, path, device=None, batch: int = 8):
        self.device = _device(device)
        self.model = load_torchscript(path, "FID", FID_FILE, "--fid-weights", self.device)
        self.batch = batch
        self._pending: list[np.ndarray] = []
        self.stats = FeatureStats()

    def add(self, frame: np.ndarray) -> None:
        self._pending.append(_resize(frame, 299, 299))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        import torch

        x = torch.from_numpy(np.stack(self._pending)).to(self.device).permute(0, 3, 1, 2).float()
        self._pending = []
        with torch.no_grad():
            feats = self.model(x, return_features=True)
        self.stats.add(feats.reshape(feats.shape[0], -1).double().cpu().numpy())


class I3DFeatures:
    """I3D features of consecutive non-overlapping 16-frame clips for FVD; a tail shorter
    than a clip is dropped."""

    def __init__(self, path, device=None, clip: int = FVD_CLIP):
        self.device = _device(device)
        self.model = load_torchscript(path, "FVD", FVD_FILE, "--fvd-weights", self.device)
        self.clip = clip
        self._frames: list[np.ndarray] = []
        self.stats = FeatureStats()

    def add(self, frame: np.ndarray) -> None:
        self._frames.append(_resize(frame, 224, 224))
        if len(self._frames) == self.clip:
            import torch

            x = torch.from_numpy(np.stack(self._frames)).to(self.device).float() / 127.5 - 1
            self._frames = []
            x = x.permute(3, 0, 1, 2).unsqueeze(0)  # 1, C, T, H, W
            with torch.no_grad():
                feats = self.model(x, rescale=False, resize=False, return_features=True)
            self.stats.add(feats.reshape(1, -1).double().cpu().numpy())


class Lpips:
    """Per-frame LPIPS through one of the two TorchScript conventions described above."""

    def __init__(self, path, device=None):
        self.device = _device(device)
        self.model = load_torchscript(path, "LPIPS", LPIPS_FILE, "--lpips-weights", self.device)
        try:
            schema = str(self.model.forward.schema)
        except Exception:
            schema = ""
        self.embedding = "return_lpips" in schema

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> float:
        import torch

        x = torch.from_numpy(np.stack([pred, gt])).to(self.device).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            if self.embedding:
                if x.shape[2] > 256:
                    x = torch.nn.functional.interpolate(x, size=(256, 256), mode="area")
                e = self.model(x, resize_images=False, return_lpips=True)
                return float((e[0] - e[1]).square().sum())
            x = x / 127.5 - 1
            d = self.model(x[:1], x[1:])
            return float(d.reshape(-1)[0])


# --------------------------------------------------------------------------- the whole shot
ROW_COLUMNS = ("frame", "psnr", "ssim", "delta_e", "delta_e_flat", "accuracy", "accuracy_characters",
               "flicker_mae", "flicker_fraction", "lpips")


@dataclass
class EvalReport:
    rows: list[dict]
    summary: dict
    columns: list[str] = field(default_factory=list)

    def drift_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(frame numbers, mean CIEDE2000 over flat-region pixels) for every frame."""
        return (np.array([r["frame"] for r in self.rows]),
                np.array([_nan(r["delta_e_flat"]) for r in self.rows], np.float64))

    def to_json(self) -> dict:
        return _jsonable({"summary": self.summary, "definitions": DEFINITIONS, "frames": self.rows})

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for r in self.rows:
            w.writerow(["" if _isnan(r.get(c)) else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c])
                        for c in self.columns])
        return buf.getvalue()


DEFINITIONS = {
    "psnr": f"dB over RGB, identical frames capped at {PSNR_CAP_DB:g}",
    "ssim": "Gaussian SSIM (11x11, sigma 1.5) on BT.601 luma",
    "delta_e": "mean CIEDE2000 over all pixels",
    "delta_e_flat": "mean CIEDE2000 over flat-region pixels (not within 1 px of a line): the drift curve",
    "accuracy": "share of flat-region pixels within `tolerance` CIEDE2000 of the truth",
    "accuracy_characters": "the same, counting characters' pixels only (needs masks)",
    "flicker_mae": f"mean |change| (8-bit levels) of the prediction where the truth changed <= {STATIC_LEVELS} levels",
    "flicker_fraction": f"share of those pixels whose prediction moved > {FLICKER_LEVELS} levels",
    "drift_slope_per_100": "least-squares slope of delta_e_flat per 100 frames",
    "fid": "Frechet distance of Inception pool3 features of all frames, prediction vs truth",
    "fvd": f"Frechet distance of I3D features of non-overlapping {FVD_CLIP}-frame clips",
    "lpips": "learned perceptual distance per frame (lower is better)",
}


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _mean(values) -> float:
    v = np.array([_nan(x) for x in values], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def evaluate(pred_frames: Iterable[np.ndarray], gt_frames: Iterable[np.ndarray], masks: Iterable | None = None,
             *, line_masks: Iterable | None = None, frame_numbers: Iterable[int] | None = None,
             tolerance: float = DEFAULT_TOLERANCE, fid_weights=None, fvd_weights=None, lpips_weights=None,
             device=None) -> EvalReport:
    """Score a predicted shot against its truth, one frame pair at a time.

    masks: optional per-frame arrays, nonzero on characters (adds `accuracy_characters`).
    line_masks: optional per-frame bool line masks (e.g. from the line art); without them
    lines are guessed from the truth (`line_mask_from_color`). FID/FVD/LPIPS run only when
    their weights are given. Streams: iterables are consumed in step, two frames held.
    """
    fid = (InceptionFeatures(fid_weights, device), InceptionFeatures(fid_weights, device)) if fid_weights else None
    fvd = (I3DFeatures(fvd_weights, device), I3DFeatures(fvd_weights, device)) if fvd_weights else None
    lpips = Lpips(lpips_weights, device) if lpips_weights else None

    pred_it, gt_it = iter(pred_frames), iter(gt_frames)
    mask_it = iter(masks) if masks is not None else None
    line_it = iter(line_masks) if line_masks is not None else None
    num_it = iter(frame_numbers) if frame_numbers is not None else None
    rows: list[dict] = []
    counted = correct = 0
    counted_chars = correct_chars = 0
    prev = None
    index = 0
    for pred in pred_it:
        try:
            gt = next(gt_it)
        except StopIteration:
            raise InputError(f"prediction has more frames than the ground truth ({index} in the truth)") from None
        pred, gt = np.asarray(pred), np.asarray(gt)
        _check_pair(pred, gt)
        mask = next(mask_it) if mask_it is not None else None
        lines = next(line_it) if line_it is not None else None
        frame = next(num_it) if num_it is not None else index
        if lines is None:
            lines = line_mask_from_color(gt)

        de = delta_e_map(pred, gt)
        keep = countable_mask(gt, lines)
        ok = de <= tolerance
        n_keep, n_ok = _count(keep), _count(keep & ok)
        row = {"frame": int(frame), "psnr": psnr(pred, gt), "ssim": ssim(pred, gt),
               "delta_e": float(cv2.mean(de)[0]), "delta_e_flat": _masked_mean(de, keep),
               "accuracy": n_ok / n_keep if n_keep else float("nan")}
        counted += n_keep
        correct += n_ok
        if mask is not None:
            kc = countable_mask(gt, lines, mask)
            nc, nc_ok = _count(kc), _count(kc & ok)
            row["accuracy_characters"] = nc_ok / nc if nc else float("nan")
            counted_chars += nc
            correct_chars += nc_ok
        if prev is not None and prev[0].shape == pred.shape:
            row["flicker_mae"], row["flicker_fraction"] = flicker(prev[0], pred, prev[1], gt)
        else:
            row["flicker_mae"] = row["flicker_fraction"] = float("nan")
        if lpips is not None:
            row["lpips"] = lpips(pred, gt)
        if fid is not None:
            fid[0].add(pred)
            fid[1].add(gt)
        if fvd is not None:
            fvd[0].add(pred)
            fvd[1].add(gt)
        rows.append(row)
        prev = (pred, gt)
        index += 1
    if next(gt_it, None) is not None:
        raise InputError(f"ground truth has more frames than the prediction ({index} predicted)")
    if not rows:
        raise InputError("no frames to evaluate")

    columns = [c for c in ROW_COLUMNS if c in rows[0]]
    summary = _summarize(rows, tolerance)
    summary["accuracy"] = correct / counted if counted else float("nan")
    if masks is not None:
        summary["accuracy_characters"] = correct_chars / counted_chars if counted_chars else float("nan")
    if fid is not None:
        for f in fid:
            f.flush()
        summary["fid"] = frechet_distance(*fid[0].stats.mean_cov(), *fid[1].stats.mean_cov())
    if fvd is not None:
        if fvd[0].stats.n < 2:
            raise InputError(f"FVD needs at least {2 * FVD_CLIP} frames (two {FVD_CLIP}-frame clips), got {index}")
        summary["fvd"] = frechet_distance(*fvd[0].stats.mean_cov(), *fvd[1].stats.mean_cov())
        summary["fvd_clips"] = fvd[0].stats.n
    return EvalReport(rows, summary, columns)


def _count(mask: np.ndarray) -> int:
    return int(cv2.countNonZero(mask.view(np.uint8)))


def _summarize(rows: list[dict], tolerance: float) -> dict:
    frames = np.array([r["frame"] for r in rows], np.float64)
    de = np.array([r["delta_e_flat"] for r in rows], np.float64)
    acc = np.array([r["accuracy"] for r in rows], np.float64)
    s = {"frames": len(rows), "first_frame": int(frames[0]), "last_frame": int(frames[-1]),
         "tolerance_delta_e": tolerance}
    for c in ("psnr", "ssim", "delta_e", "delta_e_flat", "flicker_mae", "flicker_fraction", "lpips"):
        if c in rows[0]:
            s[f"{c}_mean"] = _mean(r[c] for r in rows)
    ok = np.isfinite(de)
    s["drift_slope_per_100"] = (float(np.polyfit(frames[ok], de[ok], 1)[0] * 100)
                                if ok.sum() >= 2 and np.ptp(frames[ok]) > 0 else float("nan"))
    tenth = max(1, len(rows) // 10)
    s["delta_e_flat_first_10pct"] = _mean(de[:tenth])
    s["delta_e_flat_last_10pct"] = _mean(de[-tenth:])
    s["accuracy_first_10pct"] = _mean(acc[:tenth])
    s["accuracy_last_10pct"] = _mean(acc[-tenth:])
    order = np.argsort(np.where(np.isfinite(acc), acc, np.inf))[:5]
    s["worst_frames"] = [int(frames[i]) for i in order if np.isfinite(acc[i])]
    return s


# --------------------------------------------------------------------------- output
def write_atomic(path, data: bytes) -> None:
    """Through the project's writer: temp file beside the target, synced, renamed over it."""
    from longanim.engine.image_files import atomic_write

    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def write_report(report: EvalReport, outdir) -> dict[str, Path]:
    """metrics.json, per_frame.csv and drift.png in `outdir`, each written atomically."""
    from longanim.engine.drift_plot import drift_png

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "csv": out / "per_frame.csv", "plot": out / "drift.png"}
    write_atomic(paths["json"], (json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n").encode())
    write_atomic(paths["csv"], report.csv_text().encode())
    frames, de = report.drift_curve()
    acc = np.array([_nan(r["accuracy"]) for r in report.rows])
    write_atomic(paths["plot"], drift_png(frames, de, acc, report.summary.get("tolerance_delta_e", DEFAULT_TOLERANCE)))
    return paths
