"""Rendering the node's inputs for the engine: a Write inside the group, executed over the
frame range into a temporary EXR sequence in the cache folder, then deleted.

Written raw (no colour conversion: the working space's values, premultiplied, 32-bit
float), so the one conversion to display sRGB is `colour`'s, explicit and the same for
every script. Nuke renders on the main thread, as any Write does (its own progress bar,
cancellable); nothing here waits on the engine. Why a Write and not samples: see the
README (pixel transfer through `Node.sample` is one Python call per pixel and channel).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nuke
from longanim.engine.errors import InputError

from longanim_nuke.settings import Settings


@dataclass
class Rendered:
    folder: Path  # temporary: removed by `discard` once the run has ended
    lineart: str  # name.####.exr
    keyframes: dict[int, Path]

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def render_inputs(group: nuke.Group, settings: Settings) -> Rendered:
    """The line art over the frame range and each reference at its frame."""
    lineart_in = group.input(0)
    if lineart_in is None:
        raise InputError(f"{group.name()}: connect the line art to its first input (lineart)")
    for ref in settings.refs:
        if group.input(ref.input) is None:
            raise InputError(f"{group.name()}: reference frame {ref.frame} is taken from input ref{ref.input}, "
                             "which is not connected")
    cache = Path(settings.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".render-", dir=cache))
    lineart = (folder / "lineart.####.exr").as_posix()
    try:
        with group:
            write = nuke.nodes.Write(file_type="exr", raw=True, datatype="32 bit float")
            try:
                _execute(write, group.node("lineart"), lineart_in, lineart, settings.first, settings.last)
                keyframes = {}
                for ref in settings.refs:
                    pattern = (folder / f"ref{ref.input}.####.exr").as_posix()
                    upstream = group.input(ref.input)
                    assert upstream is not None  # checked above
                    _execute(write, group.node(f"ref{ref.input}"), upstream, pattern, ref.frame, ref.frame)
                    keyframes[ref.frame] = folder / f"ref{ref.input}.{ref.frame:04d}.exr"
            finally:
                nuke.delete(write)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Rendered(folder, lineart, keyframes)


def _execute(write: nuke.Node, source: nuke.Node | None, upstream: nuke.Node, pattern: str, first: int,
             last: int) -> None:
    """Render `source` (an Input of the group) to `pattern`; RGBA when what is connected has
    an alpha, else RGB, so an RGB plate is not read back as fully transparent."""
    assert source is not None
    write.setInput(0, source)
    write["file"].setValue(pattern)
    write["channels"].setValue("rgba" if "rgba.alpha" in upstream.channels() else "rgb")
    nuke.execute(write, first, last)
