"""The demo run: a seeded synthetic shot -> files -> `colorize_shot` -> metrics -> contact sheet.

Used by `longanim demo` and by bench/bench_paint.py, so the figures a user sees after
installing are computed exactly as the benchmark's. Everything goes through real
files (the same PNG sequences a compositor would hand over), and the shot is rendered
one frame at a time, so a long shot never sits in memory.

Layout of OUTDIR:
    lineart/shot.####.png   the line art the colorizer gets
    truth/shot.####.png     ground-truth colors
    masks/shot.####.png     16-bit character ids (0 = background), for `longanim eval --masks`
    refs/shot.####.png      the colored reference keyframe(s): the truth at the shot's keyframes
    colorized/              `colorize_shot` output (frames, confidence/, report.json)
    metrics/                metrics.json, per_frame.csv, drift.png
    contact_sheet.png       line art / colorized / truth / confidence, evenly spaced frames
    demo.json               the figures below, written last
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Callable

import numpy as np

from longanim.engine.errors import InputError

MARKER = ".longanim-demo"  # says a folder is ours to clean on the next run
NAME = "shot"
SUBDIRS = ("lineart", "truth", "masks", "refs", "colorized", "colorized/confidence")
# Accuracy "after re-entry": the re-entering character's own pixels on the frames
# [back, back + REENTRY_WINDOW) after an absence of at least REENTRY_MIN_AWAY frames:
# the frames where only a long-term (global) memory can know its colors.
REENTRY_WINDOW = 100
REENTRY_MIN_AWAY = 150
REENTRY_DEFINITION = (f"flat-region accuracy over the re-entering character's pixels on frames back.."
                      f"back+{REENTRY_WINDOW - 1} after it was out of frame for >= {REENTRY_MIN_AWAY} frames "
                      "(keyframe frames excluded)")

Progress = Callable[[dict], None]


def run_demo(outdir, frames: int = 500, size: tuple[int, int] = (480, 270), seed: int = 0,
             backend: str = "paint", backend_options: dict | None = None, *, antialias: bool = False,
             broken_lines: bool = False, colored_lines: bool = False, keyframes=(0,), columns: int = 8,
             contact: bool = True, progress: Progress | None = None) -> dict:
    """Make, colorize and score one synthetic shot; returns the figures (also in demo.json).

    `progress` gets {"stage": "render" | "colorize" | "metrics", "done": n, "total": N}.
    """
    from longanim.engine.backends import create_backend
    from longanim.engine.evaluation.report import evaluate, write_report
    from longanim.engine.pipeline import colorize_shot
    from longanim.engine.evaluation.synthetic import FIRST_FRAME_NUMBER, make_shot

    width, height = size
    if frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    try:
        shot = make_shot(frames, width, height, seed, antialias=antialias, broken_lines=broken_lines,
                         colored_lines=colored_lines, keyframes=keyframes)
    except ValueError as exc:
        raise InputError(f"cannot make the synthetic shot: {exc}") from None
    engine = create_backend(backend, **(backend_options or {}))  # bad names and options fail before any work
    out = prepare_outdir(outdir)
    emit = progress or (lambda event: None)

    write_shot(shot, out, progress=emit)
    refs = write_refs(shot, out / "refs")
    emit({"stage": "colorize", "done": 0, "total": frames})

    def on_colorize(event: dict) -> None:
        if event.get("stage") == "frame":
            emit({"stage": "colorize", "done": event["done"], "total": event["total"]})

    report = colorize_shot(out / "lineart", refs, out / "colorized", backend=engine, progress=on_colorize)

    numbers = [i + FIRST_FRAME_NUMBER for i in range(frames)]
    pred = _counted((_rgb(_frame_path(out / "colorized", n)) for n in numbers), frames, emit)
    truth = (_rgb(_frame_path(out / "truth", n)) for n in numbers)
    masks = (_read(_frame_path(out / "masks", n)) for n in numbers)
    lines = (_line_mask(_frame_path(out / "lineart", n)) for n in numbers)
    scores = evaluate(pred, truth, masks, line_masks=lines, frame_numbers=numbers)
    reentry = reentry_accuracy(shot, out)
    scores.summary["accuracy_after_reentry"] = reentry["accuracy"]
    write_report(scores, out / "metrics")

    sheet_path = None
    if contact:
        sheet_path = write_demo_sheet(out, numbers, columns)

    s = scores.summary
    figures = {
        "frames": frames, "width": width, "height": height, "seed": seed, "backend": report.backend,
        "backend_options": dict(backend_options or {}), "antialias": antialias, "broken_lines": broken_lines,
        "colored_lines": colored_lines, "keyframes": report.keyframes,
        "accuracy": s.get("accuracy"), "accuracy_characters": s.get("accuracy_characters"),
        "accuracy_after_reentry": reentry["accuracy"], "reentries": reentry["reentries"],
        "psnr": s.get("psnr_mean"), "ssim": s.get("ssim_mean"), "delta_e": s.get("delta_e_mean"),
        "flicker_mae": s.get("flicker_mae_mean"), "flicker_fraction": s.get("flicker_fraction_mean"),
        "colorize_seconds": report.seconds, "fps": len(report.frames) / report.seconds if report.seconds else None,
        "needs_review": len(report.needs_review), "review_stretches": len(report.review_stretches),
        "definitions": {"accuracy_after_reentry": REENTRY_DEFINITION},
        "paths": {"outdir": str(out), "lineart": str(out / "lineart"), "truth": str(out / "truth"),
                  "refs": str(out / "refs"), "colorized": str(out / "colorized"),
                  "metrics": str(out / "metrics" / "metrics.json"),
                  "contact_sheet": str(sheet_path) if sheet_path else None},
    }
    _write_json(out / "demo.json", figures)
    return figures


def prepare_outdir(outdir) -> Path:
    """Create OUTDIR, or clean a previous demo run in it; refuse a folder that is not ours.

    Stale frames must go: a 60-frame run over a 500-frame one would otherwise colorize
    a line-art folder still holding frames 1061-1500.
    """
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise InputError(f"{out} is not empty and does not hold a previous demo run; choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    numbered = re.compile(rf"^\.?{NAME}\.\d+\.(png|exr|tif|tiff)(\.partial-[0-9a-f]+)?$")
    for sub in SUBDIRS:
        folder = out / sub
        if folder.is_dir():
            for p in folder.iterdir():
                if p.is_file() and numbered.match(p.name):
                    p.unlink()
    for stale in ("colorized/report.json", "demo.json"):
        (out / stale).unlink(missing_ok=True)
    return out


def write_shot(shot, root, *, indices=None, progress: Progress | None = None) -> None:
    """lineart/, truth/ and masks/ of every frame (or of frame `indices`), each file atomic;
    one frame in memory at a time."""
    from longanim.engine.sequences.image_files import write_image
    from longanim.engine.evaluation.synthetic import FIRST_FRAME_NUMBER

    root = Path(root)
    indices = range(shot.num_frames) if indices is None else list(indices)
    if progress is not None:
        progress({"stage": "render", "done": 0, "total": len(indices)})
    for done, i in enumerate(indices, 1):
        n = i + FIRST_FRAME_NUMBER
        write_image(_frame_path(root / "lineart", n), shot.lineart(i))
        write_image(_frame_path(root / "truth", n), shot.color(i))
        write_image(_frame_path(root / "masks", n), shot.character_mask(i).astype(np.uint16))
        if progress is not None:
            progress({"stage": "render", "done": done, "total": len(indices)})


def write_refs(shot, folder) -> list:
    """The truth at the shot's keyframes, as the colored references an artist would paint."""
    from longanim.engine.sequences.image_files import write_image
    from longanim.engine.pipeline import RefSpec
    from longanim.engine.evaluation.synthetic import FIRST_FRAME_NUMBER

    refs = []
    for i in shot.keyframes:
        n = i + FIRST_FRAME_NUMBER
        path = _frame_path(Path(folder), n)
        write_image(path, shot.color(i))
        refs.append(RefSpec(path, n))
    return refs


