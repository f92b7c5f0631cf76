"""The contract every colorizer backend meets, so the pipeline, the engine server
and the CLI never care which one runs.

Backends see display-referred sRGB pixels only: the pipeline has already turned
linear EXR, 16-bit and alpha inputs into that, and turns the results back.
"""

from __future__ import annotations

import abc
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from longanim.engine.errors import LonganimError


class BackendError(LonganimError):
    """A backend cannot run with what it was given (missing weights, bad option...)."""


class Cancelled(RuntimeError):
    """Raised inside a backend when the job's cancel flag is seen."""


@dataclass(frozen=True)
class Keyframe:
    """A colored reference for one frame of the shot.

    `lineart` is that frame's line art when the shot contains it; backends that
    segment regions prefer it to finding lines in the colored image. `alpha` is given
    when the line art is on transparent film: where the keyframe is opaque (255) and
    where it is film (0); a backend that follows regions can then say which of its fills
    are opaque (the fourth channel of `ColoredFrame.rgb`).
    """

    number: int
    color: np.ndarray  # HxWx3 uint8 sRGB
    lineart: np.ndarray | None = None  # HxWx3 uint8 sRGB
    alpha: np.ndarray | None = None  # HxW uint8 coverage of the colored keyframe


@dataclass
class ColoredFrame:
    number: int
    # HxWx3, uint8 sRGB or float32 sRGB in [0, 1]; HxWx4 when the backend decides which fills are
    # opaque (keyframes with `alpha`): the fourth channel is the fill's coverage, the lines' own
    # coverage being the line art's (the pipeline puts the two together).
    rgb: np.ndarray
    confidence: np.ndarray  # HxW float32 in [0, 1]; low means "an artist should look here"
    info: dict = field(default_factory=dict)  # backend-specific per-frame facts for reports
    # The same confidence as 8-bit grey (255 = sure), from a backend that has it so: the
    # pipeline writes it as it is instead of rounding the floats back (10 ms a 1080p frame).
    confidence8: np.ndarray | None = field(default=None, repr=False, compare=False)


ProgressFn = Callable[[dict], None]
CancelFn = Callable[[], bool]
# A backend's whole shot memory after some frame, as named numpy arrays of numbers (no
# objects): what a checkpoint stores, so a killed task can go on where it was.
ShotState = dict[str, np.ndarray]


class Backend(abc.ABC):
    """Colorizes one shot: line-art frames in order, keyframes anywhere in the shot.

    `colorize` is a generator so results stream out as they finish (per frame for
    `paint`, per segment for the diffusion model) and memory stays bounded by the
    backend's own window, never by the shot length.
    """

    name: ClassVar[str]
    # True when each output frame depends on its own input frame only; the engine then
    # caches results per frame. Colorizers with a memory across the shot leave it False.
    frame_independent: ClassVar[bool] = False
    # True when each output frame depends only on the options, the keyframes and the input
    # frames up to it, in order (a memory that looks back, never ahead). The engine then
    # caches each frame under a digest of everything up to it, so a stream cut anywhere is
    # reused up to there. Backends that look ahead leave it False and are cached only once
    # their whole input is known.
    causal: ClassVar[bool] = False

    @abc.abstractmethod
    def colorize(
        self,
        frames: Iterable[tuple[int, np.ndarray]],
        keyframes: Sequence[Keyframe],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelFn | None = None,
    ) -> Iterator[ColoredFrame]:
        """Yield one ColoredFrame per input frame, in input order.

        `frames` yields (frame_number, HxWx3 uint8 sRGB line art). `progress`
        receives small dicts (e.g. {"stage": "denoise", "step": 3, "steps": 50});
        `cancelled()` is polled at least once per frame or denoising step and the
        backend raises `Cancelled` when it returns True.
        """

    # True when `colorize_resumable` can hand out the shot's state after any frame and start
    # again from one: a run resumed from it gives the frames an uninterrupted run gives.
    resumable: ClassVar[bool] = False

    def colorize_resumable(
        self,
        frames: Iterable[tuple[int, np.ndarray]],
        keyframes: Sequence[Keyframe],
        state: ShotState | None = None,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelFn | None = None,
    ) -> Iterator[tuple[ColoredFrame, Callable[[], ShotState]]]:
        """Like `colorize`, starting from `state` (a snapshot taken after the frame before the
        first of `frames`) when given. Each frame comes with a function returning a copy of
        the state after it; call it before asking for the next frame. A backend that can only
        stop at some frames (the end of a diffusion segment) gives None for the others; a
        checkpoint due there is taken at the next frame that has a state."""
        raise BackendError(f"backend {self.name} cannot checkpoint a shot")

    def state_identity(self) -> dict:
        """What a saved state belongs to besides the shot and keyframes: the code, and the
        options that decide the output. A state saved under other values is refused."""
        return self.cache_identity()

    def describe(self) -> dict:
        """Capabilities reported to clients (devices, limits)."""
        return {"name": self.name}

    def cache_identity(self) -> dict:
        """What, besides options and input, decides the output: cached results made by other
        code (an upgrade) or other weights must not be served. Backends with weights add the
        files' identity."""
        return {"backend": f"{type(self).__module__}.{type(self).__qualname__}", "code": code_version(type(self))}


_CODE_VERSIONS: dict[type, str] = {}


def code_version(cls: type) -> str:
    """Digest of the source files of the package that defines `cls` (its module alone when
    it is a module of its own), computed once per process."""
    if cls not in _CODE_VERSIONS:
        module_file = Path(sys.modules[cls.__module__].__file__)
        package = module_file.parent
        in_own_package = (package / "__init__.py").is_file() and package.name != "backends"
        files = sorted(package.rglob("*.py")) if in_own_package else [module_file]
        h = hashlib.sha256()
        for path in [Path(__file__), *files]:  # the contract too: it shapes every backend's output
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        _CODE_VERSIONS[cls] = h.hexdigest()[:32]
    return _CODE_VERSIONS[cls]
