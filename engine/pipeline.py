"""One shot from files to files: line-art sequence in -> backend -> colored sequence out.

The CLI, the engine server and farm jobs all go through `colorize_shot`, so a frame
colorized anywhere is byte-identical. Outputs keep the input's frame numbers, bit
depth, color space and alpha; every file is written atomically, and `report.json`
is written last, so a folder without it is an interrupted run.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from longanim.engine.backends import create_backend
from longanim.engine.backends.base import Backend, CancelFn, ColoredFrame, Keyframe, ProgressFn
from longanim.engine.sequences.colorspace import to_display_float
from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import ConfineFn, ImageData, atomic_write, read_image
from longanim.engine.sequences.reader import Sequence as FrameSequence
from longanim.engine.sequences.reader import frame_number_from_path, open_sequence
from longanim.engine.sequences.writer import SequenceWriter

REPORT_NAME = "report.json"
CONFIDENCE_DIR = "confidence"
REVIEW_FRACTION = 0.01  # a frame with more of its pixels below the review threshold is listed for review


@dataclass(frozen=True)
class RefSpec:
    """A colored reference image and the frame it shows (None: read it from the file name)."""

    path: Path
    frame: int | None = None


@dataclass
class ShotReport:
    backend: str
    lineart: str
    outdir: str
    frames: list[int] = field(default_factory=list)
    keyframes: list[int] = field(default_factory=list)
    review_fraction: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def needs_review(self) -> list[int]:
        return [n for n, f in self.review_fraction.items() if f > REVIEW_FRACTION]

    @property
    def review_stretches(self) -> list[tuple[int, int]]:
        """Runs of frames needing review, first and last frame of each: an uncertain region stays
        uncertain while it is followed, so one doubtful decision flags many frames in a row, and
        an artist looks at the stretch, not at each frame."""
        flagged = set(self.needs_review)
        runs: list[tuple[int, int]] = []
        start = last = None
        for n in self.frames:
            if n in flagged:
                start = n if start is None else start
                last = n
            elif start is not None:
                runs.append((start, last))
                start = None
        if start is not None:
            runs.append((start, last))
        return runs

    def to_json(self) -> dict:
        return {
            "backend": self.backend,
            "lineart": self.lineart,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "needs_review": self.needs_review,
            "review_stretches": [list(r) for r in self.review_stretches],
            "review_fraction": {str(n): round(f, 5) for n, f in self.review_fraction.items()},
            "seconds": round(self.seconds, 3),
            "fps": round(len(self.frames) / self.seconds, 3) if self.seconds else None,
        }


def colorize_shot(
    lineart_source: str | Path,
    refs: Sequence[RefSpec],
    outdir: str | Path,
    *,
    backend: str | Backend = "paint",
    backend_options: dict | None = None,
    frames: tuple[int, int] | None = None,
    out_ext: str | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
    on_frame: Callable[[ColoredFrame, Path], None] | None = None,
    confine: ConfineFn | None = None,
) -> ShotReport:
    """`confine` is called on every folder and file the run writes, right before it is used,
    and raises to refuse it: the engine passes its roots check, the CLI none. Either way
    no output may be one of the run's inputs (`input_places`)."""
    started = time.perf_counter()
    whole = open_sequence(lineart_source)
    shot = open_sequence(lineart_source, frames) if frames else whole
    try:
        if not refs:
            raise InputError("at least one colored reference keyframe is needed (--ref REF.png[:FRAME])")
        keyframes = load_keyframes(refs, whole, default_frame=shot.frames[0])
        engine = backend if isinstance(backend, Backend) else create_backend(backend, **(backend_options or {}))
        outdir = Path(outdir)
        guard = _output_guard(confine, _inputs_of_run(whole, refs))
        for folder in (outdir, outdir / CONFIDENCE_DIR):
            guard(folder)
        ext = (out_ext or ("png" if shot.is_video else shot.ext)).lower().lstrip(".")
        first = shot.read(shot.frames[0])
        writer = SequenceWriter(outdir, shot.name, ext, depth=_output_depth(first, ext), padding=shot.padding,
                                confine=guard)
        confidence_writer = SequenceWriter(outdir / CONFIDENCE_DIR, shot.name, "png", depth="8",
                                           padding=shot.padding, confine=guard)
        # A report left by an earlier run must not vouch for this one until it has finished,
        # and hidden temporaries of a killed run are of no use to anyone.
        guard(outdir / REPORT_NAME).unlink(missing_ok=True)
        for folder in (outdir, outdir / CONFIDENCE_DIR):
            for stale in folder.glob(f".{shot.name}.*.partial-*"):
                stale.unlink(missing_ok=True)
        report = ShotReport(engine.name, str(lineart_source), str(outdir), keyframes=[k.number for k in keyframes])
        alphas: dict[int, np.ndarray | None] = {}
        total = len(shot.frames)
        results = engine.colorize(_prefetch(_lineart_frames(shot, alphas)), keyframes,
                                  progress=progress, cancelled=cancelled)
        with _OrderedWrites() as writes:
            for result in results:
                alpha = alphas.pop(result.number, None)

                def write(result=result, alpha=alpha) -> Path:
                    confidence_writer.write(result.number, _confidence_image(result.confidence))
                    return writer.write_display(result.number, result.rgb, alpha)

                for done_result, path in writes.submit(result, write):
                    _finished(report, done_result, path, on_frame, progress, started, total)
            for done_result, path in writes.drain():
                _finished(report, done_result, path, on_frame, progress, started, total)
        if report.frames != shot.frames:
            raise RuntimeError(f"backend {engine.name} returned frames {report.frames[:5]}... "
                               f"for {shot.frames[:5]}...")
        report.seconds = time.perf_counter() - started
        write_json(outdir / REPORT_NAME, report.to_json(), confine=guard)
        return report
    finally:
        shot.close()
        whole.close()


