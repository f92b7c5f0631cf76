"""Reading and writing single image files as compositors use them.

Pixels are always HxWxC (C in 1, 3, 4) in RGB(A) order, in the file's own storage
dtype: nothing here converts colour (see `colorspace`), so a read followed by a write
gives back the same values. PNG/TIFF/JPEG go through cv2 (BGR on its side), EXR through
the official `OpenEXR` package because opencv-python 5 is built without OpenEXR.

Writes are atomic: the image is written to a hidden temp file in the target folder whose
name (".shot.1001.png.partial-<hex>") can never match a `name.####.ext` pattern, synced,
then renamed over the target, so a reader scanning the folder during a render never sees
a half-written frame.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from longanim.engine.errors import InputError, LonganimError

EXR_EXTS = frozenset({"exr"})
CV2_EXTS = frozenset({"png", "tif", "tiff", "jpg", "jpeg"})
IMAGE_EXTS = EXR_EXTS | CV2_EXTS
# Called on each folder and file a write is about to use; raises to refuse it (the engine
# keeps a client's outputs inside its roots, the pipeline keeps them off its inputs).
ConfineFn = Callable[[Path], object]

_DEPTH_OF_DTYPE = {np.dtype(np.uint8): "8", np.dtype(np.uint16): "16",
                   np.dtype(np.float16): "half", np.dtype(np.float32): "float"}
_DTYPE_OF_DEPTH = {v: k for k, v in _DEPTH_OF_DTYPE.items()}
# What each format can store; cv2 silently falls back to 8 bits for anything else.
_DEPTHS_OF_EXT = {"png": ("8", "16"), "tif": ("8", "16", "float"), "tiff": ("8", "16", "float"),
                  "jpg": ("8",), "jpeg": ("8",), "exr": ("half", "float")}
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_SPECIAL_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_EXR_BEAUTY_LAYERS = ("combined", "beauty", "rgba", "rgb")


@dataclass
class ImageData:
    """One frame in storage form; `colorspace` says how to read the numbers."""

    pixels: np.ndarray
    colorspace: str  # "srgb": display-referred (PNG/TIFF/JPEG/video); "linear": scene-linear (EXR)

    @property
    def depth(self) -> str:
        return depth_of(self.pixels.dtype)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


def depth_of(dtype) -> str:
    try:
        return _DEPTH_OF_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise InputError(f"unsupported pixel dtype {np.dtype(dtype)}; "
                         "expected uint8, uint16, float16 or float32") from None


def ext_of(path) -> str:
    return Path(path).suffix[1:].lower()


def depths_for_ext(ext: str) -> tuple[str, ...]:
    """Depths a format can store, the first being the default for new files."""
    try:
        return _DEPTHS_OF_EXT[ext.lower().lstrip(".")]
    except KeyError:
        raise InputError(f"unsupported image format '.{ext}'; supported: "
                         + ", ".join(sorted(IMAGE_EXTS))) from None


def colorspace_for_ext(ext: str) -> str:
    return "linear" if ext.lower().lstrip(".") in EXR_EXTS else "srgb"


# --------------------------------------------------------------------------- reading

def read_image(path) -> ImageData:
    path = Path(path)
    ext = ext_of(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    if ext not in IMAGE_EXTS:
        raise InputError(f"{path}: unsupported image format '.{ext}'; supported: "
                         + ", ".join(sorted(IMAGE_EXTS)))
    try:
        data = read_file_bytes(path)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    if ext in EXR_EXTS:
        return ImageData(_read_exr(path, data), "linear")
    return ImageData(_read_cv2(path, data), "srgb")


def file_kind(mode: int) -> str:
    """What a file is, for messages: "a FIFO (named pipe)", "a folder", "a regular file"..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "a special file")


def _require_regular(mode: int, path: Path) -> None:
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: is {file_kind(mode)}, not a regular file; only regular files are read")


