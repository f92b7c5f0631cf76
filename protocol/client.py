"""Client of the longanim engine: the job API over a `Connection` (pyzmq + msgpack only;
numpy is imported when pixels are sent or received), so it runs inside Blender's and
Nuke's Python.

Blocking use (scripts, the farm CLI)::

    with EngineClient("tcp://127.0.0.1:5555") as engine:
        job = engine.submit_frames(frames, keyframes=[(0, color0)], backend="paint")
        for result in job.results(timeout=60):
            save(result.number, result.rgb)

Non-blocking use (a GUI timer calls this every ~50 ms; nothing here ever waits)::

    job = engine.submit_frames(frames, keyframes, wait=False)
    def on_timer():
        for event in engine.poll():          # returns at once
            ...                              # progress / result / job_done Messages
        for result in job.poll():            # or just this job's results
            show(result.number, result.rgb)
        return None if job.final else 0.05   # job.state, job.frames_done, job.eta_s, job.error

An EngineClient belongs to one thread; use one per thread. When the connection
reconnects after silence, or finds a restarted engine, the client reattaches its
unfinished jobs, so results that arrived before the gap are kept and the rest are sent
again from the cache.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from longanim.protocol import messages as M
from longanim.protocol.connection import (
    DEFAULT_URL,
    Connection,
    CurveKeys,
    EngineError,
    EngineTimeout,
    default_token_path,
    error_fields,
)
from longanim.protocol.wire import PROTOCOL_VERSION, Message, WireError, compatible, serialize

__all__ = ["CHUNK_BYTES", "DEFAULT_URL", "CurveKeys", "EngineClient", "EngineError", "EngineTimeout", "Job",
           "Result", "default_token_path"]

CHUNK_BYTES = 16 * 1024 * 1024  # inline frames per message; more go in append requests
APPEND_WINDOW = 4  # append requests in flight while results stream back (64 MiB with CHUNK_BYTES)


@dataclass
class Result:
    job_id: str
    number: int
    rgb: Any = None  # numpy array (read-only view of the received frame) for inline output
    confidence: Any = None
    path: str | None = None  # for output to a path
    cached: bool = False
    info: dict = field(default_factory=dict)


class Job:
    """A submitted job as the client sees it; updated by `EngineClient.poll`."""

    def __init__(self, client: "EngineClient", job_id: str | None, submit_msg: Message | None):
        self.client = client
        self.id = job_id
        self.submit_msg = submit_msg
        self.state = "queued"
        self.frames_done = 0
        self.frames_total: int | None = None
        self.eta_s: float | None = None
        self.error: dict | None = None
        self.summary: dict = {}
        self.received: set[int] = set()
        self.results_queue: collections.deque[Result] = collections.deque()
        self._to_send: Iterator | None = None  # remaining inline frame chunks
        self._appends_in_flight: list[str] = []
        self._failed_here = False
        self.events_seen = 0

    @property
    def final(self) -> bool:
        return self.state in M.FINAL_STATES

    def _on_event(self, msg: Message) -> None:
        self.events_seen += 1
        c = msg.content
        if msg.msg_type == M.RESULT:
            number = c.get("number")
            if not isinstance(number, int) or number in self.received:
                return  # a result sent again after a reattach
            result = Result(self.id, number, path=c.get("path"), cached=bool(c.get("cached")),
                            info=c.get("info") or {})
            try:
                for name in ("rgb", "confidence"):
                    if c.get(name) is not None:
                        M.check_array(c[name], msg.buffers, f"result.{name}")
                        setattr(result, name, M.array_from(c[name], msg.buffers))
            except M.ProtocolError:
                return  # a damaged result must not take the host application down
            self.received.add(number)
            self.results_queue.append(result)
        elif msg.msg_type in (M.PROGRESS, M.DONE):
            if self._failed_here:
                return  # keep the reason this client stopped the job
            for key in ("state", "frames_done", "frames_total", "eta_s", "error"):
                if key in c:
                    setattr(self, key, c[key])
            if msg.msg_type == M.DONE:
                self.summary = c
                self._to_send = None

    def poll(self, timeout: float = 0.0) -> list[Result]:
        """Results that arrived so far (waiting at most `timeout` for the first one)."""
        deadline = time.monotonic() + timeout
        while True:
            self.client._pump(max(0.0, deadline - time.monotonic()) if not self.results_queue else 0.0)
            if self.results_queue or self.final or time.monotonic() >= deadline:
                break
        out = list(self.results_queue)
        self.results_queue.clear()
        return out

    def results(self, timeout: float = 60.0) -> Iterator[Result]:
        """Yield results until the job ends. `timeout` bounds the wait for each next
        event (progress counts), not the whole job; a failed job raises EngineError."""
        last = time.monotonic()
        seen = self.events_seen
        while True:
            while self.results_queue:
                last = time.monotonic()
                yield self.results_queue.popleft()
            if self.final:
                break
            self.client._pump(0.05)
            if self.events_seen != seen:  # progress counts, e.g. denoising steps of a long segment
                seen, last = self.events_seen, time.monotonic()
            elif time.monotonic() - last > timeout:
                raise EngineTimeout(f"job {self.id}: nothing from the engine for {timeout:.0f} s")
        while self.results_queue:
            yield self.results_queue.popleft()
        if self.state == "failed":
            err = self.error or {}
            raise EngineError(err.get("code", "failed"), f"job {self.id} failed: {err.get('message', '?')}")

    def wait(self, timeout: float = 60.0) -> str:
        """Drain results (kept in `collected`) and return the final state."""
        self.collected = {}
        try:
            for result in self.results(timeout):
                self.collected[result.number] = result
        except EngineError as exc:
            if exc.code == "timeout":
                raise
        return self.state

    def cancel(self, timeout: float | None = None) -> str:
        if self.id is None:
            raise EngineError("conflict", "the engine has not accepted this job yet; poll first")
        return self.client.cancel(self.id, timeout=timeout)


class EngineClient(Connection):
    """Jobs over one connection; `connection` options (timeout, heartbeat_s, liveness, curve,
    context) are `Connection`'s."""

    def __init__(self, url: str = DEFAULT_URL, *, client_name: str = "longanim-client", **connection):
        self.client_name = client_name
        self.jobs: dict[str, Job] = {}
        self.engine_info: dict = {}
        self._early: dict[str, list[Message]] = {}
        self._reattaching: dict[str, str] = {}  # reattach msg_id -> job id
        self._pending_submits: dict[str, Job] = {}  # submit msg_id -> job without an id yet
        # Events for poll(); bounded, since blocking users read results from their Job instead.
        self._undelivered: collections.deque[Message] = collections.deque(maxlen=10_000)
        super().__init__(url, **connection)

    def __enter__(self) -> "EngineClient":
        return self

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Events that arrived since the last call (waiting at most `timeout` for one);
        also keeps heartbeats, reconnects and streamed input going. 0 never blocks."""
        if not self._undelivered:
            self._pump(timeout)
        events = list(self._undelivered)
        self._undelivered.clear()
        return events

    # -- what the connection carries -------------------------------------------------------

    def _has_live_work(self) -> bool:
        return any(not j.final for j in self.jobs.values())

    def _on_reconnected(self) -> None:
        self._reattach_all()

    def _on_engine_restarted(self) -> None:
        # Our jobs died with the old engine unless it was the same one (then reattaching is harmless).
        self._reattach_all()

    def _after_pump(self) -> None:
        self._pump_appends()

    def _reattach_all(self) -> None:
        for job in self.jobs.values():
            if not job.final:
                msg = self._make_request(M.REATTACH, {"job_id": job.id, "resend": True})
                self._reattaching[msg.msg_id] = job.id
                self._send_frames(serialize(msg), time.monotonic() + self.timeout)

    def _route(self, msg: Message) -> None:
        parent = msg.parent_id
        if msg.msg_type.endswith("_reply") or msg.msg_type == M.ERROR:
            if parent in self._pending_submits:
                job = self._pending_submits.pop(parent)
                if msg.content.get("status") == "ok":
                    job.id, job.submit_msg = msg.content["job_id"], msg
                    self._register(job)
                else:
                    job.state, job.error = "failed", error_fields(msg)
            elif parent in self._reattaching:
                job = self.jobs.get(self._reattaching.pop(parent))
                if job is not None and msg.content.get("status") == "error" and not job.final:
                    # e.g. the engine restarted and forgot the job: fail it rather than wait forever
                    job.state = "failed"
                    job.error = {"code": "lost", "message": "the engine no longer knows this job "
                                 f"({error_fields(msg)['message']}); submit it again"}
            elif msg.msg_type == "append_reply" or msg.msg_type == M.ERROR:
                for job in self.jobs.values():
                    if parent in job._appends_in_flight:
                        job._appends_in_flight.remove(parent)
                        if msg.content.get("status") == "error" and not job.final:
                            # Frames were refused: the job cannot complete, so stop it.
                            job.state, job.error, job._to_send = "failed", error_fields(msg), None
                            job._failed_here = True
                            self._awaiting.discard(self.send(M.CANCEL, {"job_id": job.id}))
            return
        if msg.msg_type in M.EVENTS:
            job_id = msg.content.get("job_id")
            job = self.jobs.get(job_id)
            if job is not None:
                job._on_event(msg)
            elif isinstance(job_id, str) and (self._awaiting or self._pending_submits) and len(self._early) < 64:
                # Events can overtake the submit reply while request() is still waiting for it.
                self._early.setdefault(job_id, []).append(msg)
            self._undelivered.append(msg)
        # anything else: a newer engine's message type; ignore it

    # -- high level -----------------------------------------------------------------------

    def hello(self, timeout: float | None = None) -> dict:
        reply = self.request(M.HELLO, {"protocol_version": PROTOCOL_VERSION, "client": self.client_name},
                             timeout=timeout)
        theirs = reply.content.get("protocol_version")
        try:
            ok = isinstance(theirs, str) and compatible(theirs)
        except WireError:
            ok = False
        if not ok:
            raise EngineError("incompatible_version", f"the engine at {self.url} speaks protocol {theirs}, "
                              f"this client {PROTOCOL_VERSION}; update whichever side is older")
        self.engine_info = reply.content
        return reply.content

    def capabilities(self, timeout: float | None = None) -> dict:
        return self.request(M.CAPABILITIES, {}, timeout=timeout).content

    def ping(self, timeout: float | None = None) -> float:
        """Round-trip time in seconds."""
        t0 = time.perf_counter()
        self.request(M.PING, {}, timeout=timeout, retries=0)
        return time.perf_counter() - t0

    def status(self, job_id: str | None = None, timeout: float | None = None) -> list[dict]:
        return self.request(M.STATUS, {"job_id": job_id}, timeout=timeout).content["jobs"]

    def cancel(self, job_id: str, timeout: float | None = None) -> str:
        state = self.request(M.CANCEL, {"job_id": job_id}, timeout=timeout).content["state"]
        if job_id in self.jobs and state in M.FINAL_STATES:
            self.jobs[job_id].state = state
        return state

    def shutdown(self, token: str | None = None, timeout: float | None = None) -> None:
        """Stop the engine. Without `token`, read it from the file the engine wrote."""
        if token is None:
            path = default_token_path(self.url)
            try:
                token = path.read_text().strip()
            except OSError as exc:
                raise EngineError("unauthorized", f"cannot read the engine's shutdown token {path}: {exc}") from None
        self.request(M.SHUTDOWN, {"token": token}, timeout=timeout, retries=0)

    def reattach(self, job_id: str, resend: bool = True, timeout: float | None = None) -> Job:
        """Take over a job's events, e.g. after this program restarted; with `resend`,
        results finished so far are sent again (from the engine's cache)."""
        # Events that arrive while we wait for the reply are held and replayed in order below.
        job = self.jobs.pop(job_id, None)
        try:
            reply = self.request(M.REATTACH, {"job_id": job_id, "resend": resend}, timeout=timeout)
        except BaseException:
            if job is not None:
                self.jobs[job_id] = job
            raise
        if job is None:
            job = Job(self, job_id, reply)
        if resend:
            job.received.clear()
        summary = reply.content["job"]
        for key in ("state", "frames_done", "frames_total", "eta_s", "error"):
            setattr(job, key, summary.get(key))
        if job.final and resend and reply.content.get("resending"):
            job.state = "running"  # the final job_done follows the resent results
        self._register(job)
        return job

    def submit_frames(
        self,
        frames: Iterable[tuple[int, Any]],
        keyframes: Sequence[tuple] = (),
        *,
        backend: str = "paint",
        options: dict | None = None,
        cache: bool = True,
        confidence: bool = False,
        label: str = "",
        chunk_bytes: int = CHUNK_BYTES,
        timeout: float | None = None,
        wait: bool = True,
    ) -> Job:
        """Submit inline pixels: `frames` yields (number, HxWxC array), `keyframes` holds
        (number, color) or (number, color, lineart). Frames beyond the first chunk are sent
        while results stream back (as `poll`/`results` run). With `wait=False` this returns
        at once; the job gets its `id` when `poll` sees the engine's reply."""
        kf_content, bufs = [], []
        for kf in keyframes:
            entry = {"number": int(kf[0]), "color": M.array_desc(kf[1], bufs)}
            if len(kf) > 2 and kf[2] is not None:
                entry["lineart"] = M.array_desc(kf[2], bufs)
            kf_content.append(entry)
        chunks = _chunks(iter(frames), chunk_bytes)
        first = next(chunks, [])
        nxt = next(chunks, None)
        frame_descs = [{"number": int(n), "array": M.array_desc(a, bufs)} for n, a in first]
        content = {
            "backend": backend,
            "options": dict(options or {}),
            "input": {"kind": "inline", "frames": frame_descs, "more": nxt is not None},
            "keyframes": kf_content,
            "output": {"kind": "inline"},
            "cache": cache,
            "confidence": confidence,
            "label": label,
        }
        job = self._submit(content, bufs, timeout, wait)
        if nxt is not None:
            job._to_send = _prepend(nxt, chunks)
        return job

    def submit_paths(
        self,
        lineart: str,
        refs: Sequence[tuple[str, int | None]],
        output: str,
        *,
        backend: str = "paint",
        options: dict | None = None,
        frames: tuple[int, int] | None = None,
        out_ext: str | None = None,
        label: str = "",
        timeout: float | None = None,
        wait: bool = True,
    ) -> Job:
        """Submit files on storage the engine shares (absolute paths inside its --roots);
        the engine writes the output files itself. `wait` as for `submit_frames`."""
        content = {
            "backend": backend,
            "options": dict(options or {}),
            "input": {"kind": "path", "lineart": lineart, "frames": list(frames) if frames else None},
            "refs": [{"path": str(p), "frame": f} for p, f in refs],
            "output": {"kind": "path", "path": output, "ext": out_ext},
            "label": label,
        }
        return self._submit(content, [], timeout, wait)

    def _submit(self, content: dict, bufs: list, timeout: float | None, wait: bool) -> Job:
        if not wait:
            msg_id = self.send(M.SUBMIT, content, bufs, timeout=timeout)
            self._awaiting.discard(msg_id)
            job = Job(self, None, None)
            self._pending_submits[msg_id] = job
            return job
        reply = self.request(M.SUBMIT, content, bufs, timeout=timeout)
        job = Job(self, reply.content["job_id"], reply)
        job.state = reply.content.get("state", "queued")
        self._register(job)
        return job

    def _register(self, job: Job) -> None:
        self.jobs[job.id] = job
        for msg in self._early.pop(job.id, []):
            job._on_event(msg)

    def _pump_appends(self) -> None:
        for job in self.jobs.values():
            while job._to_send is not None and len(job._appends_in_flight) < APPEND_WINDOW:
                chunk = next(job._to_send, None)
                if chunk is None:
                    job._to_send = None
                    break
                upcoming = next(job._to_send, None)
                if upcoming is not None:
                    job._to_send = _prepend(upcoming, job._to_send)
                bufs: list = []
                descs = [{"number": int(n), "array": M.array_desc(a, bufs)} for n, a in chunk]
                msg_id = self.send(M.APPEND, {"job_id": job.id, "frames": descs, "more": upcoming is not None}, bufs)
                self._awaiting.discard(msg_id)
                job._appends_in_flight.append(msg_id)
                if upcoming is None:
                    job._to_send = None


def _chunks(frames: Iterator, limit: int) -> Iterator[list]:
    chunk, size = [], 0
    for number, array in frames:
        nbytes = getattr(array, "nbytes", 0)
        if chunk and size + nbytes > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append((number, array))
        size += nbytes
    if chunk:
        yield chunk


def _prepend(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest
