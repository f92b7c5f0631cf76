"""Nuke's scene-linear pixels <-> the display sRGB the colorizer sees, both ways, explicitly.

Nuke composites in a scene-linear working space with premultiplied alpha; the colorizer
takes 8-bit display sRGB line art on white paper. `plate_to_display` and
`display_to_plate` are the two halves and use one `DisplayTransform` for the colour:

- `OcioTransform`: the script's OpenColorIO config, from its working space (e.g. ACEScg
  in an ACES/CG config, whose primaries are not Rec.709) to an sRGB-encoded display space
  and back; used when `PyOpenColorIO` is importable and a config is set;
- `EngineSrgb`: otherwise, the engine's own exact sRGB transfer function
  (`longanim.engine.sequences.colorspace`), which assumes Rec.709/sRGB primaries, so a
  plate colorized here and by `longanim colorize` on the same EXR gets the same pixels.

Both clip to [0, 1] on the way to display (no tone mapping: linear highlights above 1 come
back as 1). Alpha is never transformed: colour is unpremultiplied before the transfer and
premultiplied again after, and transparent pixels are paper white for the colorizer, as
the engine's pipeline treats them; the result carries the line art's own alpha.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from longanim.engine.errors import InputError

# sRGB-encoded display spaces as common configs name them, most specific first.
SRGB_SPACES = ("sRGB Encoded Rec.709 (sRGB)", "sRGB - Texture", "Utility - sRGB - Texture", "srgb_texture",
               "sRGB", "Output - sRGB", "sRGB - Display")


class DisplayTransform(Protocol):
    description: str

    def to_display(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 float32 straight linear colour -> display sRGB in [0, 1]."""

    def to_linear(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 float32 display sRGB in [0, 1] -> straight linear colour."""


class EngineSrgb:
    description = "sRGB (the engine's transform, Rec.709 primaries)"

    def to_display(self, rgb: np.ndarray) -> np.ndarray:
        from longanim.engine.sequences.colorspace import linear_to_srgb

        return linear_to_srgb(rgb)

    def to_linear(self, rgb: np.ndarray) -> np.ndarray:
        from longanim.engine.sequences.colorspace import srgb_to_linear

        return srgb_to_linear(rgb)


class OcioTransform:
    """Two CPU processors of one config: working space -> display space and back."""

    def __init__(self, config_path: str, working: str = "", display: str = ""):
        import PyOpenColorIO as ocio

        try:
            config = ocio.Config.CreateFromFile(config_path)
        except Exception as exc:  # OCIO raises its own Exception type for unreadable configs
            raise InputError(f"OpenColorIO config {config_path}: cannot load it: {exc}") from None
        working = working or _role(config, "scene_linear")
        display = display or next((n for n in SRGB_SPACES if config.getColorSpace(n) is not None), "")
        for what, name in (("working space", working), ("display space", display)):
            if not name or config.getColorSpace(name) is None:
                raise InputError(f"OpenColorIO config {config_path}: no {what} '{name}'; name one of its "
                                 "colour spaces on the node (display space knob) or in the script's settings")
        self._forward = config.getProcessor(working, display).getDefaultCPUProcessor()
        self._inverse = config.getProcessor(display, working).getDefaultCPUProcessor()
        self.description = f"OpenColorIO {config_path}: {working} <-> {display}"

    def to_display(self, rgb: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        self._forward.applyRGB(out)
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)

    def to_linear(self, rgb: np.ndarray) -> np.ndarray:
        out = np.clip(np.ascontiguousarray(rgb, dtype=np.float32), 0.0, 1.0).copy()
        self._inverse.applyRGB(out)
        return out


def _role(config: Any, role: str) -> str:
    space = config.getColorSpace(role)  # OCIO resolves role names to their colour space
    return space.getName() if space is not None else ""


def transform_for(config_path: str | None, working: str = "", display: str = "") -> DisplayTransform:
    """OpenColorIO with `config_path` when one is set and PyOpenColorIO imports; else the
    engine's sRGB (its description says why, for the node's status line)."""
    if not config_path:
        return EngineSrgb()
    try:
        import PyOpenColorIO  # noqa: F401
    except ImportError:
        fallback = EngineSrgb()
        fallback.description = (f"sRGB (the engine's transform): PyOpenColorIO is not importable, so the "
                                f"script's config {config_path} is not used")
        return fallback
    return OcioTransform(config_path, working, display)


def plate_to_display(pixels: np.ndarray, transform: DisplayTransform) -> tuple[np.ndarray, np.ndarray | None]:
    """Premultiplied scene-linear RGB(A) -> (HxWx3 uint8 display sRGB on white, straight
    alpha or None): what the colorizer is sent, and the alpha to give the result back."""
    x = np.nan_to_num(np.asarray(pixels, dtype=np.float32), nan=0.0, posinf=np.float32(65504), neginf=0.0)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {x.shape}")
    alpha = None
    if x.shape[2] == 4:
        alpha = np.clip(x[..., 3], 0.0, 1.0)
        safe = np.where(alpha > 0, alpha, np.float32(1))[..., None]
        color = np.where(alpha[..., None] > 0, x[..., :3] / safe, x[..., :3])
    else:
        color = np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x
    display = transform.to_display(color)
    if alpha is not None:
        display = display * alpha[..., None] + (1.0 - alpha[..., None])
    # Rounded as the engine's pipeline rounds (np.round), so the same EXR gives the same bytes
    # whether it comes through Nuke or `longanim colorize`, and the engine's cache serves both.
    return np.round(np.clip(display, 0.0, 1.0) * 255.0).astype(np.uint8), alpha


def display_to_plate(rgb: np.ndarray, alpha: np.ndarray | None, transform: DisplayTransform) -> np.ndarray:
    """HxWx3 display sRGB (uint8, or float in [0, 1]) and straight alpha -> float32
    premultiplied scene-linear RGBA (RGB when there is no alpha)."""
    x = np.asarray(rgb)
    if x.ndim != 3 or x.shape[2] < 3:
        raise InputError(f"expected an HxWx3 display image, got shape {x.shape}")
    x = x[..., :3].astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x[..., :3].astype(np.float32)
    linear = transform.to_linear(x)
    if alpha is None:
        return linear.astype(np.float32)
    a = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)
    if a.shape != x.shape[:2]:
        raise InputError(f"alpha of shape {a.shape} does not match the {x.shape[1]}x{x.shape[0]} image")
    return np.concatenate([linear * a[..., None], a[..., None]], axis=-1).astype(np.float32)