def open_regular(path) -> BinaryIO:
    """Open an input file for reading, refusing anything but a regular file.

    Reading a FIFO blocks until someone writes to it (forever, for a worker), a device
    may never end (/dev/zero) and a socket cannot be read at all. The file is opened
    without blocking and the open file itself is checked (fstat), so a FIFO swapped in
    after any earlier check is refused too, and every byte then comes from that file.
    """
    path = Path(path)
    _require_regular(os.stat(path).st_mode, path)  # a socket fails to open: name it first
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    try:
        _require_regular(os.fstat(fd).st_mode, path)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file_bytes(path) -> bytes:
    """A whole regular file (see `open_regular`), read up to the size it had when opened, so
    a file that keeps growing cannot make the read endless. What this cannot bound is a
    regular file on a network mount that stops answering: the read then waits as long as
    the mount does (Python has no timeout on reading a file short of another thread)."""
    with open_regular(path) as f:
        return f.read(os.fstat(f.fileno()).st_size)


def _read_cv2(path: Path, raw: bytes) -> np.ndarray:
    import cv2

    # Decoded from the bytes already read (imdecode, not imread): what is decoded is the file
    # that was checked, and non-ASCII paths work on Windows.
    data = np.frombuffer(raw, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"{path}: cannot decode .{ext_of(path)} image (empty, truncated or corrupt file)")
    if img.dtype == np.float64:
        img = img.astype(np.float32)
    if img.dtype not in _DEPTH_OF_DTYPE or img.dtype == np.float16:
        raise InputError(f"{path}: unsupported sample type {img.dtype}; "
                         "expected 8/16-bit integer or 32-bit float")
    if img.ndim == 2:
        return img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        return img
    if channels == 2:  # grey + alpha
        return np.ascontiguousarray(img[:, :, [0, 0, 0, 1]])
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    raise InputError(f"{path}: {channels} channels; expected grey, RGB or RGBA")


def _read_exr(path: Path, data: bytes) -> np.ndarray:
    if data[:4] != _EXR_MAGIC:
        raise InputError(f"{path}: not an OpenEXR file (bad magic number)")
    try:
        exr = _exr_from_bytes(data)
        header = exr.header()
        channels = {name: ch.pixels for name, ch in exr.channels().items()}
    except (RuntimeError, ValueError, TypeError) as e:
        raise InputError(f"{path}: cannot read EXR (truncated or corrupt file?): {e}") from e
    names = _pick_exr_channels(path, list(channels))
    planes = [channels[n] for n in names]
    if any(p is None or p.ndim != 2 or p.shape != planes[0].shape for p in planes):
        raise InputError(f"{path}: EXR channels {names} differ in size (subsampled channels are not supported)")
    dtype = np.float16 if all(p.dtype == np.float16 for p in planes) else np.float32
    pixels = np.stack([p.astype(dtype, copy=False) for p in planes], axis=-1)
    if len(names) == 2:  # Y + A
        pixels = pixels[:, :, [0, 0, 0, 1]]
    return _to_display_window(pixels, header)


def _exr_from_bytes(data: bytes):
    """An EXR decoded from bytes already read from the checked file. OpenEXR reads streams
    from 3.5 on; older versions take only a file name, so the bytes go through a private
    temp file (never the input's path, which may name another file by now)."""
    import tempfile

    import OpenEXR

    try:
        return OpenEXR.File(io.BytesIO(data), separate_channels=True)
    except TypeError:  # no stream constructor in this OpenEXR
        pass
    with tempfile.NamedTemporaryFile(suffix=".exr") as tmp:
        tmp.write(data)
        tmp.flush()
        return OpenEXR.File(tmp.name, separate_channels=True)