def reentry_accuracy(shot, outdir, *, colorized: str = "colorized", window: int = REENTRY_WINDOW,
                     min_away: int = REENTRY_MIN_AWAY) -> dict:
    """Accuracy over re-entering characters' pixels after long absences (see REENTRY_DEFINITION).

    Pixels are pooled over all qualifying re-entries; NaN when the shot has none
    (shots under 400 frames have no long absence).
    """
    from longanim.engine.evaluation.pixel_metrics import DEFAULT_TOLERANCE, countable_mask, delta_e_map
    from longanim.engine.evaluation.synthetic import FIRST_FRAME_NUMBER

    out = Path(outdir)
    keys = set(shot.keyframes)
    total = correct = 0
    rows = []
    for character, back, away in shot.reentries():
        if away < min_away:
            continue
        n_all = n_ok = 0
        for i in range(back, min(back + window, shot.num_frames)):
            if i in keys:
                continue
            n = i + FIRST_FRAME_NUMBER
            gt = _rgb(_frame_path(out / "truth", n))
            pred = _rgb(_frame_path(out / colorized, n))
            mask = _read(_frame_path(out / "masks", n))[..., 0] == character
            keep = countable_mask(gt, _line_mask(_frame_path(out / "lineart", n)), mask)
            ok = delta_e_map(pred, gt) <= DEFAULT_TOLERANCE
            n_all += int(keep.sum())
            n_ok += int((keep & ok).sum())
        rows.append({"character": character, "back": back + FIRST_FRAME_NUMBER, "away": away,
                     "pixels": n_all, "accuracy": n_ok / n_all if n_all else None})
        total += n_all
        correct += n_ok
    return {"accuracy": correct / total if total else float("nan"), "reentries": rows}


