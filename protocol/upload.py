"""A job's inline frames on their way to the engine, from `EngineClient.submit_frames`.

The caller's frames are read on a worker thread (`_FrameReader`: a lazy iterator may decode
files, and nothing may block a GUI's poll()), cut into messages that fit the engine's
max_message_bytes and sent as the submit and then as appends, a few in flight and at most
`max_ahead` frames ahead of the results taken. Apart from the job API (`client.py`) because
it is flow control over bytes and threads, not what a job is; it works the client's requests
through the client it was given (`begin`, `cancel`, and the submit's own bookkeeping).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Iterable

from longanim.protocol import messages as M
from longanim.protocol.connection import Pending

if TYPE_CHECKING:  # the client imports this module
    from longanim.protocol.client import EngineClient, Job

CHUNK_BYTES = 16 * 1024 * 1024  # inline frames per message; more go in append requests
APPEND_WINDOW = 4  # append requests in flight while results stream back (64 MiB with CHUNK_BYTES)
# Of the engine's max_message_bytes, this much is left for the maps (header, content with
# one small descriptor per frame); a message carries at most MAX_FRAMES_PER_MESSAGE frames.
HEADER_ROOM = 64 * 1024
MAX_FRAMES_PER_MESSAGE = 512
READ_AHEAD_BYTES = 64 * 1024 * 1024  # frames read on the worker thread, waiting to be sent
FLUSH_S = 0.5  # frames come slower than this (rendered one by one): send what is read


class Upload:
    """A job's inline frames on their way: read on a worker thread, cut into messages that
    fit the engine's max_message_bytes, sent as the submit and then as appends (a few in
    flight, at most `max_ahead` frames ahead of the results). `advance` moves it on from
    poll() and never waits."""

    def __init__(self, client: EngineClient, job: Job, frames: Iterable, content: dict, kf_bufs: list,
                 chunk_bytes: int, max_ahead: int | None, timeout: float):
        self.client, self.job = client, job
        self.content, self.kf_bufs = content, kf_bufs
        self.kf_bytes = sum(memoryview(b).nbytes for b in kf_bufs)
        self.chunk_bytes = max(1, int(chunk_bytes))
        self.max_ahead = max_ahead
        self.timeout = timeout
        self.reader = _FrameReader(frames, min(self.chunk_bytes, READ_AHEAD_BYTES), max_ahead)
        self.chunk: list = []
        self.chunk_size = 0
        self.sent = 0  # frames in messages so far
        self.submit: Pending | None = None
        self.appends: list[Pending] = []
        self.closed = False  # the message with more: false is sent

    def stop(self) -> None:
        self.reader.stop()

    def advance(self) -> bool:
        """Send what is ready; False once nothing is left to do (then the reader is stopped)."""
        job = self.job
        if not job.final and self.reader.error is not None:
            self._fail("input_error", self.reader.error)
        if job.final or self.closed:
            self.stop()
            return False
        limit = self.client._message_limit(self.timeout)
        if limit is None:
            return True  # waiting for the engine's limits
        if self.submit is None:
            self._send_submit(limit)
        elif job.id is not None:
            while not self.closed and not job.final and len(self.appends) < APPEND_WINDOW:
                chunk = self._next_chunk(limit)
                if chunk is None:
                    break
                self._send_append(*chunk)
        if job.final or self.closed:
            self.stop()
            return False
        return True

    def _send_submit(self, limit: int) -> None:
        if self.kf_bytes > limit:
            self._fail("too_large", f"the keyframes are {self.kf_bytes} bytes, more than the "
                       f"{self.client.max_message_bytes} bytes the engine at {self.client.url} accepts in one "
                       "message (max_message_bytes); send smaller keyframes or raise `longanim serve --max-message-mb`")
            return
        chunk = self._next_chunk(limit - self.kf_bytes)
        if chunk is None:
            return
        frames, last = chunk
        bufs = list(self.kf_bufs)
        content = {**self.content, "input": {"kind": "inline", "frames": _describe(frames, bufs), "more": not last}}
        self.submit = self.client._send_submit(self.job, content, bufs, self.timeout)
        self.sent += len(frames)
        self.closed = last

    def _send_append(self, frames: list, last: bool) -> None:
        bufs: list = []
        content = {"job_id": self.job.id, "frames": _describe(frames, bufs), "more": not last}
        p = self.client.begin(M.APPEND, content, bufs, timeout=self.timeout)
        self.appends.append(p)
        p.add_done_callback(self._appended)
        self.sent += len(frames)
        self.closed = last

    def _appended(self, p: Pending) -> None:
        self.appends.remove(p)
        if p.error is not None and not self.job.final:
            if p.error.code == "conflict" and self.job.cancel_sent:
                # This side's cancel crossed these frames on the wire: the engine's answer to
                # the cancel, and its job_done, say how the job ended; nothing more is sent.
                self.stop()
                return
            # Frames were refused (or never arrived): the job cannot complete, so stop it.
            self._fail(p.error.code, p.error.message)

    def _fail(self, code: str, message: str) -> None:
        self.job._fail_here(code, message)
        self.stop()
        if self.job.id is not None:
            self.client.cancel(self.job.id, wait=False)

    def _next_chunk(self, limit: int) -> tuple[list, bool] | None:
        """The next message's frames and whether they are the last, once the message is
        full, the input has ended, or frames come slowly; None while there is nothing to send.
        `limit` is the message's room for frames: a submit whose keyframes leave too little
        for the first frame goes without frames."""
        while True:
            head, ended = self.reader.peek()
            if head is None:
                if ended or (self.chunk and time.monotonic() - self.reader.last_put > FLUSH_S):
                    return self._take(), ended
                return None
            number, array = head
            largest = self.client.max_message_bytes - HEADER_ROOM
            if array.nbytes > largest:
                self._fail("too_large", f"frame {number} is {array.nbytes} bytes ({'x'.join(map(str, array.shape))} "
                           f"{array.dtype}), more than the {self.client.max_message_bytes} bytes the engine at "
                           f"{self.client.url} accepts in one message (max_message_bytes, less {HEADER_ROOM} for "
                           "the header); send smaller frames or raise `longanim serve --max-message-mb`")
                return None
            size = self.chunk_size + array.nbytes
            if size > limit or (self.chunk and (size > self.chunk_bytes or len(self.chunk) >= MAX_FRAMES_PER_MESSAGE)):
                return self._take(), False
            # Results not yet taken (results(), poll()) still count: a slow reader slows the input.
            ahead = self.sent + len(self.chunk) - len(self.job.received) + len(self.job.results_queue)
            if self.max_ahead is not None and ahead >= self.max_ahead:
                return (self._take(), False) if self.chunk else None
            self.reader.pop()
            self.chunk.append(head)
            self.chunk_size += array.nbytes

    def _take(self) -> list:
        chunk, self.chunk, self.chunk_size = self.chunk, [], 0
        return chunk


def _describe(frames: list, bufs: list) -> list[dict]:
    return [{"number": n, "array": M.array_desc(a, bufs)} for n, a in frames]


class _FrameReader:
    """Takes the caller's (number, array) pairs on a thread of its own, so a lazy iterator
    that decodes files never runs inside poll(); at most `budget` bytes and `max_frames`
    frames wait ready (one frame at least), so memory stays bounded however long the shot."""

    def __init__(self, frames: Iterable, budget: int, max_frames: int | None = None):
        self._frames = frames
        self._budget = max(1, budget)
        self._max_frames = max_frames
        self._ready: collections.deque = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._ended = False
        self.error: str | None = None
        self.last_put = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="longanim-frames", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import numpy as np

        last = None
        error = None
        try:
            for item in self._frames:
                number, array = item
                number = int(number)
                array = np.ascontiguousarray(array)
                if array.dtype.name not in M.DTYPES:
                    raise ValueError(f"frame {number} is {array.dtype}; frames must be one of {sorted(M.DTYPES)}")
                if not self._put(number, array):
                    return
                last = number
        except BaseException as exc:  # the user's iterator: whatever it raises fails the job, clearly
            where = f"after frame {last}" if last is not None else "at the first frame"
            error = f"reading the frames to send failed {where}: {type(exc).__name__}: {exc}"
        with self._cond:
            self._ended, self.error = True, error

    def _put(self, number: int, array) -> bool:
        with self._cond:
            while not self._stopped and self._ready and (
                    self._bytes + array.nbytes > self._budget
                    or (self._max_frames is not None and len(self._ready) >= self._max_frames)):
                self._cond.wait(0.1)
            if self._stopped:
                return False
            self._ready.append((number, array))
            self._bytes += array.nbytes
            self.last_put = time.monotonic()
            return True

    def peek(self) -> tuple[tuple | None, bool]:
        """The next frame (or None) and whether the input has ended cleanly with nothing left."""
        with self._cond:
            head = self._ready[0] if self._ready else None
            return head, head is None and self._ended and self.error is None

    def pop(self) -> None:
        with self._cond:
            _, array = self._ready.popleft()
            self._bytes -= array.nbytes
            self._cond.notify()

    def stop(self) -> None:
        """Let the thread end at its next frame and drop what it read."""
        with self._cond:
            self._stopped = True
            self._ready.clear()
            self._bytes = 0
            self._cond.notify()
