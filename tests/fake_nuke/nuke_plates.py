"""Scene-linear EXR plates for the Nuke plug-in's tests, made from the synthetic shots and
written with the project's own image_files (float32, premultiplied RGBA, as Nuke writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.sequences.colorspace import srgb_to_linear
from longanim.engine.sequences.image_files import write_image

FIRST = 1001


def cut_alpha(height: int, width: int) -> np.ndarray:
    """Opaque, but for a transparent strip down the right edge and a half-transparent
    band beside it: both kinds of alpha a plate carries."""
    alpha = np.ones((height, width), np.float32)
    alpha[:, width - 8:] = 0.0
    alpha[:, width - 12:width - 8] = 0.5
    return alpha


def linear_rgba(display_rgb8: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """8-bit display sRGB -> premultiplied scene-linear float32 RGB(A)."""
    linear = srgb_to_linear(display_rgb8.astype(np.float32) / 255.0)
    if alpha is None:
        return linear
    return np.concatenate([linear * alpha[..., None], alpha[..., None]], axis=-1).astype(np.float32)


def write_plate(root: Path, frames: int, width: int = 160, height: int = 96, seed: int = 3,
                alpha: bool = True) -> dict:
    """`root/lineart/shot.####.exr` (frames FIRST...) and `root/key/key.FIRST.exr`, the colored
    first frame; returns the shot and the paths."""
    shot = make_shot(num_frames=frames, width=width, height=height, seed=seed)
    a = cut_alpha(height, width) if alpha else None
    for i in range(frames):
        write_image(root / "lineart" / f"shot.{FIRST + i:04d}.exr", linear_rgba(shot.lineart(i), a))
    key = root / "key" / f"key.{FIRST:04d}.exr"
    write_image(key, linear_rgba(shot.color(0), a))
    return {"shot": shot, "alpha": a, "lineart": (root / "lineart" / "shot.####.exr").as_posix(), "key": key}