def _pick_exr_channels(path: Path, names: list[str]) -> list[str]:
    """Pick the colour channels: bare R,G,B[,A] or Y[,A], else the one RGB layer.

    Multi-layer files (Blender's "ViewLayer.Combined.R", Nuke's "beauty.R") are accepted
    when exactly one layer has R,G,B, or exactly one of those is the beauty/combined pass.
    """
    bare = {n.upper(): n for n in names if "." not in n}
    alpha = [bare["A"]] if "A" in bare else []
    if all(c in bare for c in "RGB"):
        return [bare["R"], bare["G"], bare["B"], *alpha]
    if "Y" in bare:
        return [bare["Y"], *alpha]

    layers: dict[str, dict[str, str]] = {}
    for n in names:
        prefix, _, chan = n.rpartition(".")
        if prefix:
            layers.setdefault(prefix, {})[chan.upper()] = n
    rgb_layers = sorted(p for p, ch in layers.items() if all(c in ch for c in "RGB"))
    if len(rgb_layers) > 1:
        beauty = [p for p in rgb_layers if p.rpartition(".")[2].lower() in _EXR_BEAUTY_LAYERS]
        if len(beauty) != 1:
            raise InputError(f"{path}: EXR holds several RGB layers ({', '.join(rgb_layers)}) and none "
                             "is clearly the beauty pass; write the image to the plain R,G,B,A channels")
        rgb_layers = beauty
    if not rgb_layers:
        raise InputError(f"{path}: EXR has no R,G,B or Y channels (found: {', '.join(sorted(names)) or 'none'})")
    ch = layers[rgb_layers[0]]
    alpha = [ch["A"]] if "A" in ch else alpha
    return [ch["R"], ch["G"], ch["B"], *alpha]


def _to_display_window(pixels: np.ndarray, header: dict) -> np.ndarray:
    """Place the data window on the display window, as compositors show an EXR.

    Autocropped renders store only the non-empty box; outside it the image is black
    and transparent, and overscan outside the display window is cropped away.
    """
    try:
        (dx0, dy0), (dx1, dy1) = (tuple(int(v) for v in c) for c in header["dataWindow"])
        (wx0, wy0), (wx1, wy1) = (tuple(int(v) for v in c) for c in header["displayWindow"])
    except (KeyError, TypeError, ValueError):
        return pixels
    if (dx0, dy0, dx1, dy1) == (wx0, wy0, wx1, wy1):
        return pixels
    out = np.zeros((wy1 - wy0 + 1, wx1 - wx0 + 1, pixels.shape[2]), dtype=pixels.dtype)
    x0, y0, x1, y1 = max(dx0, wx0), max(dy0, wy0), min(dx1, wx1), min(dy1, wy1)
    if x0 <= x1 and y0 <= y1:
        out[y0 - wy0:y1 - wy0 + 1, x0 - wx0:x1 - wx0 + 1] = \
            pixels[y0 - dy0:y1 - dy0 + 1, x0 - dx0:x1 - dx0 + 1]
    return out


# --------------------------------------------------------------------------- writing

def write_image(path, pixels, *, depth: str | None = None, confine: ConfineFn | None = None) -> None:
    """Store `pixels` (RGB(A), storage values) at `path`, atomically.

    `depth` defaults to the array's own ("8", "16", "half", "float"). A different depth
    rescales between the normalised ranges (uint8 255 == uint16 65535 == float 1.0) but
    never converts colour: turning display values into a linear EXR is
    `colorspace.from_display_float`'s job. `confine` as for `atomic_write`.
    """
    path = Path(path)
    ext = ext_of(path)
    allowed = depths_for_ext(ext)
    pixels = _as_hwc(np.asarray(pixels), path)
    depth = depth or depth_of(pixels.dtype)
    if depth not in allowed:
        raise InputError(f"{path}: .{ext} cannot store depth '{depth}'; use one of {', '.join(allowed)}")
    if ext in ("jpg", "jpeg") and pixels.shape[2] == 4:
        raise InputError(f"{path}: JPEG cannot store alpha; use .png or .exr")
    pixels = convert_depth(pixels, depth)
    if ext in EXR_EXTS:
        encode = lambda tmp: _write_exr(tmp, pixels, path)  # noqa: E731
    else:
        data = _encode_cv2(ext, pixels, path)
        encode = lambda tmp: _write_bytes(tmp, data)  # noqa: E731
    atomic_write(path, encode, confine)