def _finished(report, result, path, on_frame, progress, started, total) -> None:
    report.frames.append(result.number)
    report.review_fraction[result.number] = float(result.info.get("review_fraction", 0.0))
    if on_frame is not None:
        on_frame(result, path)
    if progress is not None:
        done = len(report.frames)
        elapsed = time.perf_counter() - started
        progress({"stage": "frame", "frame": result.number, "done": done, "total": total,
                  "eta_s": elapsed / done * (total - done)})


class _OrderedWrites:
    """Encodes and writes frames on worker threads (cv2 releases the GIL) while the backend
    works on the next frame; hands finished frames back in order, a few in flight at most."""

    IN_FLIGHT = 4

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="longanim-write")
        self._pending: deque = deque()

    def __enter__(self) -> "_OrderedWrites":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, result, write) -> list:
        self._pending.append((result, self._pool.submit(write)))
        finished = []
        while self._pending and (len(self._pending) > self.IN_FLIGHT or self._pending[0][1].done()):
            result, future = self._pending.popleft()
            finished.append((result, future.result()))
        return finished

    def drain(self) -> list:
        finished = [(result, future.result()) for result, future in self._pending]
        self._pending.clear()
        return finished


def _prefetch(frames: Iterator, depth: int = 4) -> Iterator:
    """Reads and decodes the next frames on a worker thread while the current one is colorized."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in frames:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(exc)

    worker = threading.Thread(target=produce, name="longanim-read", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                box.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


def load_keyframes(refs: Sequence[RefSpec], whole: FrameSequence, *, default_frame: int) -> list[Keyframe]:
    """Read each reference, decide its frame, and pair it with that frame's line art."""
    keyframes: dict[int, Keyframe] = {}
    size = (whole.width, whole.height)
    for ref in refs:
        path = Path(ref.path)
        frame = ref.frame
        if frame is None:
            named = frame_number_from_path(path)
            frame = named if named is not None and named in whole.frames else default_frame
        if frame not in whole.frames:
            raise InputError(
                f"reference {path} is for frame {frame}, outside the line-art sequence "
                f"({whole.frames[0]}-{whole.frames[-1]})"
            )
        if frame in keyframes:
            raise InputError(f"two references are given for frame {frame}")
        image = read_image(path)
        if (image.width, image.height) != size:
            raise InputError(
                f"reference {path} is {image.width}x{image.height} but the line art is {size[0]}x{size[1]}"
            )
        color, _ = display_rgb_on_white(image)
        lineart, _ = display_rgb_on_white(whole.read(frame))
        keyframes[frame] = Keyframe(frame, color, lineart)
    return [keyframes[n] for n in sorted(keyframes)]


