"""One "Colorize shot" run as a state machine that the modal operator's timer (or, in
background mode, a plain loop) steps with `tick()`.

Why a state machine: Blender's UI thread must never wait for the engine. Each tick does
one small thing and returns: look at the hello, render one line-art frame, hand frames to
the client, take the results that arrived. The engine is only ever touched through the
client's non-blocking forms (`wait=False`, `poll()`), whose calls return within a few ms.
Rendering a frame is the one step that takes as long as Blender's renderer needs; it runs
one frame per tick, so Esc and redraws get in between frames, and it waits while another
render (the artist's F12) is running, since Blender refuses a second one.

A paused Blender (a blocking script, a long render in the foreground) stops the ticks. The
client catches up on what it missed when they resume; a streamed job whose frames stopped
coming for longer than the engine's --stall-timeout has been given up by the engine
(`input_timeout`), so it is submitted again with every frame rendered so far (kept
compressed), and the engine's cache serves what it had already colored.

Threads: bpy data is touched only here, on the main thread. The client reads the rendered
frames from a queue on its own worker thread (`_Feed`), and the `ResultWriter` thread
turns results into files (numpy + zlib, no bpy). Files are written atomically; the
compositor group is built only once every frame is on disk.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import frames as F
from .protocol.client import EngineClient, EngineError
from .protocol.connection import CurveKeys
from .protocol.wire import PROTOCOL_VERSION


@dataclass
class Settings:
    """What a run needs, read from the scene and preferences before it starts."""

    url: str
    object_name: str
    frame_start: int
    frame_end: int
    key_frames: list[int]
    key_image: str = ""  # an image file, or a name.####.png pattern for several; empty: render with fills on
    output_dir: str = ""  # absolute
    output_name: str = ""
    output_ext: str = "png"  # or "exr" (half float, scene-linear, premultiplied)
    backend: str = "paint"
    timeout: float = 5.0
    curve_dir: str = ""
    use_cache: bool = True
    path_roots: list[str] = field(default_factory=list)  # the engine's --roots, as the preferences say
    options: dict = field(default_factory=dict)
    resubmits: int = 3  # an engine job lost to a long pause of Blender is submitted again this often


def inside_roots(folder: str, roots: list[str]) -> bool:
    """Whether `folder` lies inside one of `roots` (symlinks resolved, as the engine checks)."""
    real = Path(os.path.realpath(folder))
    for root in roots:
        r = Path(os.path.realpath(root))
        if real == r or r in real.parents:
            return True
    return False


def key_image_paths(pattern: str, numbers: list[int]) -> dict[int, str]:
    """Key frame -> painted image: one file for one key frame, or a name.####.png pattern
    (the #s are the zero-padded frame number) for several."""
    if "#" not in pattern:
        if len(numbers) != 1:
            raise ValueError(f"{len(numbers)} key frames but one key image; name the images "
                             "with a pattern such as key.####.png")
        return {numbers[0]: pattern}
    head, _, tail = pattern.partition("#")
    width = 1 + len(tail) - len(tail.lstrip("#"))
    tail = tail.lstrip("#")
    return {n: f"{head}{n:0{width}d}{tail}" for n in numbers}


def _version(text) -> tuple[int, ...]:
    """'1.1' -> (1, 1); anything unreadable -> (0,), i.e. the oldest behaviour."""
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        return (0,)


class ResultWriter:
    """Turns results into files on a thread of its own (no bpy there): the cel as PNG or
    EXR, the confidence map as PNG (from the array sent inline, or the engine's file).
    `matte`: the keyframes were sent with the matte background (a 1.0 engine), so a
    result's matte regions are the transparent ones."""

    def __init__(self, folder: Path, name: str, ext: str = "png", matte: bool = False):
        self.folder, self.name, self.ext, self.matte = folder, name, ext, matte
        self.queue: queue.Queue = queue.Queue()
        self.written: list[int] = []
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="longanim-writer", daemon=True)
        self.thread.start()

    def put(self, number: int, rgb, confidence, line) -> None:
        self.queue.put((number, rgb, confidence, line))

    def close(self) -> None:
        self.queue.put(None)

    @property
    def idle(self) -> bool:
        return not self.thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            number, rgb, confidence, line = item
            try:
                if line is None:  # the engine's own file: already the cel
                    cel = rgb
                elif rgb.shape[-1] == 4:  # the fills' coverage (keyframes sent with alpha)
                    cel = F.coverage_cel(rgb, line)
                elif self.matte:
                    cel = F.cel_rgba(rgb, line)
                else:
                    cel = F.with_line_alpha(rgb, line)
                data = F.encode_exr(F.exr_pixels(cel)) if self.ext == "exr" else F.encode_png(cel, level=1)
                F.write_atomic(F.frame_path(self.folder, self.name, number, self.ext), data)
                if isinstance(confidence, (str, Path)):  # a path job: the engine wrote it
                    conf = Path(confidence).read_bytes()
                elif confidence is not None:
                    conf = F.encode_png(F.confidence_grey(confidence), level=1)
                else:
                    conf = None
                if conf is not None:
                    F.write_atomic(F.frame_path(self.folder / "confidence", self.name, number), conf)
                self.written.append(number)
            except Exception as exc:  # a full disk or a forbidden folder: say which frame
                self.error = f"writing frame {number} to {self.folder} failed: {exc}"


