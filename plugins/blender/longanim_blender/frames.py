"""Pixels between Blender's renders, the engine and the files written: numpy and zlib only
(no bpy), so the writer thread may run it and plain pytest can test it.

The engine's colorizers take opaque sRGB: transparent film counts as paper (white). A
Grease Pencil render with a transparent film should give back a cel layer with alpha.
An engine of protocol 1.1 or later is told the painted keyframe's alpha
(`keyframes[].alpha`) and sends each result with a fourth channel, the fills' coverage;
`coverage_cel` puts the strokes over those fills the way the engine does for its own files
(`engine.pipeline.with_coverage`), so inline and path jobs give the same cel. A 1.0 engine
ignores that alpha, so for one the keyframe's transparent background is sent as a matte
colour instead (MATTE, pure magenta, which line art and fills rarely use): the colorizer
paints the background regions with it like any other colour, and `cel_rgba` turns matte
back into transparency while keeping the strokes' own anti-aliased alpha.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np

MATTE = np.array([255, 0, 255], np.uint8)
MATTE_TOLERANCE = 60  # sum of |channel difference| (0-765) under which a fill is matte


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Straight-alpha uint8 RGBA over an opaque colour -> uint8 RGB."""
    if rgba.shape[-1] == 3:
        return np.ascontiguousarray(rgba)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + background.astype(np.float32) * (1.0 - a)
    return np.ascontiguousarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


def lineart_rgb(rgba: np.ndarray) -> np.ndarray:
    """What the engine sees of a line-art render: strokes over white paper."""
    return over(rgba, np.array([255, 255, 255], np.uint8))


def keyframe_rgb(rgba: np.ndarray) -> np.ndarray:
    """A painted keyframe: its transparent background becomes the matte colour."""
    return over(rgba, MATTE)


