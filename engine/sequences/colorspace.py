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

The transfer functions cost ~115 ms a 1080p frame (a power per value). Half floats have
only 65,536 values and 8-bit display values 256, so for those the function is looked up
in a table made from the function itself, once: the same numbers, bit for bit, in a
tenth of the time. Float32 values (float EXR, unpremultiplied colours at soft alpha
edges) go through the function.
"""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache(maxsize=1)
def _half_to_display() -> np.ndarray:
    """`to_display_float`'s colour for every half float, by its 16 bits."""
    return linear_to_srgb(_finite(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)))


@lru_cache(maxsize=2)
def _display8_to_linear(dtype=np.float32) -> np.ndarray:
    """`from_display_float`'s linear colour for every 8-bit display value, stored as `dtype`."""
    return srgb_to_linear(np.arange(256, dtype=np.float32) / np.float32(255)).astype(dtype)


def to_display_float(img: ImageData) -> np.ndarray:
    """HxWxC float32 display sRGB in [0, 1], same channel count; alpha only clipped."""
    pixels = img.pixels
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels.astype(np.float32) / np.float32(np.iinfo(pixels.dtype).max)
    if img.colorspace == "srgb":
        return _clip01(pixels)
    if img.colorspace != "linear":
        raise InputError(f"unknown colorspace '{img.colorspace}'; expected 'srgb' or 'linear'")
    half = pixels.dtype == np.float16
    if half and pixels.shape[-1] != 4:
        return np.take(_half_to_display(), pixels.view(np.uint16))
    if half:
        # Where alpha is 0 or 1 the colour is the stored half itself (divided by 1, or kept):
        # looked up; only the soft edges between are divided and computed.
        out = np.empty(pixels.shape, np.float32)
        out[..., 3:] = np.clip(_finite(pixels[..., 3:]), 0.0, 1.0)
        alpha = out[..., 3]
        out[..., :3] = np.take(_half_to_display(), pixels[..., :3].view(np.uint16))
        soft = (alpha > 0) & (alpha < 1)
        if soft.any():
            out[soft, :3] = linear_to_srgb(_finite(pixels[soft, :3]) / alpha[soft][:, None])
        return out
    x = _finite(pixels)
    if x.shape[-1] != 4:
        return linear_to_srgb(x)
    alpha = np.clip(x[..., 3:], 0.0, 1.0)
    safe = np.where(alpha > 0, alpha, np.float32(1))
    color = np.where(alpha > 0, x[..., :3] / safe, x[..., :3])
    return np.concatenate([linear_to_srgb(color), alpha], axis=-1)


def _finite(pixels: np.ndarray) -> np.ndarray:
    """Float32 with NaN as 0 and infinities at half's largest value (what an EXR means by them)."""
    return np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=np.float32(65504), neginf=0.0)


def to_uint8_display(img: ImageData) -> np.ndarray:
    return quantize(to_display_float(img), np.uint8)


def from_display_float(rgb_or_rgba, depth: str, colorspace: str, alpha=None) -> np.ndarray:
    """Display sRGB (float [0, 1] or uint8/uint16) back to storage values; `alpha` (HxW
    float [0, 1]), if given, is added as a fourth channel (the colour may stay 8-bit then).

    ("8" | "16" | "half" | "float", "srgb") scales and rounds; ("half" | "float",
    "linear") linearises the colour and premultiplies it by alpha, for EXR.
    """
    x = np.asarray(rgb_or_rgba)
    if colorspace == "linear" and x.dtype == np.uint8 and depth in ("half", "float") and x.ndim == 3 \
            and x.shape[2] in (3, 4) and (alpha is None or x.shape[2] == 3):
        # 8-bit display colour: its linear value looked up (the same numbers as computed).
        stored = np.float16 if depth == "half" else np.float32
        if x.shape[2] == 3 and alpha is None:
            return np.take(_display8_to_linear(stored), x)
        a = x[..., 3:].astype(np.float32) / np.float32(255) if alpha is None else \
            _clip01(np.asarray(alpha).reshape(x.shape[:2] + (1,)))
        out = np.empty(x.shape[:2] + (4,), stored)
        np.multiply(np.take(_display8_to_linear(), x[..., :3]), a, out=out[..., :3], casting="unsafe")
        out[..., 3:] = a
        return out
    if alpha is not None:
        if x.dtype in (np.uint8, np.uint16):
            x = x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
        if x.ndim == 3 and x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
        x = np.concatenate([np.asarray(x[..., :3], np.float32), np.asarray(alpha, np.float32).reshape(x.shape[:2] + (1,))],
                           axis=-1)
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
