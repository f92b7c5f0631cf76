"""One "Colorize shot" run as a state machine that the modal operator's timer (or, in
background mode, a plain loop) steps with `tick()`.

Why a state machine: Blender's UI thread must never wait for the engine. Each tick does
one small thing and returns: look at the hello, render one line-art frame, hand frames to
the client, take the results that arrived. The engine is only ever touched through the
client's non-blocking forms (`wait=False`, `poll()`), whose calls return within a few ms.
Rendering a frame is the one step that takes as long as Blender's renderer needs; it runs
one frame per tick, so Esc and redraws get in between frames.

Threads: bpy data is touched only here, on the main thread. The client reads the rendered
frames from a queue on its own worker thread (`_frames`), and the `ResultWriter` thread
turns results into files (numpy + zlib, no bpy). Files are written atomically; the
compositor group is built only once every frame is on disk.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

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
    key_frame: int
    key_image: str = ""  # an image file; empty: render key_frame with fills on
    output_dir: str = ""  # absolute
    output_name: str = ""
    backend: str = "paint"
    timeout: float = 5.0
    curve_dir: str = ""
    use_cache: bool = True
    options: dict = field(default_factory=dict)


class ResultWriter:
    """Turns results into PNG files on a thread of its own (no bpy there)."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
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
                cel = F.cel_rgba(rgb, line) if line is not None else rgb
                F.write_atomic(F.frame_path(self.folder, self.name, number), F.encode_png(cel, level=1))
                if confidence is not None:
                    F.write_atomic(F.frame_path(self.folder / "confidence", self.name, number),
                                   F.encode_png(F.confidence_grey(confidence), level=1))
                self.written.append(number)
            except Exception as exc:  # a full disk or a forbidden folder: say which frame
                self.error = f"writing frame {number} to {self.folder} failed: {exc}"


class ColorizeSession:
    """States: connect -> keyframe -> render (frames stream to the engine as they are
    rendered) -> drain (results) -> finish; any state -> cancelling -> ended."""

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
        self.rendered = 0
        self.results = 0
        self.cached = 0  # results the engine served from its cache
        self.tick_times: list[tuple[str, float]] = []  # (state at start, seconds) per tick
        self.job = None
        self.client: EngineClient | None = None
        self._hello = None
        self._cancel = None
        self._cancel_deadline = 0.0
        self._frames_q: queue.Queue = queue.Queue()
        self._stop_frames = False
        self._lines: dict[int, object] = {}
        self.writer: ResultWriter | None = None
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
        self._stop_frames = True
        if self.job is not None and not self.job.final:
            self._cancel = self.job.cancel(wait=False)
            self._cancel_deadline = time.monotonic() + self.s.timeout
            self.state, self.message = "cancelling", "Cancelling the engine job"
        else:
            self._end("cancelled", "Cancelled")

    def close(self) -> None:
        self._stop_frames = True
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
        elif s.key_image and not os.path.isfile(s.key_image):
            self._fail(f"the keyframe image {s.key_image} does not exist")
        if self.finished:
            return
        curve = CurveKeys.from_dir(s.curve_dir) if s.curve_dir else None
        self.client = EngineClient(s.url, timeout=s.timeout, curve=curve, client_name="longanim-blender")
        self._hello = self.client.hello(wait=False)

    def _tick_connect(self) -> None:
        self.client.poll()
        if not self._hello.done:
            return
        self._hello.result()  # raises the EngineError: engine down, or another protocol major
        backends = (self.client.engine_info.get("capabilities") or {}).get("backends") or []
        if backends and self.s.backend not in backends:
            raise EngineError("unknown_backend", f"the engine has no '{self.s.backend}' backend "
                              f"(it has {', '.join(backends)})")
        self.state, self.message = "keyframe", "Rendering the keyframe"

    def _tick_keyframe(self) -> None:
        s = self.s
        lineart = self.renderer.render(s.key_frame, fills=False)
        if s.key_image:
            from .lineart_render import read_image

            color = read_image(s.key_image)
            if color.shape[:2] != lineart.shape[:2]:
                raise ValueError(f"the keyframe image {s.key_image} is {color.shape[1]}x{color.shape[0]}, "
                                 f"the render {lineart.shape[1]}x{lineart.shape[0]}; paint it at the scene resolution")
        else:
            color = self.renderer.render(s.key_frame, fills=True)
        self.writer = ResultWriter(Path(s.output_dir), s.output_name)
        self.job = self.client.submit_frames(
            self._frames(), [(s.key_frame, F.keyframe_rgb(color), F.lineart_rgb(lineart))],
            backend=s.backend, options=s.options, cache=s.use_cache, confidence=True,
            label=f"blender {s.object_name} {s.frame_start}-{s.frame_end}", wait=False)
        self.state, self.message = "render", "Rendering line art"

    def _tick_render(self) -> None:
        self._take_results()
        if self.state != "render":
            return
        number = self.numbers[self.rendered]
        rgba = self.renderer.render(number, fills=False)
        self._lines[number] = rgba
        self._frames_q.put((number, F.lineart_rgb(rgba)))
        self.rendered += 1
        if self.rendered == len(self.numbers):
            self._frames_q.put(None)
            self.state, self.message = "drain", "Colorizing"

    def _tick_drain(self) -> None:
        self._take_results()
        if self.state != "drain" or not self.job.final:
            return
        if self.job.state != "done":
            err = self.job.error or {}
            raise EngineError(err.get("code", self.job.state), err.get("message", f"the job ended {self.job.state}"))
        missing = [n for n in self.numbers if n not in self.job.received]
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

        build_group(self.scene, self.s.output_dir, self.s.output_name, self.s.frame_start, self.s.frame_end)
        self._end("done", f"Colored {len(self.writer.written)} frames into {self.s.output_dir}")

    def _tick_cancelling(self) -> None:
        self.client.poll()
        if self.job.final or (self._cancel is not None and self._cancel.done) or time.monotonic() > self._cancel_deadline:
            if self._cancel is not None and self._cancel.done and self._cancel.error is not None:
                self._end("cancelled", f"Cancelled here; the engine did not confirm: {self._cancel.error.message}")
            else:
                self._end("cancelled", "Cancelled")

    # -- helpers -------------------------------------------------------------------------

    def _take_results(self) -> None:
        self.client.poll()
        for result in self.job.poll():
            self.results += 1
            self.cached += bool(result.cached)
            self.writer.put(result.number, result.rgb, result.confidence, self._lines.pop(result.number, None))
        if self.writer.error:
            raise RuntimeError(self.writer.error)
        if self.job.final and self.job.state != "done":
            err = self.job.error or {}
            raise EngineError(err.get("code", self.job.state), err.get("message", f"the job ended {self.job.state}"))

    def _frames(self):
        """Runs on the client's reader thread: frames as the main thread renders them."""
        while True:
            try:
                item = self._frames_q.get(timeout=0.2)
            except queue.Empty:
                if self._stop_frames:
                    return
                continue
            if item is None:
                return
            yield item

    def _engine_message(self, code: str, message: str) -> str:
        if code == "timeout":
            return (f"No engine answers at {self.s.url}. Start one with `longanim serve --bind {self.s.url}` "
                    "or set the address in the add-on's preferences.")
        if code == "incompatible_version":
            return f"Engine and add-on speak different protocol versions (add-on {PROTOCOL_VERSION}): {message}"
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