def temp_path_for(path: Path) -> Path:
    """Hidden, and ending in neither a frame number nor an image extension."""
    return path.with_name(f".{path.name}.partial-{secrets.token_hex(6)}")


def atomic_write(path: Path, encode, confine: ConfineFn | None = None) -> None:
    """Run `encode(tmp)` into a temp file beside `path`, sync it, rename over `path`.

    On any failure the temp file is removed and `path` is untouched. `confine`, when
    given, is called on the target and its folder before the folder is made, and on the
    temp file (made with O_EXCL, so never a planted link) before anything is written to
    it. What it cannot catch is a folder swapped for a symlink in the instant between
    that last check and the write: checking and writing by name are two steps.
    """
    path = Path(path)
    if confine is not None:
        confine(path.parent)
        confine(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LonganimError(f"{path.parent}: cannot create output folder: {e.strerror or e}") from e
    tmp = None
    try:
        for _ in range(8):
            tmp = temp_path_for(path)
            try:
                # O_EXCL reserves the name; mode 0o666 lets the umask decide, as a plain open would.
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                tmp = None
        if tmp is None:
            raise LonganimError(f"{path}: cannot create a unique temp file")
        if confine is not None:
            confine(tmp)
        encode(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise LonganimError(f"{path}: cannot write: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def convert_depth(pixels: np.ndarray, depth: str) -> np.ndarray:
    """Rescale between normalised storage ranges; no colour conversion."""
    try:
        target = _DTYPE_OF_DEPTH[depth]
    except KeyError:
        raise InputError(f"unknown depth '{depth}'; expected one of 8, 16, half, float") from None
    src = np.dtype(pixels.dtype)
    if src == target:
        return pixels
    if src.kind == "f":
        x = np.nan_to_num(pixels.astype(np.float32), nan=0.0)
    elif src in (np.uint8, np.uint16):
        x = pixels.astype(np.float32) / np.iinfo(src).max
    else:
        raise InputError(f"unsupported pixel dtype {src}; expected uint8, uint16, float16 or float32")
    if target == np.float16:
        return np.clip(x, -65504.0, 65504.0).astype(target)  # beyond half's range is inf
    if target.kind == "f":
        return x.astype(target)
    peak = np.iinfo(target).max
    return np.rint(np.clip(x, 0.0, 1.0) * peak).astype(target)


def _as_hwc(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or 0 in pixels.shape[:2]:
        raise InputError(f"{path}: cannot write an array of shape {pixels.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")
    return pixels


def _encode_cv2(ext: str, pixels: np.ndarray, path: Path) -> bytes:
    import cv2

    channels = pixels.shape[2]
    if channels == 3:
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
    elif channels == 4:
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGRA)
    try:
        ok, buf = cv2.imencode("." + ext, np.ascontiguousarray(pixels))
    except cv2.error as e:
        raise LonganimError(f"{path}: cannot encode .{ext}: {e}") from e
    if not ok:
        raise LonganimError(f"{path}: cannot encode .{ext}")
    return buf.tobytes()


def _write_bytes(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)


def _write_exr(tmp: Path, pixels: np.ndarray, target: Path) -> None:
    import OpenEXR

    name = {1: "Y", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    data = pixels[:, :, 0] if name == "Y" else pixels
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    try:
        OpenEXR.File(header, {name: np.ascontiguousarray(data)}).write(str(tmp))
    except (RuntimeError, ValueError, TypeError) as e:
        raise LonganimError(f"{target}: cannot write EXR: {e}") from e


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; folders cannot be opened on Windows, hence best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