def cel_rgba(colored: np.ndarray, line: np.ndarray) -> np.ndarray:
    """The engine's opaque result back into a straight-alpha cel.

    `colored` (HxWx3 uint8) is fill x line art (the colorizer multiplies the lines over the
    fills); `line` is the line-art render (HxWx4 straight, or HxWx3 opaque). Where the
    line art lets enough paper through, the fill is colored / line-on-white; a matte fill is
    transparent, and a stroke over it keeps the stroke's colour and alpha."""
    rgb = colored[..., :3].astype(np.float32) / 255.0
    if line.shape[-1] == 3:
        return np.concatenate([colored[..., :3], np.full(colored.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    a = line[..., 3:4].astype(np.float32) / 255.0
    stroke = line[..., :3].astype(np.float32) / 255.0
    paper = stroke * a + (1.0 - a)  # the line art on white, as sent
    visible = paper.min(axis=-1, keepdims=True) > 0.15  # the fill shows through the line
    fill = np.where(visible, np.clip(rgb / np.maximum(paper, 1e-3), 0.0, 1.0), rgb)
    matte = np.abs(fill * 255.0 - MATTE.astype(np.float32)).sum(axis=-1, keepdims=True) < MATTE_TOLERANCE
    matte &= visible
    fill_a = np.where(matte, 0.0, 1.0).astype(np.float32)
    out_a = a + fill_a * (1.0 - a)
    premult = np.where(fill_a > 0, rgb, stroke * a)  # a fill: the engine's own pixel (line included)
    color = np.where(out_a > 0, premult / np.maximum(out_a, 1e-6), 0.0)
    color = np.where(fill_a > 0, rgb, color)
    out = np.concatenate([color, out_a], axis=-1)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def coverage_cel(colored: np.ndarray, line: np.ndarray) -> np.ndarray:
    """An engine result with the fills' coverage (HxWx4 uint8: colour, fill alpha) and the
    line-art render (HxWx4 straight) -> a straight-alpha uint8 cel: the strokes over the
    fills. Over an opaque fill the pixel is opaque and the engine's colour (lines included)
    stands; over film only the stroke remains, in its own colour under its own alpha."""
    color = colored[..., :3].astype(np.float32) / 255.0
    fill = colored[..., 3:4].astype(np.float32) / 255.0
    a = line[..., 3:4].astype(np.float32) / 255.0
    on_white = lineart_rgb(line).astype(np.float32) / 255.0  # what the engine was sent
    stroke = np.clip(on_white - (1.0 - a), 0.0, 1.0)  # the stroke's colour times its alpha
    alpha = np.where(fill > 0, 1.0 - (1.0 - a) * (1.0 - fill), a)
    premult = fill * color + (1.0 - fill) * stroke
    straight = np.where(alpha > 0, premult / np.maximum(alpha, 1e-6), color)
    out = np.concatenate([np.clip(straight, 0.0, 1.0), alpha], axis=-1)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def with_line_alpha(colored: np.ndarray, line: np.ndarray) -> np.ndarray:
    """A result without coverage from an engine that was given the keyframe's alpha (the
    backend was asked to keep the line art's alpha): the line art's alpha, as the engine
    writes its own files then."""
    return np.concatenate([colored[..., :3], line[..., 3:4]], axis=-1)


def confidence_grey(confidence: np.ndarray) -> np.ndarray:
    """HxW float32 confidence (1 = sure) -> HxW uint8 (white = sure, dark = review)."""
    return np.clip(np.round(np.asarray(confidence, np.float32) * 255.0), 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """8-bit PNG (grey, RGB or RGBA by the channel count), rows top to bottom."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w, c = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = np.empty((h, 1 + w * c), np.uint8)
    raw[:, 0] = 0  # filter: none
    raw[:, 1:] = pixels.reshape(h, w * c)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) \
        + chunk(b"IEND", b"")


def decode_png(data: bytes) -> np.ndarray:
    """The 8-bit PNGs `encode_png` writes (filter none), for tests and keyframe files written
    by this module; Blender's own loader reads everything else."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color_type = struct.unpack(">IIBB", body[:10])
            c = {0: 1, 4: 2, 2: 3, 6: 4}[color_type]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * c)
    if raw[:, 0].any():
        raise ValueError("decode_png reads unfiltered PNGs only")
    return raw[:, 1:].reshape(h, w, c) if c > 1 else raw[:, 1:].reshape(h, w)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear light (the piecewise IEC 61966-2-1 curve)."""
    v = np.asarray(values, np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def exr_pixels(rgba8: np.ndarray) -> np.ndarray:
    """A straight-alpha sRGB uint8 cel -> what an EXR holds: scene-linear RGB (sRGB
    primaries) premultiplied by alpha, as OpenEXR and Blender's compositor expect."""
    rgba = np.asarray(rgba8, np.float32) / 255.0
    if rgba.shape[-1] == 3:
        return np.concatenate([srgb_to_linear(rgba), np.ones(rgba.shape[:2] + (1,), np.float32)], axis=-1)
    alpha = rgba[..., 3:4]
    return np.concatenate([srgb_to_linear(rgba[..., :3]) * alpha, alpha], axis=-1)


EXR_ZIP_LINES = 16  # scanlines per block with ZIP compression (the format fixes it)


def encode_exr(rgba: np.ndarray) -> bytes:
    """HxWx4 float (linear, premultiplied) -> a scanline OpenEXR file, half float, ZIP
    compression, channels A, B, G, R. Written here (numpy + zlib) because Blender's Python
    has no EXR writer off the main thread, and the writer thread must not touch bpy."""
    pixels = np.ascontiguousarray(np.asarray(rgba, np.float32)[..., [3, 2, 1, 0]].astype("<f2"))
    h, w, _ = pixels.shape

    def attr(name: str, kind: str, value: bytes) -> bytes:
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value

    chlist = b"".join(c.encode() + b"\0" + struct.pack("<iB3xii", 1, 0, 1, 1) for c in "ABGR") + b"\0"
    window = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = (b"\x76\x2f\x31\x01" + struct.pack("<i", 2)
              + attr("channels", "chlist", chlist) + attr("compression", "compression", b"\x03")
              + attr("dataWindow", "box2i", window) + attr("displayWindow", "box2i", window)
              + attr("lineOrder", "lineOrder", b"\x00") + attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
              + attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
              + attr("screenWindowWidth", "float", struct.pack("<f", 1.0)) + b"\0")
    blocks = []
    for y in range(0, h, EXR_ZIP_LINES):
        rows = pixels[y:y + EXR_ZIP_LINES]  # each scanline: all of A, then B, G, R
        raw = np.ascontiguousarray(rows.transpose(0, 2, 1)).tobytes()
        data = _exr_zip(raw)
        blocks.append(struct.pack("<ii", y, len(data)) + data)
    offsets, pos = [], len(header) + 8 * len(blocks)
    for block in blocks:
        offsets.append(pos)
        pos += len(block)
    return header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(blocks)


def _exr_zip(raw: bytes) -> bytes:
    """OpenEXR's ZIP: bytes split into even and odd halves, delta-coded, then zlib; kept
    raw when that is not smaller (readers take a block of the raw size as uncompressed)."""
    b = np.frombuffer(raw, np.uint8)
    t = np.concatenate([b[0::2], b[1::2]])
    d = t.copy()
    d[1:] = (t[1:].astype(np.int16) - t[:-1].astype(np.int16) + 128) & 0xFF
    packed = zlib.compress(d.tobytes(), 4)
    return packed if len(packed) < len(raw) else raw


def frame_path(folder: str | os.PathLike, name: str, number: int, ext: str = "png") -> Path:
    return Path(folder) / f"{name}.{number:04d}.{ext}"


def frame_number(filename: str, name: str) -> int | None:
    """The number of `name.####.ext`, or None for any other file name."""
    middle = filename[len(name) + 1:].split(".")[0] if filename.startswith(name + ".") else ""
    return int(middle) if middle.isdigit() else None


def write_atomic(path: Path, data: bytes) -> None:
    """A hidden temporary file in the same folder, then a rename: a reader never sees half a frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
