"""Confines the paths clients send to the directories the engine was started with.

A client names files on shared storage; without this, any client could read or
overwrite anything the engine's user can. Paths must be absolute, may not
contain `..`, and must stay inside a root after every symlink is resolved.
Inputs must be regular files or folders (a FIFO would block a worker for good), no
output may be an input, weights folders lie inside --weights-roots, and the engine,
not the client, picks the device.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath
from typing import Iterable

from longanim.protocol.messages import ProtocolError, invalid

# Backend options that name a file or folder on the engine's machine (the longanimation
# backend's weights folder): they must lie inside --weights-roots.
PATH_OPTIONS = frozenset({"weights"})
# Longer paths fail in the operating system (ENAMETOOLONG); refused up front instead.
MAX_PATH_BYTES, MAX_NAME_BYTES = 4000, 255


def forbidden(message: str) -> ProtocolError:
    return ProtocolError("forbidden", message)


class Roots:
    """The directories client paths must stay in (`--roots`)."""

    flag, kind, accepts = "--roots", "roots", "file paths"

    def __init__(self, roots: Iterable[str | os.PathLike]):
        self.roots = [Path(os.path.realpath(r)) for r in roots]

    def __bool__(self) -> bool:
        return bool(self.roots)

    def _check_syntax(self, path: str) -> PurePath:
        if not self.roots:
            raise forbidden(f"this engine was started without {self.flag}, so it accepts no {self.accepts}")
        if "\x00" in path:
            raise forbidden("path contains a NUL character")
        pure = PurePath(path)
        if not pure.is_absolute():
            raise forbidden(f"path {path!r} must be absolute (the engine has no working directory for you)")
        if ".." in pure.parts:
            raise forbidden(f"path {path!r} contains '..'")
        if len(os.fsencode(path)) > MAX_PATH_BYTES or any(len(os.fsencode(p)) > MAX_NAME_BYTES for p in pure.parts):
            raise ProtocolError("invalid_content", f"path {path[:80]!r}... is longer than this system allows "
                                f"({MAX_PATH_BYTES} bytes, {MAX_NAME_BYTES} a name)")
        return pure

    def _inside(self, real: Path, original: str) -> Path:
        for root in self.roots:
            if real == root or root in real.parents:
                return real
        raise forbidden(f"path {original!r} resolves to {str(real)!r}, outside the engine's {self.kind}")

    def resolve_input(self, path: str) -> Path:
        """An existing regular file or directory, symlinks resolved and confined."""
        pure = self._check_syntax(path)
        real = Path(os.path.realpath(pure))
        self._inside(real, path)
        if not real.exists():
            raise ProtocolError("not_found", f"input {path!r} does not exist")
        _refuse_special_file(real, path)
        return real

    def resolve_pattern(self, pattern: str) -> Path:
        """A sequence pattern (line.####.png, line.%04d.png): its directory must exist and be
        confined; files it matches are checked again one by one when opened."""
        pure = self._check_syntax(pattern)
        if Path(pure).exists():
            return self.resolve_input(pattern)
        parent = Path(os.path.realpath(pure.parent))
        self._inside(parent, pattern)
        if not parent.is_dir():
            raise ProtocolError("not_found", f"directory of {pattern!r} does not exist")
        return parent / pure.name

    def resolve_output(self, path: str) -> Path:
        """An output directory or file: existing parts are resolved, so a symlink planted
        inside a root cannot redirect writes outside it."""
        pure = self._check_syntax(path)
        real = Path(os.path.realpath(pure))
        return self._inside(real, path)

    def check_file(self, path: Path) -> Path:
        """Re-check one concrete file (e.g. a frame matched by a pattern) just before use."""
        real = Path(os.path.realpath(path))
        return self._inside(real, str(path))

    def check_input_file(self, path: Path) -> Path:
        """An input file at the moment it is opened: symlinks resolved and inside a root.
        The resolved path is returned so the reader opens what was checked, not a link that
        may be swapped after (a frame replaced by a symlink mid-job). That it is a regular
        file is the reader's to check, on the file it opened (`open_regular`)."""
        return self.check_file(path)

    def resolve_job(self, lineart: str, refs: list[dict], output: str) -> dict:
        """A path job's line art, keyframes and output folder, each confined (the output's
        confidence/ folder too), with no output folder that is or holds an input."""
        from longanim.engine.pipeline import CONFIDENCE_DIR

        paths = {
            "lineart": self.resolve_pattern(lineart),
            "refs": [(self.resolve_input(r["path"]), r.get("frame")) for r in refs],
            "output": self.resolve_output(output),
        }
        self.resolve_output(str(paths["output"] / CONFIDENCE_DIR))
        _refuse_output_over_inputs(paths)
        return paths


class WeightsRoots(Roots):
    """The directories weights folders named by clients must lie in (`--weights-roots`): the
    operator's model store. Files inside a weights folder are the operator's, not checked."""

    flag, kind, accepts = "--weights-roots", "weights roots (--weights-roots)", "weights folders"


def confine_options(options: dict, weights_roots: WeightsRoots) -> dict:
    """A client's backend options as the engine will use them. A device is the engine's to
    assign (one worker per device), so a client may not name one; an option naming a
    folder must lie inside --weights-roots, and becomes its resolved path so the backend
    loads what was checked."""
    if "device" in options:
        raise invalid("options.device: the engine assigns each job the device of the worker that runs it "
                      "(`longanim serve --devices`); leave `device` out")
    confined = dict(options)
    for name in sorted(PATH_OPTIONS & options.keys()):
        value = options[name]
        if not isinstance(value, str):
            raise invalid(f"options.{name} must be an absolute path (str), got {type(value).__name__}")
        try:
            confined[name] = str(weights_roots.resolve_input(value))
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"options.{name}: {exc}") from None
    return confined


def _refuse_special_file(real: Path, original: str) -> None:
    """A FIFO, socket or device given as an input would block the worker that reads it."""
    from longanim.engine.sequences.image_files import file_kind

    mode = os.stat(real).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise invalid(f"input {original!r} is {file_kind(mode)}, not a regular file or folder; "
                      "only regular files are read")


def _refuse_output_over_inputs(paths: dict) -> None:
    """A colored frame shot.1001.png written into the keyframes' folder would replace the
    keyframe shot.1001.png: the output folder (and its confidence/) may be no input's."""
    from longanim.engine.errors import InputError
    from longanim.engine.pipeline import CONFIDENCE_DIR, check_output_place, input_places

    lineart = paths["lineart"]
    folder = lineart if lineart.is_dir() else lineart.parent
    files = [lineart] if lineart.is_file() else []
    places = input_places(folder, files, [ref for ref, _ in paths["refs"]])
    try:
        for out in (paths["output"], paths["output"] / CONFIDENCE_DIR):
            check_output_place(out, places)
    except InputError as exc:
        raise forbidden(str(exc)) from None
