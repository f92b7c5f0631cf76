"""A contact sheet: a few evenly spaced frames of a shot, one row per kind of image.

One PNG an artist or reviewer opens to judge a whole run at a glance (line art over
colorized over truth over confidence). Drawn with cv2, no plotting dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from longanim.engine.errors import InputError

LABEL_WIDTH = 110  # left column holding the row names
HEADER = 26  # band above the thumbnails holding the frame numbers
PAD = 4  # gap around and between thumbnails
BACKGROUND, INK = (40, 40, 40), (235, 235, 235)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def pick_frames(frames: Sequence[int], columns: int = 8) -> list[int]:
    """`columns` evenly spaced frame numbers from first to last (all of them when fewer)."""
    frames = list(frames)
    if not frames:
        raise InputError("no frames to put on a contact sheet")
    if len(frames) <= columns:
        return frames
    idx = np.round(np.linspace(0, len(frames) - 1, columns)).astype(int)
    return [frames[i] for i in idx]


def thumb_size(width: int, height: int, thumb_width: int) -> tuple[int, int]:
    """Thumbnails never upscale: a small shot is shown at its own size."""
    w = min(width, thumb_width)
    return w, max(1, int(round(height * w / width)))


def sheet_size(width: int, height: int, columns: int, rows: int, thumb_width: int = 240) -> tuple[int, int]:
    """(width, height) of the sheet for frames of `width`x`height`."""
    tw, th = thumb_size(width, height, thumb_width)
    return LABEL_WIDTH + columns * (tw + PAD) + PAD, HEADER + rows * (th + PAD) + PAD


def contact_sheet(rows: Sequence[tuple[str, Callable[[int], np.ndarray]]], frames: Sequence[int],
                  thumb_width: int = 240) -> np.ndarray:
    """HxWx3 uint8 RGB sheet: `rows` are (label, frame number -> HxWx3 uint8 RGB image);
    each row is fetched lazily so only one full-size frame is held at a time."""
    if not rows or not frames:
        raise InputError("a contact sheet needs at least one row and one frame")
    first = rows[0][1](frames[0])
    height, width = first.shape[:2]
    tw, th = thumb_size(width, height, thumb_width)
    sw, sh = sheet_size(width, height, len(frames), len(rows), thumb_width)
    sheet = np.empty((sh, sw, 3), np.uint8)
    sheet[:] = BACKGROUND
    for c, number in enumerate(frames):
        x = LABEL_WIDTH + PAD + c * (tw + PAD)
        _text(sheet, str(number), x + 2, HEADER - 8, 0.5)
    for r, (label, fetch) in enumerate(rows):
        y = HEADER + PAD + r * (th + PAD)
        _text(sheet, label, 8, y + th // 2 + 5, 0.45)
        for c, number in enumerate(frames):
            image = first if (r, c) == (0, 0) else fetch(number)
            if image.shape[:2] != (height, width):
                raise InputError(f"{label} frame {number} is {image.shape[1]}x{image.shape[0]}, "
                                 f"expected {width}x{height}")
            x = LABEL_WIDTH + PAD + c * (tw + PAD)
            sheet[y:y + th, x:x + tw] = _thumb(image, tw, th)
    return sheet


def write_contact_sheet(path, sheet: np.ndarray) -> Path:
    """Atomic PNG write (temp file + rename, through the project's image writer)."""
    from longanim.engine.sequences.image_files import write_image

    path = Path(path)
    write_image(path, sheet)
    return path


def _thumb(image: np.ndarray, w: int, h: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.shape[1] == w and image.shape[0] == h:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float) -> None:
    cv2.putText(img, text, (x, y), FONT, scale, INK, 1, cv2.LINE_AA)
