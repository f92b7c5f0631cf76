"""The node's cache folder: the colorized frames and the record of what made them.

    CACHE/colorized.1001.exr ...   RGBA (premultiplied scene-linear, half) + a `confidence`
                                   layer (confidence.R/G/B: white = sure, dark = review)
    CACHE/run.json                 the settings key, frames and engine job; written last

Frames are written atomically (`image_files.atomic_write`), so the node's Read never sees
half a file while a run is writing; `run.json` comes only after every frame of the range,
so a folder without it (or with another key) is an interrupted or stale run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RESULT_NAME = "colorized"
MANIFEST = "run.json"
PADDING = 4


def result_pattern(cache_dir: str | Path) -> str:
    """The Read/Write file knob value: Nuke's `####` padding, forward slashes."""
    return (Path(cache_dir) / f"{RESULT_NAME}.{'#' * PADDING}.exr").as_posix()


def frame_path(pattern: str | Path, number: int) -> Path:
    """A `name.####.ext` (or `%04d`) pattern's file for one frame, as Nuke numbers it."""
    text = str(pattern)
    if "%0" in text:
        return Path(text % number)
    hashes = text.count("#")
    if not hashes:
        raise ValueError(f"{text}: no #### or %04d frame number in the file name")
    run = "#" * hashes
    return Path(text.replace(run, f"{number:0{hashes}d}", 1))


def write_frame(path: Path, rgba: np.ndarray, confidence: np.ndarray | None) -> None:
    """One result frame, half float, with the confidence map as its own layer."""
    import OpenEXR
    from longanim.engine.errors import LonganimError
    from longanim.engine.sequences.image_files import atomic_write

    pixels = np.ascontiguousarray(rgba, dtype=np.float16)
    name = "RGBA" if pixels.shape[2] == 4 else "RGB"
    channels: dict[str, Any] = {name: pixels}
    conf = np.ones(pixels.shape[:2], np.float16) if confidence is None else \
        np.ascontiguousarray(np.clip(confidence, 0.0, 1.0), dtype=np.float16)
    for c in "RGB":
        channels[f"confidence.{c}"] = conf
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}

    def encode(tmp: Path) -> None:
        try:
            OpenEXR.File(header, channels).write(str(tmp))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise LonganimError(f"{path}: cannot write EXR: {exc}") from exc

    atomic_write(Path(path), encode)


def read_confidence(path: Path) -> np.ndarray:
    """The confidence layer of a result frame (HxW float32)."""
    import OpenEXR

    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    return np.asarray(channels["confidence.R"].pixels, dtype=np.float32)


def write_manifest(cache_dir: Path, key: dict, job_id: str | None, cached: int) -> None:
    from longanim.engine.sequences.image_files import atomic_write

    text = json.dumps({"key": key, "job_id": job_id, "frames_cached": cached}, indent=2, sort_keys=True).encode()
    atomic_write(Path(cache_dir) / MANIFEST, lambda tmp: Path(tmp).write_bytes(text))


def clear_manifest(cache_dir: Path) -> None:
    """A run is starting: until it ends, the folder no longer counts as current."""
    try:
        (Path(cache_dir) / MANIFEST).unlink()
    except FileNotFoundError:
        pass


def is_current(cache_dir: str | Path, key: dict) -> bool:
    """Whether the folder holds a finished run made with these settings, every frame there."""
    folder = Path(cache_dir)
    try:
        saved = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or saved.get("key") != json.loads(json.dumps(key)):
        return False
    pattern = result_pattern(folder)
    return all(frame_path(pattern, n).is_file() for n in range(key["first"], key["last"] + 1))
