"""Rendering one Grease Pencil object's frames for the engine (main thread only: bpy).

`isolated_render` changes the scene just long enough to render: only this object visible,
fills hidden (or shown, for a painted keyframe), no lights, no shader effects, the
Workbench engine (Grease Pencil draws the same there; EEVEE compiles shaders for minutes
on software OpenGL), a transparent film, the Standard view transform (so colours come out
as painted) and 8-bit RGBA PNG; everything is put back afterwards, also on error.

Frames are rendered to a temporary PNG and read back with Blender's image loader (Blender
gives no pixels of its Render Result to Python), as straight-alpha uint8 RGBA, rows top
to bottom.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import bpy
import numpy as np


def _set(saved: list, owner, attr: str, value) -> None:
    saved.append((owner, attr, getattr(owner, attr)))
    setattr(owner, attr, value)


@contextlib.contextmanager
def isolated_render(scene, obj, fills: bool):
    saved: list = []
    try:
        render = scene.render
        _set(saved, render, "engine", "BLENDER_WORKBENCH")
        _set(saved, render, "film_transparent", True)
        _set(saved, render, "use_compositing", False)
        _set(saved, render, "use_sequencer", False)
        _set(saved, render, "filepath", render.filepath)
        _set(saved, render.image_settings, "file_format", "PNG")
        _set(saved, render.image_settings, "color_mode", "RGBA")
        _set(saved, render.image_settings, "color_depth", "8")
        _set(saved, render.image_settings, "compression", 15)
        _set(saved, scene.display_settings, "display_device", "sRGB")
        _set(saved, scene.view_settings, "view_transform", "Standard")
        _set(saved, scene.view_settings, "look", "None")
        _set(saved, scene.view_settings, "exposure", 0.0)
        _set(saved, scene.view_settings, "gamma", 1.0)
        _set(saved, scene.view_settings, "use_curve_mapping", False)
        for other in scene.objects:
            if other.name != obj.name and other.type != "CAMERA" and not other.hide_render:
                _set(saved, other, "hide_render", True)
        if obj.hide_render:
            _set(saved, obj, "hide_render", False)
        for effect in getattr(obj, "shader_effects", ()):
            _set(saved, effect, "show_render", False)
        for layer in getattr(obj.data, "layers", ()):
            if hasattr(layer, "use_lights"):
                _set(saved, layer, "use_lights", False)
        for slot in obj.material_slots:
            gp = getattr(slot.material, "grease_pencil", None) if slot.material else None
            if gp is not None:
                _set(saved, gp, "show_fill", bool(fills) and gp.show_fill)
        yield
    finally:
        for owner, attr, value in reversed(saved):
            with contextlib.suppress(Exception):
                setattr(owner, attr, value)


class LineartRenderer:
    """Renders frames of `obj` into memory; `timings` keeps (render_s, read_s) per frame."""

    def __init__(self, scene, obj, folder: str | None = None):
        self.scene, self.obj = scene, obj
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="longanim-lineart-")
        self.folder = folder or self._tmp.name
        self.timings: list[tuple[float, float]] = []

    def render(self, number: int, fills: bool = False, path: str | None = None) -> np.ndarray:
        """Frame `number` as HxWx4 uint8; the PNG stays at `path` when one is given (a
        path job's line art), else in this renderer's temporary folder."""
        scene = self.scene
        path = path or os.path.join(self.folder, f"{'fills' if fills else 'lines'}.{number:04d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        frame_before = scene.frame_current
        t0 = time.perf_counter()
        with isolated_render(scene, self.obj, fills):
            scene.render.filepath = path
            scene.frame_set(number)
            try:
                bpy.ops.render.render(write_still=True)
            finally:
                scene.frame_set(frame_before)
        t1 = time.perf_counter()
        rgba = read_image(path)
        self.timings.append((t1 - t0, time.perf_counter() - t1))
        return rgba

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def read_image(path: str) -> np.ndarray:
    """Any image Blender reads -> HxWx4 uint8 straight RGBA, top row first (its stored
    values: for an 8-bit PNG, the sRGB bytes)."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        image.colorspace_settings.is_data = True  # the stored values, no view conversion
        w, h = image.size
        if w == 0 or h == 0:
            raise ValueError(f"{path}: Blender could not read the image")
        buf = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(image)
    pixels = buf.reshape(h, w, 4)[::-1]
    return np.ascontiguousarray(np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8))