def display_rgb_on_white(image: ImageData) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWx3 uint8 sRGB as the colorizer sees it: transparent areas are paper white.

    Returns the alpha too (float32, straight) so the output can carry it unchanged.
    """
    if image.colorspace == "srgb" and image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3:
        return image.pixels, None  # the common case, already what the colorizer sees
    pixels = to_display_float(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    alpha = None
    if pixels.shape[2] in (2, 4):
        alpha = np.clip(pixels[..., -1], 0.0, 1.0)
        pixels = pixels[..., :-1]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    pixels = np.clip(pixels, 0.0, 1.0)
    if alpha is not None:
        pixels = pixels * alpha[..., None] + (1.0 - alpha[..., None])
    return np.round(pixels * 255.0).astype(np.uint8), alpha


def _lineart_frames(shot: FrameSequence, alphas: dict) -> Iterator[tuple[int, np.ndarray]]:
    size = (shot.width, shot.height)
    for number in shot.frames:
        image = shot.read(number)
        if (image.width, image.height) != size:
            raise InputError(f"frame {number} is {image.width}x{image.height}, the shot is {size[0]}x{size[1]}")
        rgb, alphas[number] = display_rgb_on_white(image)
        yield number, rgb


def _output_depth(first: ImageData, ext: str) -> str:
    if ext == "exr":
        return first.depth if first.depth in ("half", "float") else "half"
    return first.depth if first.depth in ("8", "16") else "16"


def input_places(lineart_folder: Path, lineart_files: Iterable[Path], refs: Iterable[Path]) -> dict[Path, str]:
    """Every input of a run and each folder holding one, resolved, with what it is. No
    output may be one of them: frames are named after the line art, so a colored frame
    written into the keyframes' folder replaces the keyframe of the same number."""
    places = {_real(lineart_folder): f"the line-art folder {lineart_folder}"}
    for path in lineart_files:
        places.setdefault(_real(path).parent, f"the folder of line-art file {path}")
        places[_real(path)] = f"line-art file {path}"
    for ref in refs:
        places.setdefault(_real(ref).parent, f"the folder of keyframe {ref}")
        places[_real(ref)] = f"keyframe {ref}"
    return places


def check_output_place(path: Path, places: dict[Path, str]) -> None:
    """Refuses an output folder or file that is one of the run's inputs (`input_places`)."""
    label = places.get(_real(path))
    if label is not None:
        raise InputError(f"the output {path} is {label}: writing there would overwrite or mix with the "
                         "inputs; choose another output folder (-o)")


def _inputs_of_run(whole: FrameSequence, refs: Sequence[RefSpec]) -> dict[Path, str]:
    files = [Path(whole.source)] if whole.is_video else [whole.path_for(n) for n in whole.frames]
    return input_places(files[0].parent, files, [Path(ref.path) for ref in refs])


def _output_guard(confine: ConfineFn | None, places: dict[Path, str]) -> Callable[[Path], Path]:
    """The check every output folder and file passes right before use: the caller's
    confinement first (the engine's roots), then that it is none of the inputs."""

    def guard(path: Path) -> Path:
        if confine is not None:
            confine(path)
        check_output_place(path, places)
        return path

    return guard


def _real(path) -> Path:
    return Path(os.path.realpath(path))


def _confidence_image(confidence: np.ndarray) -> np.ndarray:
    """8-bit grey: white = sure."""
    return np.round(np.clip(confidence, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_json(path: Path, data: dict, confine: ConfineFn | None = None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True).encode()
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(text), confine)
