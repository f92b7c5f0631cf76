"""One colorize run of a node: a rendered line-art sequence through the engine into the
node's cache folder. No `nuke` here: the Nuke layer renders the inputs to EXR files and
hands over their paths, and this runs on its worker thread (or, in a command-line render,
on the render's own thread).

`step()` does one small non-blocking turn (the client's `poll()`, writing the results that
came); `run()` loops it with a short sleep, asks `cancelled()` every turn and reports
`progress()`. Cancelling cancels the engine's job too, and waits a few seconds at most for
its answer. Frames are read, converted to display sRGB and sent on the client's own
reader thread, a bounded stretch ahead of the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longanim_nuke import colour, results
from longanim_nuke.settings import Settings

AHEAD = {"paint": 16, "passthrough": 16}  # frames sent before their results: what both sides hold
AHEAD_OTHER = 162  # a diffusion backend needs whole 81-frame segments before its first result
CANCEL_WAIT_S = 5.0
TICK_S = 0.02


@dataclass
class Progress:
    done: int
    total: int
    message: str

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


@dataclass
class Outcome:
    state: str  # "done", "cancelled" or "failed"
    written: int
    total: int
    message: str
    job_id: str | None = None
    cached: int = 0


class ColorizeRun:
    """`lineart` is the rendered input (`name.####.exr`, scene-linear, premultiplied);
    `keyframes` maps each keyed frame to its rendered reference image."""

    def __init__(self, settings: Settings, lineart: str, keyframes: dict[int, Path], transform: colour.DisplayTransform,
                 *, label: str = "nuke", client_factory: Callable[..., Any] | None = None):
        self.settings = settings
        self.lineart = lineart
        self.keyframes = keyframes
        self.transform = transform
        self.label = label
        self.cache_dir = Path(settings.cache_dir)
        self.total = settings.last - settings.first + 1
        self._client_factory = client_factory
        self.client: Any = None
        self.job: Any = None
        self.written: set[int] = set()
        self.cached = 0
        # per frame on transparent film: its alpha and the line art on white (with_coverage)
        self._films: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self._cancel: Any = None
        self._cancel_deadline = 0.0
        self._heard = time.monotonic()
        self._events = -1
        self.outcome: Outcome | None = None

    # -- the run, a turn at a time -----------------------------------------------------------

    def start(self) -> None:
        """Read the keyframes, open a client (on the calling thread: it owns it) and submit
        without waiting; raises InputError/LonganimError for bad input."""
        from longanim.protocol.client import EngineClient

        keyframes = [(n, *self._keyframe(n, path)) for n, path in sorted(self.keyframes.items())]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        results.clear_manifest(self.cache_dir)
        factory = self._client_factory or EngineClient
        self.client = factory(self.settings.engine, timeout=self.settings.timeout, client_name="longanim-nuke")
        self.job = self.client.submit_frames(
            self._frames(), keyframes, backend=self.settings.backend, options=self.settings.options,
            confidence=True, label=self.label, max_ahead=AHEAD.get(self.settings.backend, AHEAD_OTHER),
            timeout=self.settings.timeout, wait=False)
        self._heard = time.monotonic()

    def step(self) -> bool:
        """One non-blocking turn; False once the run has ended (see `outcome`)."""
        if self.outcome is not None:
            return False
        for result in self.job.poll():
            self._write(result)
        now = time.monotonic()
        if self.job.events_seen != self._events:
            self._events, self._heard = self.job.events_seen, now
        if self.job.final and not self.job.results_queue:
            self._finish()
            return False
        if self._cancel is not None and now > self._cancel_deadline:
            self._end("cancelled", f"cancelled; the engine did not confirm within {CANCEL_WAIT_S:.0f} s")
            return False
        if self._cancel is None and self.job.id is not None and now - self._heard > self.settings.timeout:
            self.cancel()
            self._end("failed", f"nothing from the engine at {self.settings.engine} for "
                                f"{self.settings.timeout:.0f} s; the job was cancelled")
            return False
        return True

    def cancel(self) -> None:
        """Ask the engine to stop the job (also before it has named it); returns at once."""
        if self._cancel is None and self.job is not None and not self.job.final:
            self._cancel = self.job.cancel(wait=False)
            self._cancel_deadline = time.monotonic() + CANCEL_WAIT_S

    def progress(self) -> Progress:
        if self._cancel is not None:
            return Progress(len(self.written), self.total, "cancelling...")
        state = getattr(self.job, "state", "starting")
        eta = getattr(self.job, "eta_s", None)
        tail = f", about {eta:.0f} s left" if isinstance(eta, (int, float)) and eta > 0 else ""
        return Progress(len(self.written), self.total, f"{state}: {len(self.written)}/{self.total} frames{tail}")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, cancelled: Callable[[], bool] = lambda: False,
            progress: Callable[[Progress], None] = lambda p: None, tick: float = TICK_S) -> Outcome:
        """The whole run on the calling thread; never raises for the engine's or the input's
        failures (they are the outcome's message)."""
        from longanim.engine.errors import LonganimError

        try:
            self.start()
            while self.step():
                if cancelled():
                    self.cancel()
                progress(self.progress())
                time.sleep(tick)
            progress(self.progress())
        except (LonganimError, OSError) as exc:
            if self.job is not None and self.outcome is None:
                self.cancel()
            self._end("failed", str(exc))
        finally:
            self.close()
        assert self.outcome is not None
        return self.outcome

    # -- pixels ------------------------------------------------------------------------------

    def _keyframe(self, number: int, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Color, line art and, for line art on transparent film, which fills are opaque:
        where the reference is, or everywhere when it has no alpha (as `longanim colorize`)."""
        from longanim.engine.errors import InputError
        from longanim.engine.sequences.image_files import read_image

        color, color_alpha = colour.plate_to_display(read_image(path).pixels, self.transform)
        lineart, film = colour.plate_to_display(read_image(results.frame_path(self.lineart, number)).pixels,
                                                self.transform)
        if color.shape != lineart.shape:
            raise InputError(f"the reference for frame {number} is {color.shape[1]}x{color.shape[0]} but the line "
                             f"art is {lineart.shape[1]}x{lineart.shape[0]}")
        opaque = None
        if film is not None:
            opaque = (np.round(color_alpha * 255.0).astype(np.uint8) if color_alpha is not None
                      else np.full(color.shape[:2], 255, np.uint8))
        return color, lineart, opaque

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Read on the client's reader thread: each rendered frame, as the colorizer sees it."""
        from longanim.engine.sequences.image_files import read_image

        for number in range(self.settings.first, self.settings.last + 1):
            rgb, alpha = colour.plate_to_display(read_image(results.frame_path(self.lineart, number)).pixels,
                                                 self.transform)
            self._films[number] = None if alpha is None else (alpha, rgb)
            yield number, rgb

    def _write(self, result: Any) -> None:
        if result.rgb is None or result.number in self.written:
            return
        from longanim.engine.pipeline import with_coverage

        # A fourth channel is the fills' coverage (film line art): lines over opaque fills.
        rgb, alpha = with_coverage(result.rgb, self._films.pop(result.number, None))
        rgba = colour.display_to_plate(rgb, alpha, self.transform)
        results.write_frame(results.frame_path(results.result_pattern(self.cache_dir), result.number), rgba,
                            result.confidence)
        self.written.add(result.number)
        self.cached += bool(result.cached)

    def _finish(self) -> None:
        job = self.job
        if job.state == "done":
            missing = [n for n in range(self.settings.first, self.settings.last + 1) if n not in self.written]
            if missing:
                self._end("failed", f"the engine's job {job.id} ended without frames {missing[:5]}")
                return
            results.write_manifest(self.cache_dir, self.settings.key(), job.id, self.cached)
            self._end("done", f"{self.total} frames colorized ({self.cached} from the engine's cache)")
        elif job.state == "cancelled":
            self._end("cancelled", f"cancelled after {len(self.written)} of {self.total} frames")
        else:
            err = job.error or {}
            self._end("failed", f"{err.get('message', 'the engine job failed')} ({err.get('code', job.state)})")

    def _end(self, state: str, message: str) -> None:
        if self.outcome is None:
            self.outcome = Outcome(state, len(self.written), self.total, message,
                                   getattr(self.job, "id", None), self.cached)
