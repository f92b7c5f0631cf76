"""Finding and reading a shot: an image sequence on disk, one image, or a video file.

Accepted sources for `open_sequence`:

- a folder holding exactly one numbered sequence of supported images (hidden files,
  other files and unnumbered images are ignored; several sequences is an error that
  lists them and asks for a pattern);
- a pattern: `shot.####.png` (one `#` per digit: `####` means 4-digit padding, `#`
  means unpadded; frames past the padding such as 10000 in a `####` sequence belong to
  it), `shot.%04d.png` (same as `####`) or `shot.%d.png` (any padding, found on disk);
- an existing image file: a one-frame sequence, numbered from its name (`shot.1040.png`
  is frame 1040; an unnumbered `ref.png` is frame 1). It does NOT pull in the rest of
  its sequence: render-farm tasks and users naming a file mean that file; pass the
  folder or a pattern for the whole shot;
- a video file (.mp4 .mov .avi .mkv .webm, via cv2), frames numbered from 1.

File names follow `name.####.ext` primarily; `name_####.ext` and `name####.ext` (After
Effects, or Blender's default `####.png`) are accepted too: the frame number is the last
run of digits right before the extension. Frame numbers are non-negative.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import IMAGE_EXTS, ImageData, file_kind, read_image

VIDEO_EXTS = frozenset({"mp4", "mov", "avi", "mkv", "webm"})

FRAME_RE = re.compile(r"^(?P<head>.*?)(?P<frame>\d+)\.(?P<ext>[A-Za-z][A-Za-z0-9]*)$")
_TOKEN_RE = re.compile(r"#+|%0?(\d*)d")
_VIDEO_CACHE = 4
_VIDEO_MAX_SKIP = 48  # decoding forward beats a keyframe seek for short hops
_MAX_SPAN = 1_000_000  # 11 hours at 24 fps: beyond this a gap list is a stray file, not a shot


@dataclass
class Sequence:
    """A shot's frames, read one at a time. `missing` lists the gaps between the first
    and last frame present; `source` names the shot in error messages."""

    name: str
    ext: str
    frames: list[int]
    width: int
    height: int
    padding: int
    missing: list[int] = field(default_factory=list)
    source: str = ""
    _frames: "_FrameSource | None" = field(default=None, repr=False, compare=False)

    def path_for(self, n: int) -> Path | None:
        return self._frames.path_for(n) if self._frames is not None else None

    def read(self, n: int) -> ImageData:
        if n not in self:
            raise InputError(f"{self.source}: frame {n} is not in the sequence "
                             f"(frames {_describe_frames(self.frames)})")
        img = self._frames.read(n)
        if img.pixels.shape[:2] != (self.height, self.width):
            where = self.path_for(n) or f"{self.source} frame {n}"
            raise InputError(f"{where}: size {img.pixels.shape[1]}x{img.pixels.shape[0]} differs from the "
                             f"sequence's {self.width}x{self.height} (first frame {self.frames[0]})")
        return img

    def __iter__(self):
        for n in self.frames:
            yield n, self.read(n)

    def __len__(self) -> int:
        return len(self.frames)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def is_video(self) -> bool:
        return isinstance(self._frames, _VideoFrames)

    def __contains__(self, n: int) -> bool:
        i = bisect.bisect_left(self.frames, n)
        return i < len(self.frames) and self.frames[i] == n


# --------------------------------------------------------------------------- parsing

def frame_number_from_path(path) -> int | None:
    m = FRAME_RE.match(Path(path).name)
    return int(m["frame"]) if m else None


def parse_frame_range(text: str) -> tuple[int, int]:
    """"1001-1100" or "1001" (one frame); frames are non-negative, start <= end."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not m:
        raise InputError(f"bad frame range '{text}': expected START-END or FRAME, e.g. 1001-1100 "
                         "(non-negative whole numbers)")
    start = int(m[1])
    end = int(m[2]) if m[2] is not None else start
    if end < start:
        raise InputError(f"bad frame range '{text}': end {end} is before start {start}")
    return start, end


