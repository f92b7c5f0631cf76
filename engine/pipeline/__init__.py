"""One shot from files to files: line-art sequence in -> backend -> colored sequence out.

The CLI, the engine server and farm jobs all go through `colorize_shot`, so a frame
colorized anywhere is byte-identical. Outputs keep the input's frame numbers, bit
depth, color space and alpha; every file is written atomically, and `report.json`
is written last, so a folder without it is an interrupted run.

Where a run starts (fresh, from a checkpoint, after a warm-up) and the checkpoint file
itself are `checkpoints.py`'s: this module runs the frames and asks it for a plan.
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
from longanim.engine.backends.base import Backend, CancelFn, Cancelled, ColoredFrame, Keyframe, ProgressFn
from longanim.engine.errors import InputError
from longanim.engine.pipeline.checkpoints import CheckpointSaver, checkpoint_path, plan_start
from longanim.engine.sequences.colorspace import quantize, to_display_float
from longanim.engine.sequences.image_files import ConfineFn, ImageData, atomic_write, depths_for_ext, read_image
from longanim.engine.sequences.reader import Sequence as FrameSequence
from longanim.engine.sequences.reader import frame_number_from_path, frame_ranges, open_sequence
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
    start: dict = field(default_factory=dict)  # how the run began: fresh, resumed or warmed up
    missing: list[int] = field(default_factory=list)  # gaps in the sequence, skipped (allow_gaps)

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
            "missing_frames": self.missing,
            "seconds": round(self.seconds, 3),
            "fps": round(len(self.frames) / self.seconds, 3) if self.seconds else None,
            **({"start": self.start} if self.start.get("mode", "fresh") != "fresh" else {}),
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
    confine_read: ConfineFn | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    allow_gaps: bool = False,
) -> ShotReport:
    """`confine` is called on every folder and file the run writes, right before it is used,
    and raises to refuse it: the engine passes its roots check, the CLI none. Either way
    no output may be one of the run's inputs (`input_places`). `confine_read` is called on
    every input file (line-art frames, keyframes) right before it is read and returns the
    path to read.

    With a resumable backend (`Backend.resumable`) and `checkpoint_every`, the shot's state
    is saved in the output folder (`checkpoint_path`) after every that many frames, at the
    end and when cancelled. `resume` continues from such a checkpoint (refused when it was
    made for another shot, keyframes, backend, options or code). A run of `frames` that does
    not start at the shot's first frame starts from a checkpoint taken before its first
    frame if there is one, else runs the frames before it from the start of the shot without
    writing them (a warm-up): the memory holds everything since the shot began, so that is
    what makes its frames equal those of one whole-shot run. `progress` is told which
    (`{"stage": "plan", "message": ...}`).

    A gap in the numbering (a frame that failed to render, a file not copied) is refused,
    naming the missing frames: colorized through, the shot would come out with a frame
    missing and the memory would jump across it unnoticed. With `allow_gaps` the frames
    there are are colorized, and the gaps are listed in the report (`missing_frames`) and
    in the plan's message. The gaps counted are those up to the run's last frame, the
    ones before a range included: its warm-up runs through them."""
    started = time.perf_counter()
    whole = open_sequence(lineart_source, check=confine_read)
    shot = open_sequence(lineart_source, frames, check=confine_read) if frames else whole
    run_seq = None
    try:
        if not refs:
            raise InputError("at least one colored reference keyframe is needed (--ref REF.png[:FRAME])")
        gaps = [n for n in whole.missing if n <= shot.frames[-1]]
        if gaps and not allow_gaps:
            raise InputError(f"{whole.source}: {len(gaps)} frame{'s' if len(gaps) > 1 else ''} missing from the "
                             f"sequence ({whole.frames[0]}-{whole.frames[-1]}): {frame_ranges(gaps)}; render or "
                             "copy them in, or pass --allow-gaps to colorize the frames there are and list the "
                             "gaps in report.json")
        keyframes = load_keyframes(refs, whole, default_frame=shot.frames[0], check=confine_read)
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
        for stale in outdir.glob(f".{checkpoint_path(outdir, shot.name).name}.partial-*"):
            stale.unlink(missing_ok=True)
        report = ShotReport(engine.name, str(lineart_source), str(outdir), keyframes=[k.number for k in keyframes],
                            missing=gaps)
        plan = plan_start(whole, shot, keyframes, engine, outdir, writer, resume=resume,
                           checkpointing=bool(checkpoint_every))
        report.start = plan.describe()
        if progress is not None:
            message = plan.message()
            if gaps:
                message += f"; skipping {len(gaps)} missing frame{'s' if len(gaps) > 1 else ''}: {frame_ranges(gaps)}"
            progress({"stage": "plan", "message": message, **report.start, **({"missing_frames": gaps} if gaps else {})})
        alphas: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}  # see _lineart_frames
        total = len(shot.frames)
        first_written = shot.frames[0]
        saver = CheckpointSaver(plan, checkpoint_every, guard, whole)
        for n in shot.frames:
            if n in plan.done:  # written by the run this one resumes; told to `on_frame` (an engine's client) too
                _finished(report, ColoredFrame(n, None, None, {"review_fraction": plan.done[n], "resumed": True}),
                          writer.path_for(n), on_frame, None, started, total)
        # A backend that looks ahead (a diffusion segment reads the frames after it, segments are
        # planned from the shot's end) is given the frames through the shot's end, so a range
        # comes out as it does in the whole run; reading stops once the range is written.
        looks_ahead = not engine.causal and not engine.frame_independent
        end = whole.frames[-1] if looks_ahead else shot.frames[-1]
        if plan.start > shot.frames[-1]:
            todo = iter(())
        else:
            run_seq = shot if (plan.start, end) == (shot.frames[0], shot.frames[-1]) \
                else open_sequence(lineart_source, (plan.start, end), check=confine_read)
            todo = _prefetch(_lineart_frames(run_seq, alphas))
        if engine.resumable:
            # The cancel flag is read here too, between frames, where the state can be saved; the
            # backend reads it inside a frame it takes long over (a diffusion segment's steps).
            results = engine.colorize_resumable(todo, keyframes, plan.state, progress=progress, cancelled=cancelled)
        else:
            results = ((result, None) for result in engine.colorize(todo, keyframes, progress=progress,
                                                                    cancelled=cancelled))
        if cancelled is not None and cancelled():
            raise Cancelled("cancelled before the first frame")

        def land(finished) -> None:
            """Frames whose files are whole: reported, and the checkpoints waiting for them saved."""
            for done_result, path in finished:
                _finished(report, done_result, path, on_frame, progress, started, total)
                saver.written(done_result.number, report.review_fraction[done_result.number])

        with _OrderedWrites() as writes:
            try:
                # Warm-up frames run through the memory; the range's frames are written, checkpoints
                # saved as their frames land. A backend that looks ahead may give more than the
                # range: the loop stops at its last frame.
                warmed = 0
                for result, snapshot in results:
                    n = result.number
                    last = n == shot.frames[-1]
                    if n < first_written:  # warm-up: the memory goes through it, nothing is written
                        alphas.pop(n, None)
                        warmed += 1
                        if progress is not None:
                            progress({"stage": "warm-up", "frame": n, "done": warmed, "total": plan.warm_up})
                        saver.frame_done(n, snapshot, None)
                    else:
                        film = alphas.pop(n, None)

                        def write(result=result, film=film) -> Path:
                            confidence = result.confidence8
                            if confidence is None:
                                confidence = _confidence_image(result.confidence)
                            confidence_writer.write(result.number, confidence)
                            return writer.write_display(result.number, *with_coverage(result.rgb, film))

                        saver.frame_computed(n, snapshot, last)
                        land(writes.submit(result, write))
                    if cancelled is not None and cancelled() and not last:
                        # Whatever is in flight is finished (every file is whole), the state after the
                        # last frame is saved, and then the run stops.
                        saver.cancel_at(n, snapshot)
                        land(writes.drain())
                        saver.flush()
                        raise Cancelled(f"cancelled after frame {n}" + (" (checkpoint saved)" if saver.saved else ""))
                    if last:
                        break
            except Cancelled:
                # Cancelled inside a frame: whatever is in flight is finished (every file is whole)
                # and the states saved so far stay; the frame being computed is dropped.
                land(writes.drain())
                saver.flush()
                raise
            land(writes.drain())
        saver.flush()
        if report.frames != shot.frames:
            raise RuntimeError(f"backend {engine.name} returned frames {report.frames[:5]}... "
                               f"for {shot.frames[:5]}...")
        report.seconds = time.perf_counter() - started
        write_json(outdir / REPORT_NAME, report.to_json(), confine=guard)
        return report
    finally:
        if run_seq is not None and run_seq is not shot:
            run_seq.close()
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


def load_keyframes(refs: Sequence[RefSpec], whole: FrameSequence, *, default_frame: int,
                   check: ConfineFn | None = None) -> list[Keyframe]:
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
        image = read_image(path if check is None else check(path))
        if (image.width, image.height) != size:
            raise InputError(
                f"reference {path} is {image.width}x{image.height} but the line art is {size[0]}x{size[1]}"
            )
        color, color_alpha = display_rgb_on_white(image)
        lineart, film = display_rgb_on_white(whole.read(frame))
        # On transparent film the keyframe says which fills are opaque: where it is, or, for
        # a keyframe with no alpha of its own, everywhere (its paper was painted too).
        alpha = None
        if film is not None:
            alpha = (quantize(color_alpha, np.uint8) if color_alpha is not None
                     else np.full(color.shape[:2], 255, np.uint8))
        keyframes[frame] = Keyframe(frame, color, lineart, alpha)
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
    """The frames as the backend sees them; `alphas` gets each frame's alpha and the line art
    on white (None for opaque line art), for the output's alpha (`with_coverage`)."""
    size = (shot.width, shot.height)
    for number in shot.frames:
        image = shot.read(number)
        if (image.width, image.height) != size:
            raise InputError(f"frame {number} is {image.width}x{image.height}, the shot is {size[0]}x{size[1]}")
        rgb, alpha = display_rgb_on_white(image)
        alphas[number] = None if alpha is None else (alpha, rgb)
        yield number, rgb


