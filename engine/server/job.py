"""A job: what was asked, how far it got, and the inline frames it is fed.

A job may have only `RESULT_CREDITS` results in flight, so a slow client slows its own
job instead of filling the engine's memory; the control loop returns a credit each
time the client acknowledges a result.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from longanim.engine.backends.base import Cancelled
from longanim.engine.errors import LonganimError
from longanim.protocol import messages as M

RESULT_CREDITS = 8
FRAME_WAIT_S = 0.1


class JobFailed(LonganimError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Job:
    id: str
    session: str
    identity: list  # ROUTER envelope: where this job's events go (changes on reattach)
    submit_header: dict
    content: dict
    state: str = "queued"
    frames_total: int | None = None
    frames_done: int = 0
    frames_cached: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: dict | None = None
    device: str | None = None
    eta_s: float | None = None
    done_keys: dict = field(default_factory=dict)  # frame number -> cache key (inline results)
    cancel: threading.Event = field(default_factory=threading.Event)
    credits: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(RESULT_CREDITS))
    feed: "FrameFeed | None" = None
    input_bytes: int = 0  # inline pixels held until the job ends
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards queued -> running/cancelled

    def release_inputs(self) -> None:
        """Finished jobs stay listed for a while; their pixels must not."""
        self.feed = None
        self.content.pop("_buffers", None)

    @property
    def backend(self) -> str:
        return self.content["backend"]

    @property
    def final(self) -> bool:
        return self.state in M.FINAL_STATES

    def summary(self) -> dict:
        return {
            "job_id": self.id,
            "state": self.state,
            "backend": self.backend,
            "label": self.content.get("label", ""),
            "session": self.session,
            "device": self.device,
            "frames_total": self.frames_total,
            "frames_done": self.frames_done,
            "frames_cached": self.frames_cached,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "eta_s": self.eta_s,
            "error": self.error,
        }


class FrameFeed:
    """Inline frames of a job: those sent with submit plus any appended later."""

    def __init__(self, frames: list[tuple[int, np.ndarray]], more: bool):
        self._frames = collections.deque(frames)
        self._more = more
        self._cond = threading.Condition()
        self.count = len(frames)
        self.numbers = {n for n, _ in frames}

    @property
    def complete(self) -> bool:
        return not self._more

    def append(self, frames: list[tuple[int, np.ndarray]], more: bool) -> None:
        with self._cond:
            if not self._more:
                raise M.ProtocolError("conflict", "this job's input is complete (more was false)")
            dup = self.numbers.intersection(n for n, _ in frames)
            if dup:
                raise M.invalid(f"frames {sorted(dup)[:5]} were already sent")
            self._frames.extend(frames)
            self.numbers.update(n for n, _ in frames)
            self.count += len(frames)
            self._more = more
            self._cond.notify_all()

    def snapshot(self) -> list[tuple[int, np.ndarray]]:
        with self._cond:
            return list(self._frames)

    def iterate(self, cancelled: Callable[[], bool], timeout_s: float) -> Iterator[tuple[int, np.ndarray]]:
        """Frames in arrival order; a client that stops sending fails the job after
        `timeout_s` instead of holding the device forever."""
        while True:
            with self._cond:
                waited_since = time.monotonic()
                while not self._frames and self._more:
                    if cancelled():
                        raise Cancelled("cancelled while waiting for more frames")
                    if time.monotonic() - waited_since > timeout_s:
                        raise JobFailed("input_timeout", f"no more frames arrived for {timeout_s:.0f} s "
                                        "although the input was not closed (more: false)")
                    self._cond.wait(FRAME_WAIT_S)
                if not self._frames:
                    return
                item = self._frames.popleft()  # drop our reference as soon as it is handed out
            yield item