def parse_ref_arg(text: str) -> tuple[Path, int | None]:
    """"ref.png:1040" -> (ref.png, 1040); "ref.png" -> (ref.png, None).

    Only a final ":<digits>" is a frame number, so Windows drives ("C:\\x\\ref.png:12")
    and folders containing ':' stay part of the path; a path that exists as written wins
    over the split. Negative frame numbers are refused.
    """
    text = str(text)
    if not text.strip():
        raise InputError("empty reference argument: expected PATH or PATH:FRAME")
    head, sep, tail = text.rpartition(":")
    if not sep or Path(text).exists():
        return Path(text), None
    if not tail.strip() and head:
        raise InputError(f"bad reference '{text}': missing frame number after ':' (expected PATH:FRAME)")
    if not re.fullmatch(r"\s*-?\d+\s*", tail):
        return Path(text), None
    if not head or re.fullmatch(r"[A-Za-z]", head):
        return Path(text), None  # "C:12" is a drive-relative path, not frame 12 of "C"
    frame = int(tail)
    if frame < 0:
        raise InputError(f"bad reference '{text}': frame numbers are non-negative")
    return Path(head), frame


# --------------------------------------------------------------------------- opening

def open_sequence(source: str | Path, frames: tuple[int, int] | None = None, *,
                  check: Callable[[Path], Path] | None = None) -> Sequence:
    """`check` is called on each frame's file right before it is read and returns the path
    to read (the engine's roots check: a frame swapped for a symlink out of them mid-job is
    refused, not read)."""
    path = Path(source)
    if frames is not None and frames[1] < frames[0]:
        raise InputError(f"bad frame range {frames[0]}-{frames[1]}: end is before start")
    if path.is_dir():
        found = _sequences_in_folder(path)
    elif path.is_file():
        ext = path.suffix[1:].lower()
        if ext in VIDEO_EXTS:
            return _open_video(path, frames)
        if ext not in IMAGE_EXTS:
            raise InputError(f"{path}: unsupported file type '.{ext}'; expected an image "
                             f"({', '.join(sorted(IMAGE_EXTS))}) or a video ({', '.join(sorted(VIDEO_EXTS))})")
        found = [_single_file(path)]
    elif path.exists():  # a FIFO, socket or device: reading it could block for good
        raise InputError(f"{path}: is {file_kind(path.stat().st_mode)}, not a regular file or folder; "
                         "only regular image or video files are read")
    elif _TOKEN_RE.search(path.name):
        found = _sequences_for_pattern(path)
    else:
        raise InputError(f"{path}: no such file or folder (expected a folder, an image, a video, "
                         "or a pattern like shot.####.png)")
    if len(found) > 1:
        listing = "; ".join(f"{f.pattern} ({_describe_frames(sorted(f.paths))})" for f in found)
        raise InputError(f"{path}: holds several image sequences: {listing}. "
                         f"Pass one as a pattern, e.g. {found[0].folder / found[0].pattern}")
    return _finish(found[0], frames, single=path.is_file(), check=check)


@dataclass
class _Found:
    folder: Path
    head: str
    tail: str  # ".png", as on disk
    padding: int
    paths: dict[int, Path]

    @property
    def pattern(self) -> str:
        return f"{self.head}{'#' * self.padding}{self.tail}"


def _finish(found: _Found, frames: tuple[int, int] | None, single: bool,
            check: Callable[[Path], Path] | None = None) -> Sequence:
    label = str(next(iter(found.paths.values())) if single else found.folder / found.pattern)
    numbers = sorted(found.paths)
    if frames is not None:
        lo, hi = frames
        numbers = [n for n in numbers if lo <= n <= hi]
        if not numbers:
            raise InputError(f"{label}: no frames in the requested range {lo}-{hi}; "
                             f"available: {_describe_frames(sorted(found.paths))}")
    if numbers[-1] - numbers[0] > _MAX_SPAN:
        raise InputError(f"{label}: frame numbers run from {numbers[0]} to {numbers[-1]}, more than {_MAX_SPAN} "
                         f"frames apart (a stray file such as {found.paths[numbers[-1]].name}?); "
                         "pass a frame range or a more specific pattern")
    src = _FileFrames({n: found.paths[n] for n in numbers}, check)
    first = src.read(numbers[0])
    name = found.head.rstrip("._- ") or found.folder.resolve().name or "frame"
    return Sequence(name=name, ext=found.tail[1:].lower(), frames=numbers, width=first.width,
                    height=first.height, padding=found.padding, missing=_gaps(numbers), source=label,
                    _frames=src)


