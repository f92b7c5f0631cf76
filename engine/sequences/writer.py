"""Writing a shot as a `name.####.ext` image sequence, one atomic file per frame.

Output frame n is written for input frame n, so the result lines up with the source
in any compositor; a re-rendered frame replaces the old file in one rename.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from longanim.engine.sequences.colorspace import from_display_float
from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import ConfineFn, colorspace_for_ext, depths_for_ext, write_image


class SequenceWriter:
    """`colorspace` defaults to the format's own ("linear" for EXR, else "srgb");
    `depth` to the format's first (8-bit for PNG/TIFF/JPEG, half for EXR); `confine`, if
    given, checks each folder and file before it is written (see `atomic_write`)."""

    def __init__(self, outdir, name: str, ext: str = "png", *, depth: str | None = None,
                 padding: int = 4, colorspace: str | None = None, confine: ConfineFn | None = None):
        self.outdir = Path(outdir)
        self.name = str(name)
        self.ext = str(ext).lower().lstrip(".")
        allowed = depths_for_ext(self.ext)
        self.depth = str(depth) if depth is not None else allowed[0]
        if self.depth not in allowed:
            raise InputError(f".{self.ext} output cannot store depth '{self.depth}'; use one of {', '.join(allowed)}")
        native = colorspace_for_ext(self.ext)
        self.colorspace = colorspace or native
        if self.colorspace != native:
            raise InputError(f".{self.ext} output is {native} (EXR is scene-linear, other formats display sRGB); "
                             f"colorspace '{self.colorspace}' is not supported for it")
        if not self.name or any(c in self.name for c in "/\\\0"):
            raise InputError(f"bad output name '{self.name}': expected a file name without folders")
        if not isinstance(padding, int) or not 1 <= padding <= 12:
            raise InputError(f"bad frame padding {padding!r}: expected 1-12 digits")
        self.padding = padding
        self.confine = confine
        for folder in (self.outdir, *self.outdir.parents):
            if folder.exists() or folder.is_symlink():
                if not folder.is_dir():
                    raise InputError(f"output folder {self.outdir}: {folder} is a file, not a folder; choose another")
                break

    def path_for(self, n: int) -> Path:
        if n < 0:
            raise InputError(f"frame numbers are non-negative, got {n}")
        return self.outdir / f"{self.name}.{n:0{self.padding}d}.{self.ext}"

    def write(self, n: int, pixels) -> Path:
        """Store storage-form pixels (already in this writer's colour space)."""
        path = self.path_for(n)
        write_image(path, pixels, depth=self.depth, confine=self.confine)
        return path

    def write_display(self, n: int, rgb_display, alpha=None) -> Path:
        """Convert a display sRGB frame (uint8 or float [0, 1], plus optional HxW alpha
        in [0, 1]) to this writer's depth and colour space, and write it."""
        rgb = np.asarray(rgb_display)
        if rgb.ndim != 3 or rgb.shape[2] not in (1, 3, 4):
            raise InputError(f"expected an HxWx3 display image, got shape {rgb.shape}")
        if alpha is not None:
            a = np.asarray(alpha)
            if a.ndim == 3 and a.shape[2] == 1:
                a = a[:, :, 0]
            if a.shape != rgb.shape[:2]:
                raise InputError(f"alpha of shape {a.shape} does not match the {rgb.shape[1]}x{rgb.shape[0]} image")
            if a.dtype in (np.uint8, np.uint16):
                a = a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)
            if rgb.shape[2] == 1:
                rgb = np.repeat(rgb, 3, axis=2)
            return self.write(n, from_display_float(rgb[:, :, :3], self.depth, self.colorspace,
                                                    alpha=a.astype(np.float32)))
        return self.write(n, from_display_float(rgb, self.depth, self.colorspace))
