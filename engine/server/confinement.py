"""Confines the paths clients send to the directories the engine was started with.

A client names files on shared storage; without this, any client could read or
overwrite anything the engine's user can. Paths must be absolute, may not
contain `..`, and must stay inside a root after every symlink is resolved.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Iterable

from longanim.protocol.messages import ProtocolError


def forbidden(message: str) -> ProtocolError:
    return ProtocolError("forbidden", message)


class Roots:
    def __init__(self, roots: Iterable[str | os.PathLike]):
        self.roots = [Path(os.path.realpath(r)) for r in roots]

    def __bool__(self) -> bool:
        return bool(self.roots)

    def _check_syntax(self, path: str) -> PurePath:
        if not self.roots:
            raise forbidden("this engine was started without --roots, so it accepts no file paths")
        if "\x00" in path:
            raise forbidden("path contains a NUL character")
        pure = PurePath(path)
        if not pure.is_absolute():
            raise forbidden(f"path {path!r} must be absolute (the engine has no working directory for you)")
        if ".." in pure.parts:
            raise forbidden(f"path {path!r} contains '..'")
        return pure

    def _inside(self, real: Path, original: str) -> Path:
        for root in self.roots:
            if real == root or root in real.parents:
                return real
        raise forbidden(f"path {original!r} resolves to {str(real)!r}, outside the engine's roots")

    def resolve_input(self, path: str) -> Path:
        """An existing file or directory, symlinks resolved and confined."""
        pure = self._check_syntax(path)
        real = Path(os.path.realpath(pure))
        self._inside(real, path)
        if not real.exists():
            raise ProtocolError("not_found", f"input {path!r} does not exist")
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
