"""A job: what was asked, how far it got, and the inline frames it is fed.

A job may have only `RESULT_CREDITS` results in flight, so a slow client slows its own
job instead of filling the engine's memory; the control loop returns a credit each
time the client acknowledges a result.

A streamed job whose client stops sending gives the device up when another job is
waiting for it (`InputPaused`): it goes back to waiting, keeps the frames it was sent
and what it has sent back, and is queued again when more frames arrive. Every event of
a job carries the next `event_seq`, so a client that missed some can tell.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from longanim.engine.backends.base import Cancelled
from longanim.engine.errors import LonganimError
from longanim.protocol import messages as M

RESULT_CREDITS = 8
KEPT_AFTER_END = ("backend", "label", "confidence")
FRAME_WAIT_S = 0.1
PAUSE_AFTER_S = 1.0  # a stream silent this long yields the device to a waiting job
RETAIN_BYTES = 1 << 30  # a job's inline frames kept so it can start over; a longer stream lets them go


class InputPaused(Exception):
    """The stream ran dry while another job waits for the device."""

    def __init__(self, since: float):
        super().__init__("waiting for input")
        self.since = since  # monotonic time when the feed was found empty


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
    sent: set = field(default_factory=set)  # frame numbers whose result went out (kept across pauses)
    paused: bool = False  # waiting for input, off the device and out of the queue
    event_seq: int = 0  # the last event's number
    start: dict | None = None  # a path job's plan: fresh, resumed from a checkpoint, warmed up (protocol 1.2)
    _events: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def next_event_seq(self) -> int:
        """Numbers the job's events in the order they are made (workers and the control
        loop both make some; `next` on a count is atomic under the GIL)."""
        self.event_seq = next(self._events)
        return self.event_seq

    def release_inputs(self) -> None:
        """Finished jobs stay listed for a while (for status and reattach); their pixels and
        the rest of what was submitted must not, only what a summary and a resend read."""
        self.feed = None
        self.content = {k: self.content[k] for k in KEPT_AFTER_END if k in self.content}

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
            "event_seq": self.event_seq,
            **({"start": self.start} if self.start is not None else {}),
        }


class FrameFeed:
    """Inline frames of a job: those sent with submit plus any appended later.

    They are kept, so a job that gave up the device can start again from its first frame,
    while they total at most `retain_bytes`; a longer stream lets each appended frame go
    once the backend has it (its bytes go back to the engine's budget, `released`) and,
    unable to start over, keeps the device while it waits.
    """

    def __init__(self, frames: list[tuple[int, np.ndarray]], more: bool, retain_bytes: int = RETAIN_BYTES):
        self._frames = collections.deque(frames)
        self._dropped = 0  # frames handed out and let go: the absolute index of _frames[0]
        self._initial = len(frames)  # these live in the submit message, held anyway
        self._more = more
        self._cond = threading.Condition()
        self.count = len(frames)
        self.numbers = {n for n, _ in frames}
        self.last_arrival = time.monotonic()
        self.retain_bytes = retain_bytes
        self.nbytes = sum(a.nbytes for _, a in frames)
        self.released = 0

    @property
    def complete(self) -> bool:
        return not self._more

    @property
    def restartable(self) -> bool:
        return self.nbytes <= self.retain_bytes

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
            self.nbytes += sum(a.nbytes for _, a in frames)
            self._more = more
            self.last_arrival = time.monotonic()
            self._cond.notify_all()

    def snapshot(self) -> list[tuple[int, np.ndarray]]:
        with self._cond:
            return list(self._frames)

    def iterate(self, cancelled: Callable[[], bool], timeout_s: float,
                others_waiting: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, np.ndarray]]:
        """Frames in arrival order from the first; a client that stops sending fails the job
        after `timeout_s` instead of holding the device forever, and gives the device up
        sooner (`InputPaused`) when another job is waiting for it and this one can start over."""
        index = self._dropped
        while True:
            with self._cond:
                waited_since = time.monotonic()
                while index - self._dropped >= len(self._frames) and self._more:
                    if cancelled():
                        raise Cancelled("cancelled while waiting for more frames")
                    if time.monotonic() - max(waited_since, self.last_arrival) > timeout_s:
                        raise JobFailed("input_timeout", f"no more frames arrived for {timeout_s:.0f} s "
                                        "although the input was not closed (more: false)")
                    if time.monotonic() - waited_since > PAUSE_AFTER_S and self.restartable and others_waiting():
                        raise InputPaused(time.monotonic())
                    self._cond.wait(FRAME_WAIT_S)
                if index - self._dropped >= len(self._frames):
                    return
                item = self._frames[index - self._dropped]
                if not self.restartable:
                    self._let_go(index)
            index += 1
            yield item

    def _let_go(self, upto: int) -> None:
        """Forget frames up to index `upto`, handed out already: the backend has them."""
        while self._dropped <= upto:
            _, array = self._frames.popleft()
            if self._dropped >= self._initial:
                self.released += array.nbytes
            self._dropped += 1