def error_split(shot, outdir, *, colorized: str = "colorized") -> dict:
    """Where a run's wrong pixels are, as shares of all counted pixels: on characters, on
    scenery a keyframe shows, on scenery no keyframe shows (a hill first seen during the pan,
    whose color no reference shows); the share of pixels the confidence map flags for review,
    and the share of wrong pixels among them. Tells a colorizer's mistakes on what the
    references show from guesses at what they do not."""
    from longanim.engine.backends.paint.colorizer import REVIEW_THRESHOLD
    from longanim.engine.evaluation.pixel_metrics import DEFAULT_TOLERANCE, countable_mask, delta_e_map
    from longanim.engine.pipeline import CONFIDENCE_DIR
    from longanim.engine.evaluation.synthetic import FIRST_FRAME_NUMBER

    out = Path(outdir)
    shown = set()
    for k in shot.keyframes:
        shown.update(np.unique(shot.scenery_map(k)).tolist())
    shown.discard(0)
    review = REVIEW_THRESHOLD * 255.0  # as the backend draws the line
    counted = wrong_char = wrong_shown = wrong_unseen = wrong_flagged = flagged = 0
    for i in range(shot.num_frames):
        n = i + FIRST_FRAME_NUMBER
        gt = _rgb(_frame_path(out / "truth", n))
        keep = countable_mask(gt, _line_mask(_frame_path(out / "lineart", n)))
        wrong = keep & (delta_e_map(_rgb(_frame_path(out / colorized, n)), gt) > DEFAULT_TOLERANCE)
        char = _read(_frame_path(out / "masks", n))[..., 0] > 0
        known = np.isin(shot.scenery_map(i), list(shown))
        unsure = _read(_frame_path(out / colorized / CONFIDENCE_DIR, n))[..., 0] < review
        counted += int(keep.sum())
        wrong_char += int((wrong & char).sum())
        wrong_shown += int((wrong & ~char & known).sum())
        wrong_unseen += int((wrong & ~char & ~known).sum())
        flagged += int((keep & unsure).sum())
        wrong_flagged += int((wrong & unsure).sum())
    total_wrong = wrong_char + wrong_shown + wrong_unseen
    return {"wrong_characters": wrong_char / counted, "wrong_scenery_shown": wrong_shown / counted,
            "wrong_scenery_unseen": wrong_unseen / counted, "flagged": flagged / counted,
            "wrong_flagged": wrong_flagged / total_wrong if total_wrong else float("nan")}


def write_demo_sheet(out: Path, numbers: list[int], columns: int = 8) -> Path:
    from longanim.engine.evaluation.contact_sheet import contact_sheet, pick_frames, write_contact_sheet

    def row(folder):
        return lambda n: _rgb(_frame_path(out / folder, n))

    rows = [("line art", row("lineart")), ("colorized", row("colorized")), ("truth", row("truth")),
            ("confidence", row("colorized/confidence"))]
    sheet = contact_sheet(rows, pick_frames(numbers, columns))
    return write_contact_sheet(out / "contact_sheet.png", sheet)


def _frame_path(folder: Path, n: int, ext: str = "png") -> Path:
    return Path(folder) / f"{NAME}.{n:04d}.{ext}"


def _read(path: Path) -> np.ndarray:
    from longanim.engine.sequences.image_files import read_image

    return read_image(path).pixels


def _rgb(path: Path) -> np.ndarray:
    from longanim.engine.sequences.colorspace import to_uint8_display
    from longanim.engine.sequences.image_files import read_image

    a = to_uint8_display(read_image(path))
    if a.shape[2] < 3:
        a = np.repeat(a[..., :1], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def _line_mask(path: Path) -> np.ndarray:
    from longanim.engine.evaluation.pixel_metrics import line_mask_from_lineart

    return line_mask_from_lineart(_rgb(path))


def _counted(frames, total: int, emit: Progress):
    emit({"stage": "metrics", "done": 0, "total": total})
    for done, frame in enumerate(frames, 1):
        yield frame
        emit({"stage": "metrics", "done": done, "total": total})


def _write_json(path: Path, data: dict) -> None:
    from longanim.engine.sequences.image_files import atomic_write

    text = (json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n").encode()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(text))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def format_figures(fig: dict) -> str:
    """The summary table the CLI prints."""
    def pct(v):
        return "n/a" if v is None or not math.isfinite(v) else f"{v:.2%}"

    def num(v, fmt):
        return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)

    after = pct(fig.get("accuracy_after_reentry"))
    if after == "n/a":
        after += f" (no absence of >= {REENTRY_MIN_AWAY} frames in this shot)"
    rows = [
        ("flat-region accuracy", pct(fig.get("accuracy"))),
        ("  on characters", pct(fig.get("accuracy_characters"))),
        ("  after re-entry", after),
        ("PSNR (dB)", num(fig.get("psnr"), ".2f")),
        ("SSIM", num(fig.get("ssim"), ".4f")),
        ("mean CIEDE2000", num(fig.get("delta_e"), ".3f")),
        ("flicker (levels)", num(fig.get("flicker_mae"), ".3f")),
        ("colorize fps", num(fig.get("fps"), ".1f") + " (PNG read/write included)"),
    ]
    return "\n".join(f"  {label:<22} {value}" for label, value in rows)
