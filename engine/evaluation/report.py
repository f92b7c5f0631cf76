"""The whole-shot score: per-frame rows, the summary with the drift curve, and the files.

The drift curve is the per-frame color error along the shot: a method whose memory fades
shows a rising curve. `evaluate()` streams: it holds two frames (and small feature
statistics), never a shot.
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

from longanim.engine.errors import InputError
from longanim.engine.evaluation.feature_metrics import FVD_CLIP, I3DFeatures, InceptionFeatures, Lpips, frechet_distance
from longanim.engine.evaluation.pixel_metrics import (
    DEFAULT_TOLERANCE,
    FLICKER_LEVELS,
    PSNR_CAP_DB,
    STATIC_LEVELS,
    check_pair,
    count_pixels,
    countable_mask,
    delta_e_map,
    flicker,
    line_mask_from_color,
    masked_mean,
    psnr,
    ssim,
)


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
        check_pair(pred, gt)
        mask = next(mask_it) if mask_it is not None else None
        lines = next(line_it) if line_it is not None else None
        frame = next(num_it) if num_it is not None else index
        if lines is None:
            lines = line_mask_from_color(gt)

        de = delta_e_map(pred, gt)
        keep = countable_mask(gt, lines)
        ok = de <= tolerance
        n_keep, n_ok = count_pixels(keep), count_pixels(keep & ok)
        row = {"frame": int(frame), "psnr": psnr(pred, gt), "ssim": ssim(pred, gt),
               "delta_e": float(cv2.mean(de)[0]), "delta_e_flat": masked_mean(de, keep),
               "accuracy": n_ok / n_keep if n_keep else float("nan")}
        counted += n_keep
        correct += n_ok
        if mask is not None:
            kc = countable_mask(gt, lines, mask)
            nc, nc_ok = count_pixels(kc), count_pixels(kc & ok)
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
    from longanim.engine.sequences.image_files import atomic_write

    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def write_report(report: EvalReport, outdir) -> dict[str, Path]:
    """metrics.json, per_frame.csv and drift.png in `outdir`, each written atomically."""
    from longanim.engine.evaluation.drift_plot import drift_png

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "csv": out / "per_frame.csv", "plot": out / "drift.png"}
    write_atomic(paths["json"], (json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n").encode())
    write_atomic(paths["csv"], report.csv_text().encode())
    frames, de = report.drift_curve()
    acc = np.array([_nan(r["accuracy"]) for r in report.rows])
    write_atomic(paths["plot"], drift_png(frames, de, acc, report.summary.get("tolerance_delta_e", DEFAULT_TOLERANCE)))
    return paths