def _single_file(path: Path) -> _Found:
    m = FRAME_RE.match(path.name)
    if m:
        return _Found(path.parent, m["head"], "." + m["ext"], len(m["frame"]), {int(m["frame"]): path})
    return _Found(path.parent, path.stem + ".", path.suffix, 4, {1: path})


def _sequences_in_folder(folder: Path) -> list[_Found]:
    try:
        names = sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_file())
    except OSError as e:
        raise InputError(f"{folder}: cannot list folder: {e.strerror or e}") from e
    groups: dict[tuple[str, str], dict[str, Path]] = {}
    loose = []
    for name in names:
        m = FRAME_RE.match(name)
        if m and m["ext"].lower() in IMAGE_EXTS:
            groups.setdefault((m["head"], "." + m["ext"]), {})[m["frame"]] = folder / name
        elif name.rpartition(".")[2].lower() in IMAGE_EXTS | VIDEO_EXTS:
            loose.append(name)
    found = [f for (head, tail), digits in sorted(groups.items())
             for f in _split_by_padding(folder, head, tail, digits)]
    if not found:
        extra = (f"; found only unnumbered images or videos ({', '.join(loose[:5])}): pass one by its path"
                 if loose else "")
        raise InputError(f"{folder}: no image sequence found (expected files named like shot.1001.png, "
                         f"formats: {', '.join(sorted(IMAGE_EXTS))}){extra}")
    return found


def _sequences_for_pattern(pattern: Path) -> list[_Found]:
    folder = pattern.parent
    tokens = list(_TOKEN_RE.finditer(pattern.name))
    if len(tokens) != 1:
        raise InputError(f"{pattern}: a pattern needs exactly one frame token (#### or %04d)")
    tok = tokens[0]
    head, tail = pattern.name[:tok.start()], pattern.name[tok.end():]
    if tail[1:].lower() not in IMAGE_EXTS or not tail.startswith("."):
        raise InputError(f"{pattern}: the pattern must end in the frame token and an image extension "
                         f"({', '.join(sorted(IMAGE_EXTS))}), e.g. shot.####.png")
    if tok[0].startswith("#"):
        padding: int | None = len(tok[0])
    else:
        padding = int(tok[1]) if tok[1] else None
    if not folder.is_dir():
        raise InputError(f"{pattern}: folder {folder} does not exist")
    rx = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z")
    digits = {}
    try:
        for e in os.scandir(folder):
            m = rx.match(e.name)
            if m and e.is_file():
                digits[m[1]] = folder / e.name
    except OSError as e:
        raise InputError(f"{folder}: cannot list folder: {e.strerror or e}") from e
    if padding is not None:
        digits = {s: p for s, p in digits.items() if _fits_padding(s, padding)}
    example = f"{head}{1001:0{padding or 4}d}{tail}"
    if not digits:
        raise InputError(f"{pattern}: no files match (expected names like {folder / example})")
    if padding is None:
        return _split_by_padding(folder, head, tail, digits)
    return [_Found(folder, head, tail, padding, {int(s): p for s, p in digits.items()})]


def _fits_padding(digits: str, padding: int) -> bool:
    return len(digits) == padding or (len(digits) > padding and digits[0] != "0")


def _split_by_padding(folder: Path, head: str, tail: str, digits: dict[str, Path]) -> list[_Found]:
    """Group frame strings into sequences: a leading zero fixes the padding, frames
    without one (1001, or 10000 past a #### padding) join the widest padding they fit."""
    fixed = sorted({len(s) for s in digits if len(s) > 1 and s[0] == "0"})
    by_pad: dict[int, dict[int, Path]] = {p: {} for p in fixed}
    unpadded: dict[int, Path] = {}
    for s, path in digits.items():
        fits = [p for p in fixed if _fits_padding(s, p)]
        (by_pad[max(fits)] if fits else unpadded)[int(s)] = path
    if unpadded:
        pad = min(len(str(n)) for n in unpadded)
        if pad in by_pad:
            by_pad[pad].update(unpadded)
        else:
            by_pad[pad] = unpadded
    return [_Found(folder, head, tail, p, frames) for p, frames in sorted(by_pad.items()) if frames]