class _Feed:
    """One engine job's inline frames, read by the client's worker thread. A job lost to
    a long pause is submitted again with a new feed holding every frame rendered so far."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.stopped = False

    def put(self, number: int, packed: tuple) -> None:
        self.queue.put((number, packed))

    def end(self) -> None:
        self.queue.put(None)

    def frames(self):
        """Runs on the client's reader thread: unpacks each frame as it is sent."""
        while True:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.stopped:
                    return
                continue
            if item is None:
                return
            number, (shape, data) = item
            yield number, np.frombuffer(zlib.decompress(data), np.uint8).reshape(shape)


class ColorizeSession:
    """States: connect -> keyframe -> render -> drain (results) -> finish; any state ->
    cancelling -> ended.

    Inline jobs (the default) stream frames to the engine as they are rendered (the client
    sends those that come faster than its 0.5 s flush interval together).
    Path jobs (the output folder lies inside the engine's --roots, as the preferences name
    them) render the line art into `lineart/` beside the output, submit once every frame
    is on disk, and the engine writes into `engine/`; the cels are written beside them.
    An engine of protocol 1.1 or later gets the painted keyframes' alpha: its inline results
    carry the fills' coverage (frames.coverage_cel makes the cel) and its files already are
    the cels. A 1.0 engine gets the matte background instead (frames.cel_rgba).
    """

    def __init__(self, settings: Settings, scene, report=None):
        from .lineart_render import LineartRenderer

        self.s = settings
        self.scene = scene
        self.obj = bpy.data.objects.get(settings.object_name)
        self.report = report or (lambda kind, text: None)
        self.state = "connect"
        self.message = "Connecting to the engine"
        self.error: str | None = None
        self.outcome: str | None = None  # "done", "failed", "cancelled"
        self.numbers = list(range(settings.frame_start, settings.frame_end + 1))
        self.key_frames = sorted(set(settings.key_frames))
        self.mode = "path" if settings.path_roots and inside_roots(settings.output_dir, settings.path_roots) \
            else "inline"
        self.rendered = 0
        self.results = 0
        self.cached = 0  # results the engine served from its cache
        self.resubmitted = 0  # engine jobs submitted again after Blender paused too long
        self.jobs_lost: list[dict] = []  # why each of those was lost (the engine's error)
        self.waited_for_render = 0  # ticks skipped while another render (F12) ran
        self.coverage = False  # the engine takes keyframes[].alpha (protocol 1.1): set at hello
        self.result_channels: set[int] = set()  # channel counts of the inline results seen
        self.tick_times: list[tuple[str, float]] = []  # (state at start, seconds) per tick
        self.job = None
        self.client: EngineClient | None = None
        self._hello = None
        self._cancel = None
        self._cancel_deadline = 0.0
        self._feed: _Feed | None = None
        self._packed: dict[int, tuple] = {}  # inline: every rendered frame, compressed, for a resubmit
        self._keyframes: list[tuple] = []
        self._key_colors: dict[int, np.ndarray] = {}  # the painted keyframes as rendered (RGBA)
        self._key_steps: list[tuple[int, bool]] = []  # (frame, fills) renders still to do for keyframes
        self._key_renders: dict[tuple[int, bool], np.ndarray] = {}
        self._lines: dict[int, object] = {}
        self._path_results: collections.deque = collections.deque()
        self._written: set[int] = set()
        self.writer: ResultWriter | None = None
        self.lineart_dir = Path(settings.output_dir) / "lineart"
        self.engine_dir = Path(settings.output_dir) / "engine"
        self.renderer = LineartRenderer(scene, self.obj) if self.obj is not None else None
        self._check()

    # -- what the UI reads ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def progress(self) -> float:
        total = max(1, len(self.numbers))
        return min(1.0, 0.5 * self.rendered / total + 0.5 * len(self.writer.written if self.writer else ()) / total)

    def status_text(self) -> str:
        done = len(self.writer.written) if self.writer else 0
        eta = getattr(self.job, "eta_s", None)
        eta_text = f", about {eta:.0f} s left" if isinstance(eta, (int, float)) else ""
        return (f"LongAnimation: {self.message} - rendered {self.rendered}/{len(self.numbers)}, "
                f"colored {done}/{len(self.numbers)}{eta_text} (Esc cancels)")

    # -- control -------------------------------------------------------------------------

    def tick(self) -> None:
        """One short step; never waits for the engine."""
        if self.finished:
            return
        t0 = time.perf_counter()
        state = self.state
        try:
            getattr(self, f"_tick_{self.state}")()
        except EngineError as exc:
            self._fail(self._engine_message(exc.code, exc.message))
        except Exception as exc:  # never a traceback in the UI: say what failed
            self._fail(f"{type(exc).__name__}: {exc}")
        self.tick_times.append((state, time.perf_counter() - t0))

    def cancel(self) -> None:
        """Esc or the Cancel button: cancel the engine job (without waiting)."""
        if self.finished or self.state == "cancelling":
            return
        if self._feed is not None:
            self._feed.stopped = True
        if self.job is not None and not self.job.final:
            self._cancel = self.job.cancel(wait=False)
            self._cancel_deadline = time.monotonic() + self.s.timeout
            self.state, self.message = "cancelling", "Cancelling the engine job"
        else:
            self._end("cancelled", "Cancelled")

    def close(self) -> None:
        if self._feed is not None:
            self._feed.stopped = True
        if self.writer is not None:
            self.writer.close()
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.renderer is not None:
            self.renderer.close()

    # -- states --------------------------------------------------------------------------

    def _check(self) -> None:
        s = self.s
        if self.obj is None or self.obj.type not in ("GREASEPENCIL", "GPENCIL"):
            self._fail(f"'{s.object_name}' is not a Grease Pencil object")
        elif s.frame_end < s.frame_start:
            self._fail(f"the frame range {s.frame_start}-{s.frame_end} is empty")
        elif not s.output_dir:
            self._fail("no output folder: save the .blend first, or set an absolute output folder")
        elif not self.key_frames:
            self._fail("no key frame: name the frames you painted (e.g. 1001, 1040)")
        elif self.mode == "path" and [k for k in self.key_frames if k not in self.numbers]:
            self._fail(f"key frames {[k for k in self.key_frames if k not in self.numbers]} lie outside the "
                       f"range {s.frame_start}-{s.frame_end}; a path job's keyframes are frames of its range")
        if self.finished:
            return
        if s.key_image:
            try:
                self._key_images = key_image_paths(s.key_image, self.key_frames)
            except ValueError as exc:
                self._fail(str(exc))
                return
            absent = [p for p in self._key_images.values() if not os.path.isfile(p)]
            if absent:
                self._fail(f"the keyframe image {absent[0]} does not exist")
                return
        self._key_steps = [(n, False) for n in self.key_frames]
        if not s.key_image:
            self._key_steps += [(n, True) for n in self.key_frames]
        curve = CurveKeys.from_dir(s.curve_dir) if s.curve_dir else None
        self.client = EngineClient(s.url, timeout=s.timeout, curve=curve, client_name="longanim-blender")
        self._hello = self.client.hello(wait=False)

    def _tick_connect(self) -> None:
        self.client.poll()
        if not self._hello.done:
            return
        self._hello.result()  # raises the EngineError: engine down, or another protocol major
        self.coverage = _version(self.client.engine_info.get("protocol_version")) >= (1, 1)
        backends = (self.client.engine_info.get("capabilities") or {}).get("backends") or []
        if backends and self.s.backend not in backends:
            raise EngineError("unknown_backend", f"the engine has no '{self.s.backend}' backend "
                              f"(it has {', '.join(backends)})")
        self.state, self.message = "keyframe", "Rendering the keyframes"

    def _tick_keyframe(self) -> None:
        """One render per tick: each key frame's line art, and its painted fills."""
        self.client.poll()
        if self._render_busy():
            return
        if self._key_steps:
            self.message = "Rendering the keyframes"
            number, fills = self._key_steps.pop(0)
            path = str(F.frame_path(self.lineart_dir, self.s.output_name, number)) \
                if self.mode == "path" and not fills else None
            self._key_renders[(number, fills)] = self.renderer.render(number, fills=fills, path=path)
            return
        for n in self.key_frames:
            lineart = self._key_renders[(n, False)]
            if self.s.key_image:
                from .lineart_render import read_image

                color = read_image(self._key_images[n])
                if color.shape[:2] != lineart.shape[:2]:
                    raise ValueError(f"the keyframe image {self._key_images[n]} is {color.shape[1]}x"
                                     f"{color.shape[0]}, the render {lineart.shape[1]}x{lineart.shape[0]}; "
                                     "paint it at the scene resolution")
            else:
                color = self._key_renders[(n, True)]
            if self.coverage:  # the fills' own alpha says which of them are opaque
                self._keyframes.append((n, F.lineart_rgb(color), F.lineart_rgb(lineart),
                                        np.ascontiguousarray(color[..., 3])))
            else:
                self._keyframes.append((n, F.keyframe_rgb(color), F.lineart_rgb(lineart)))
            self._key_colors[n] = color
        self._key_renders.clear()
        self.writer = ResultWriter(Path(self.s.output_dir), self.s.output_name, self.s.output_ext,
                                   matte=not self.coverage)
        if self.mode == "inline":
            self._submit_inline()
        else:
            for stale in self.lineart_dir.glob(f"{self.s.output_name}.*.png"):
                if F.frame_number(stale.name, self.s.output_name) not in self.key_frames:
                    stale.unlink()  # a longer range rendered before must not join this sequence
            for n, color, *_ in self._keyframes:
                painted = self._key_colors[n] if self.coverage else color  # with its alpha, for an engine that takes it
                F.write_atomic(self._key_path(n), F.encode_png(painted, level=1))
        self.state, self.message = "render", "Rendering line art"

    def _tick_render(self) -> None:
        if self.mode == "inline":
            self._take_results()
        else:
            self.client.poll()
        if self.state != "render" or self._render_busy():
            return
        self.message = "Rendering line art"
        number = self.numbers[self.rendered]
        if self.mode == "path":
            if number not in self.key_frames:  # rendered already with the keyframes
                self.renderer.render(number, fills=False, path=str(F.frame_path(self.lineart_dir, self.s.output_name, number)))
        else:
            rgba = self.renderer.render(number, fills=False)
            self._lines[number] = rgba
            line = F.lineart_rgb(rgba)
            # Kept (line art compresses ~50x) so a job lost to a long pause can be sent again.
            self._packed[number] = (line.shape, zlib.compress(line.tobytes(), 1))
            self._feed.put(number, self._packed[number])
        self.rendered += 1
        if self.rendered == len(self.numbers):
            if self.mode == "inline":
                self._feed.end()
            else:
                self._submit_paths()
            self.state, self.message = "drain", "Colorizing"

    def _tick_drain(self) -> None:
        self._take_results()
        if self.state != "drain":
            return
        if self._path_results:
            self._write_path_result(self._path_results.popleft())  # one per tick: two reads
            return
        if not self.job.final:
            return
        if self.job.state != "done":
            self._job_ended()
            return
        missing = [n for n in self.numbers if n not in self._written]
        if missing:
            raise EngineError("missing", f"the engine finished without frames {missing[:5]}")
        self.writer.close()
        self.state, self.message = "finish", "Writing frames"

    def _tick_finish(self) -> None:
        if not self.writer.idle:
            return
        if self.writer.error:
            raise RuntimeError(self.writer.error)
        from .compositor import build_group

        build_group(self.scene, self.s.output_dir, self.s.output_name, self.s.frame_start, self.s.frame_end,
                    ext=self.s.output_ext)
        self._end("done", f"Colored {len(self.writer.written)} frames into {self.s.output_dir}")

    def _tick_cancelling(self) -> None:
        self.client.poll()
        if self.job.final or (self._cancel is not None and self._cancel.done) or time.monotonic() > self._cancel_deadline:
            if self._cancel is not None and self._cancel.done and self._cancel.error is not None:
                self._end("cancelled", f"Cancelled here; the engine did not confirm: {self._cancel.error.message}")
            else:
                self._end("cancelled", "Cancelled")

    # -- the engine job ------------------------------------------------------------------

    def _submit_inline(self) -> None:
        if self._feed is not None:
            self._feed.stopped = True
        self._feed = _Feed()
        for number in sorted(self._packed):  # a resubmit: what was rendered before the loss
            self._feed.put(number, self._packed[number])
        if self.state == "drain" or self.rendered == len(self.numbers):
            self._feed.end()
        s = self.s
        self.job = self.client.submit_frames(
            self._feed.frames(), self._keyframes, backend=s.backend, options=s.options, cache=s.use_cache,
            confidence=True, label=f"blender {s.object_name} {s.frame_start}-{s.frame_end}", wait=False)

    def _submit_paths(self) -> None:
        s = self.s
        self.job = self.client.submit_paths(
            str(self.lineart_dir / f"{s.output_name}.####.png"), [(str(self._key_path(n)), n) for n in self.key_frames],
            str(self.engine_dir), backend=s.backend, options=s.options, frames=(s.frame_start, s.frame_end),
            out_ext="png", label=f"blender {s.object_name} {s.frame_start}-{s.frame_end}", wait=False)

    def _key_path(self, number: int) -> Path:
        return self.lineart_dir / "keys" / f"{self.s.output_name}.key.{number:04d}.png"

    def _take_results(self) -> None:
        self.client.poll()
        if self.job is None:
            return
        for result in self.job.poll():
            if result.number in self._written or result.number not in self.numbers:
                continue  # a resubmitted job sends again what was written before the loss
            self.results += 1
            self.cached += bool(result.cached)
            if result.rgb is not None:
                self.result_channels.add(int(result.rgb.shape[-1]))
            if result.path is not None:
                self._path_results.append(result)
                continue
            self._written.add(result.number)
            self.writer.put(result.number, result.rgb, result.confidence, self._lines.pop(result.number, None))
        if self.writer.error:
            raise RuntimeError(self.writer.error)
        if self.job.final and self.job.state != "done" and self.state == "render":
            self._job_ended()

    def _job_ended(self) -> None:
        """The job ended without finishing: submit it again when a pause of Blender's lost it
        (the engine gave up waiting for frames, or restarted and forgot it), else say why."""
        err = self.job.error or {}
        code = err.get("code", self.job.state)
        if code in ("input_timeout", "lost") and self.mode == "inline" and self.resubmitted < self.s.resubmits:
            self.resubmitted += 1
            self.jobs_lost.append({"job_id": self.job.id, "code": code, "message": err.get("message", "")})
            self.message = "Submitting again (Blender paused longer than the engine waits)"
            self._submit_inline()
            return
        raise EngineError(code, err.get("message", f"the job ended {self.job.state}"))

    def _write_path_result(self, result) -> None:
        from .lineart_render import read_image

        colored = read_image(result.path)
        if self.coverage:  # the engine put the strokes over the fills' coverage itself
            line = None
        else:
            colored = colored[..., :3]
            line = read_image(str(F.frame_path(self.lineart_dir, self.s.output_name, result.number)))
        confidence = F.frame_path(self.engine_dir / "confidence", self.s.output_name, result.number)
        self._written.add(result.number)
        self.writer.put(result.number, colored, confidence if confidence.is_file() else None, line)

    def _render_busy(self) -> bool:
        """Another render (the artist's F12) is running: Blender refuses a second one, so wait."""
        busy = getattr(bpy.app, "is_job_running", None)
        if busy is not None and busy("RENDER"):
            self.waited_for_render += 1
            self.message = "Waiting for the render in progress"
            return True
        return False

    # -- helpers -------------------------------------------------------------------------

    def _engine_message(self, code: str, message: str) -> str:
        if code == "timeout":
            return (f"No engine answers at {self.s.url}. Start one with `longanim serve --bind {self.s.url}` "
                    "(or Start in the add-on's preferences), or set the address there.")
        if code == "incompatible_version":
            return f"Engine and add-on speak different protocol versions (add-on {PROTOCOL_VERSION}): {message}"
        if code == "forbidden":
            return (f"The engine refuses the paths: {message}. Path jobs need the output folder "
                    f"{self.s.output_dir} inside the engine's --roots; the preferences' Engine path roots say "
                    f"{'; '.join(self.s.path_roots)}: make them match the engine's, or clear them to send the "
                    "pixels instead.")
        if code == "cancelled":
            return "The engine job was cancelled"
        return f"The engine job failed ({code}): {message}"

    def _fail(self, message: str) -> None:
        if self.job is not None and not self.job.final and self.client is not None:
            try:
                self.job.cancel(wait=False)
                self.client.poll()
            except Exception:
                pass
        self._end("failed", message)
        self.error = message

    def _end(self, outcome: str, message: str) -> None:
        self.outcome, self.message = outcome, message
        self.state = "ended"
        self.report("INFO" if outcome == "done" else ("WARNING" if outcome == "cancelled" else "ERROR"), message)
        self.close()
