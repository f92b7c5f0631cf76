"""Explicit conversion between storage values and the display-referred sRGB the model sees.

The model works on display images: float32 sRGB in [0, 1]. PNG, TIFF, JPEG and video
frames already are display-referred sRGB and only need scaling. EXR is treated as
scene-linear with Rec.709/sRGB primaries and is converted with the exact piecewise sRGB
transfer function (IEC 61966-2-1). There is no tone mapping and no OCIO: linear values
above 1 clip to white on the way to display, so highlights do not survive a round trip
through the model. Float TIFFs are taken as display-referred like integer TIFFs,
because nothing in the file says otherwise.

Alpha is never gamma-converted. EXR colour is premultiplied by alpha (the OpenEXR
convention, and what Nuke and Blender write), so it is unpremultiplied before the
transfer function and premultiplied again on the way back; pixels with zero alpha keep
their stored colour on the way to display and come back black.
"""

from __future__ import annotations

import numpy as np

from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import ImageData

_SRGB_KNEE = 0.04045
_LINEAR_KNEE = 0.0031308


def srgb_to_linear(x) -> np.ndarray:
    """Display sRGB in [0, 1] (clipped; NaN -> 0) to linear, float32."""
    x = _clip01(x)
    curve = np.power((np.maximum(x, _SRGB_KNEE) + np.float32(0.055)) / np.float32(1.055), np.float32(2.4))
    return np.where(x <= _SRGB_KNEE, x / np.float32(12.92), curve).astype(np.float32)


def linear_to_srgb(x) -> np.ndarray:
    """Linear to display sRGB, float32; values outside [0, 1] clip (no tone mapping)."""
    x = _clip01(x)
    curve = np.float32(1.055) * np.power(np.maximum(x, _LINEAR_KNEE), np.float32(1 / 2.4)) - np.float32(0.055)
    return np.where(x <= _LINEAR_KNEE, x * np.float32(12.92), curve).astype(np.float32)


def to_display_float(img: ImageData) -> np.ndarray:
    """HxWxC float32 display sRGB in [0, 1], same channel count; alpha only clipped."""
    pixels = img.pixels
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels.astype(np.float32) / np.float32(np.iinfo(pixels.dtype).max)
    if img.colorspace == "srgb":
        return _clip01(pixels)
    if img.colorspace != "linear":
        raise InputError(f"unknown colorspace '{img.colorspace}'; expected 'srgb' or 'linear'")
    x = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=np.float32(65504), neginf=0.0)
    if x.shape[-1] != 4:
        return linear_to_srgb(x)
    alpha = np.clip(x[..., 3:], 0.0, 1.0)
    safe = np.where(alpha > 0, alpha, np.float32(1))
    color = np.where(alpha > 0, x[..., :3] / safe, x[..., :3])
    return np.concatenate([linear_to_srgb(color), alpha], axis=-1)


def to_uint8_display(img: ImageData) -> np.ndarray:
    return quantize(to_display_float(img), np.uint8)


def from_display_float(rgb_or_rgba, depth: str, colorspace: str) -> np.ndarray:
    """Display sRGB (float [0, 1] or uint8/uint16) back to storage values.

    ("8" | "16" | "half" | "float", "srgb") scales and rounds; ("half" | "float",
    "linear") linearises the colour and premultiplies it by alpha, for EXR.
    """
    x = np.asarray(rgb_or_rgba)
    if colorspace == "srgb" and (depth, x.dtype) in (("8", np.uint8), ("16", np.uint16)):
        return x  # already stored as displayed: no round trip through float
    if x.dtype in (np.uint8, np.uint16):
        x = x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
    x = _clip01(x)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an HxWx3 or HxWx4 display image, got shape {x.shape}")

    if colorspace == "srgb":
        if depth == "8":
            return quantize(x, np.uint8)
        if depth == "16":
            return quantize(x, np.uint16)
        if depth in ("half", "float"):
            return x.astype(np.float16 if depth == "half" else np.float32)
    elif colorspace == "linear":
        if depth not in ("half", "float"):
            raise InputError(f"depth '{depth}' cannot hold scene-linear values; use 'half' or 'float' (EXR)")
        if x.shape[2] == 4:
            alpha = x[..., 3:]
            x = np.concatenate([srgb_to_linear(x[..., :3]) * alpha, alpha], axis=-1)
        else:
            x = srgb_to_linear(x)
        return x.astype(np.float16 if depth == "half" else np.float32)
    else:
        raise InputError(f"unknown colorspace '{colorspace}'; expected 'srgb' or 'linear'")
    raise InputError(f"unknown depth '{depth}'; expected one of 8, 16, half, float")


def quantize(x: np.ndarray, dtype) -> np.ndarray:
    """[0, 1] float to integer code values, rounding to nearest (255 * 0.5 -> 128)."""
    peak = np.iinfo(dtype).max
    return np.floor(_clip01(x) * np.float32(peak) + np.float32(0.5)).astype(dtype)


def _clip01(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