def _gaps(numbers: list[int]) -> list[int]:
    present = set(numbers)
    return [n for n in range(numbers[0], numbers[-1] + 1) if n not in present] if numbers else []


def frame_ranges(numbers, most: int = 12) -> str:
    """Frame numbers as compact ranges, "1004, 1007-1009"; past `most` ranges the rest is
    counted, not listed, so a message stays one line."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:most])
    if len(runs) > most:
        rest = sum(b - a + 1 for a, b in runs[most:])
        text += f" and {rest} more frames in {len(runs) - most} more ranges"
    return text


def _describe_frames(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    if len(numbers) == 1:
        return f"{numbers[0]}"
    gaps = numbers[-1] - numbers[0] + 1 - len(numbers)
    return f"{numbers[0]}-{numbers[-1]}, {len(numbers)} frames" + (f", {gaps} missing" if gaps else "")


# --------------------------------------------------------------------------- frame sources

class _FrameSource:
    def path_for(self, n: int) -> Path | None:
        return None

    def read(self, n: int) -> ImageData:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _FileFrames(_FrameSource):
    def __init__(self, paths: dict[int, Path], check: Callable[[Path], Path] | None = None):
        self._paths = paths
        self._check = check

    def path_for(self, n: int) -> Path | None:
        return self._paths.get(n)

    def read(self, n: int) -> ImageData:
        path = self._paths[n]
        return read_image(path if self._check is None else self._check(path))


class _VideoFrames(_FrameSource):
    """Sequential decoding with a few cached frames: iterating is linear-time, and
    the pipeline's look-backs at recent frames do not seek."""

    def __init__(self, path: Path):
        import cv2

        self.path = path
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise InputError(f"{path}: cannot open video (unsupported codec or corrupt file)")
        self._next = 0  # 0-based index the next read() returns
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def count(self) -> int:
        import cv2

        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n > 0:
            return n
        # Some containers do not record a count: decode through once.
        self._rewind()
        n = 0
        while self._cap.grab():
            n += 1
        self._next = n
        return n

    def read(self, n: int) -> ImageData:
        idx = n - 1
        if idx in self._cache:
            self._cache.move_to_end(idx)
            return ImageData(self._cache[idx].copy(), "srgb")
        self._seek(idx)
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._next = -1
            raise InputError(f"{self.path}: cannot decode frame {n} (file truncated or corrupt?)")
        self._next = idx + 1
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        self._cache[idx] = rgb
        while len(self._cache) > _VIDEO_CACHE:
            self._cache.popitem(last=False)
        return ImageData(rgb.copy(), "srgb")

    def _seek(self, idx: int) -> None:
        import cv2

        if idx == self._next:
            return
        if self._next >= 0 and 0 < idx - self._next <= _VIDEO_MAX_SKIP:
            while self._next < idx and self._cap.grab():
                self._next += 1
            if self._next == idx:
                return
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        if int(round(self._cap.get(cv2.CAP_PROP_POS_FRAMES))) == idx:
            self._next = idx
            return
        # The backend could not seek exactly: reopen and decode forward, slow but right.
        self._rewind()
        while self._next < idx and self._cap.grab():
            self._next += 1

    def _rewind(self) -> None:
        import cv2

        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path))
        self._next = 0

    def close(self) -> None:
        self._cap.release()
        self._cache.clear()


def _open_video(path: Path, frames: tuple[int, int] | None) -> Sequence:
    src = _VideoFrames(path)
    try:
        total = src.count()
        if total <= 0:
            raise InputError(f"{path}: video has no frames")
        numbers = list(range(1, total + 1))
        if frames is not None:
            lo, hi = frames
            numbers = [n for n in numbers if lo <= n <= hi]
            if not numbers:
                raise InputError(f"{path}: no frames in the requested range {lo}-{hi}; "
                                 f"available: 1-{total} (video frames are numbered from 1)")
        first = src.read(numbers[0])
    except BaseException:
        src.close()
        raise
    return Sequence(name=path.stem, ext="png", frames=numbers, width=first.width, height=first.height,
                    padding=4, missing=[], source=str(path), _frames=src)