def with_coverage(rgb: np.ndarray, film: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The color and alpha to write for a backend's frame: `film` is the line art's alpha and
    the line art on white (None: opaque line art, no alpha to write).

    A backend that decides its fills' coverage (a fourth channel, `ColoredFrame.rgb`) gets a
    compositor's alpha: the line art's lines over the fills, each fill as opaque as the
    keyframe region that taught its color, so a character on transparent film comes out an
    opaque character, lines included, on transparent film. Where a fill is opaque the
    backend's color stands; where it is film the line art's own color shows under its own
    alpha (its color on white, less the white that showed through). Otherwise the output
    keeps the line art's alpha as it is."""
    rgb = np.asarray(rgb)
    coverage = rgb.shape[2] == 4
    if film is None:
        return (rgb[..., :3] if coverage else rgb), None
    line_alpha, on_white = film
    if not coverage:
        return rgb, line_alpha
    color = rgb[..., :3].astype(np.float32) / np.float32(255.0) if rgb.dtype == np.uint8 else rgb[..., :3]
    fill = rgb[..., 3].astype(np.float32) / np.float32(255.0) if rgb.dtype == np.uint8 else rgb[..., 3]
    fill = fill[..., None]
    a = line_alpha[..., None].astype(np.float32)
    # Lines over fills: 1 - (1 - a)(1 - f), exactly 1 over an opaque fill and a over film.
    alpha = np.where(fill > 0, 1.0 - (1.0 - a) * (1.0 - fill), a)
    own = np.clip(on_white.astype(np.float32) / np.float32(255.0) - (1.0 - a), 0.0, 1.0)  # line color x its alpha
    premultiplied = fill * color + (1.0 - fill) * own
    straight = np.where(alpha > 0, premultiplied / np.maximum(alpha, 1e-6), color)
    return np.clip(straight, 0.0, 1.0), alpha[..., 0]


_DEPTH_ORDER = ("8", "16", "half", "float")


def _output_depth(first: ImageData, ext: str) -> str:
    """The input's depth where the output format stores it (float TIFF stays float), else the
    least depth of the format that loses nothing (8/16-bit to EXR: half), else its deepest
    (float to PNG: 16-bit)."""
    allowed = depths_for_ext(ext)
    if first.depth in allowed:
        return first.depth
    rank = _DEPTH_ORDER.index(first.depth)
    deeper = [d for d in allowed if _DEPTH_ORDER.index(d) >= rank]
    return deeper[0] if deeper else allowed[-1]


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
