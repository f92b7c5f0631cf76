"""Client of the longanim engine: pyzmq + msgpack only (numpy is imported when
pixels are sent or received), so it runs inside Blender's and Nuke's Python.

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

An EngineClient belongs to one thread (ZeroMQ sockets do); use one per thread.
Every wait has a deadline. Any message from the engine counts as a heartbeat;
when the engine stays silent for `liveness` heartbeats the client reconnects
with doubling backoff and reattaches its unfinished jobs, so results that
arrived before the gap are kept and the rest are sent again from the cache.
"""

from __future__ import annotations

import collections
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

import zmq

from longanim.protocol import messages as M
from longanim.protocol.wire import (
    PROTOCOL_VERSION,
    Message,
    WireError,
    compatible,
    deserialize,
    make_message,
    serialize,
)

DEFAULT_URL = "tcp://127.0.0.1:5555"
CHUNK_BYTES = 16 * 1024 * 1024  # inline frames per message; more go in append requests
APPEND_WINDOW = 4  # append requests in flight while results stream back (64 MiB with CHUNK_BYTES)
RCVHWM = 128  # messages; a frame is a result plus a progress event


class EngineError(Exception):
    """The engine answered with an error; `code` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} [{code}]")
        self.code = code


class EngineTimeout(EngineError, TimeoutError):
    def __init__(self, message: str):
        super().__init__("timeout", message)


def default_token_path(url: str) -> Path:
    """Where an engine listening on `url` writes its shutdown token (mode 0600)."""
    parts = urlsplit(url)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{parts.hostname or parts.path}-{parts.port or ''}").strip("_")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "longanim" / f"engine-{name}.token"


@dataclass
class CurveKeys:
    """CurveZMQ keys as z85 bytes: ours, and the public key of the engine we trust."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_dir(cls, directory: str | os.PathLike) -> "CurveKeys":
        """Read client.key_secret and server.key as written by `longanim keys DIR`."""
        import zmq.auth

        directory = Path(directory)
        public, secret = zmq.auth.load_certificate(str(directory / "client.key_secret"))
        server_public, _ = zmq.auth.load_certificate(str(directory / "server.key"))
        return cls(public, secret, server_public)


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


class EngineClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        heartbeat_s: float = 1.0,
        liveness: int = 3,
        curve: CurveKeys | None = None,
        client_name: str = "longanim-client",
        context: zmq.Context | None = None,
    ):
        self.url = url
        self.timeout = timeout
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self.curve = curve
        self.client_name = client_name
        self.session = uuid.uuid4().hex  # the client id: the engine deduplicates by (session, seq)
        self.ctx = context or zmq.Context.instance()
        self.jobs: dict[str, Job] = {}
        self.engine_info: dict = {}
        self.reconnects = 0
        self._seq = 0
        self._replies: dict[str, Message] = {}
        self._awaiting: set[str] = set()
        self._early: dict[str, list[Message]] = {}
        self._reattaching: dict[str, str] = {}  # reattach msg_id -> job id
        self._pending_submits: dict[str, Job] = {}  # submit msg_id -> job without an id yet
        self._engine_session: str | None = None
        # Events for poll(); bounded, since blocking users read results from their Job instead.
        self._undelivered: collections.deque[Message] = collections.deque(maxlen=10_000)
        self._backoff = 0.25
        self._next_reconnect = 0.0
        self._ping_sent = 0.0
        self.socket: zmq.Socket | None = None
        self._connect()

    # -- connection ---------------------------------------------------------------------

    def _connect(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # Bounded, so an engine cannot pile up more than ~60 frames in a client that is busy.
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        sock.setsockopt(zmq.IDENTITY, f"{self.session[:16]}-{self.reconnects}".encode())
        if self.curve is not None:
            sock.curve_publickey = self.curve.public
            sock.curve_secretkey = self.curve.secret
            sock.curve_serverkey = self.curve.server_public
        sock.connect(self.url)
        self.socket = sock
        self._last_recv = time.monotonic()

    def _reconnect(self) -> None:
        """Lazy/Paranoid Pirate: a fresh socket, doubling backoff, then reattach live jobs."""
        now = time.monotonic()
        if now < self._next_reconnect:
            return
        self.reconnects += 1
        self._connect()
        self._next_reconnect = now + self._backoff
        self._backoff = min(self._backoff * 2, 8.0)
        self._reattach_all()

    def _reattach_all(self) -> None:
        for job in self.jobs.values():
            if not job.final:
                msg = self._make_request(M.REATTACH, {"job_id": job.id, "resend": True})
                self._reattaching[msg.msg_id] = job.id
                self._send_frames(serialize(msg), time.monotonic() + self.timeout)

    @property
    def connected(self) -> bool:
        return time.monotonic() - self._last_recv < self.heartbeat_s * self.liveness

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level ------------------------------------------------------------------------

    def _make_request(self, msg_type: str, content: dict | None = None, buffers: Sequence = ()) -> Message:
        self._seq += 1
        return make_message(msg_type, self.session, content, buffers=buffers, seq=self._seq)

    def _send_frames(self, frames: list, deadline: float) -> None:
        while True:
            try:
                self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineTimeout(f"could not send to {self.url}: the engine is not taking messages")
                self.socket.poll(min(left, 0.1) * 1000, zmq.POLLOUT)

    def send(self, msg_type: str, content: dict | None = None, buffers: Sequence = (),
             timeout: float | None = None) -> str:
        """Send a request without waiting; `poll` keeps its reply for `take_reply(msg_id)`."""
        msg = self._make_request(msg_type, content, buffers)
        self._send_frames(serialize(msg), time.monotonic() + (self.timeout if timeout is None else timeout))
        self._awaiting.add(msg.msg_id)
        return msg.msg_id

    def take_reply(self, msg_id: str) -> Message | None:
        msg = self._replies.pop(msg_id, None)
        if msg is not None:
            self._awaiting.discard(msg_id)
        return msg

    def request(self, msg_type: str, content: dict | None = None, buffers: Sequence = (),
                timeout: float | None = None, retries: int = 1) -> Message:
        """Send and wait for the reply. On silence the request is sent again on a new
        connection with the same (session, seq), so the engine answers it only once."""
        timeout = self.timeout if timeout is None else timeout
        msg = self._make_request(msg_type, content, buffers)
        frames = serialize(msg)
        for attempt in range(retries + 1):
            deadline = time.monotonic() + timeout
            self._awaiting.add(msg.msg_id)
            self._send_frames(frames, deadline)
            while time.monotonic() < deadline:
                self._pump(min(0.05, max(0.0, deadline - time.monotonic())))
                reply = self.take_reply(msg.msg_id)
                if reply is not None:
                    if reply.content.get("status") == "error":
                        raise EngineError(**_error_of(reply))
                    return reply
            if attempt < retries:
                self._next_reconnect = 0.0
                self._reconnect()
        self._awaiting.discard(msg.msg_id)
        raise EngineTimeout(f"no reply from the engine at {self.url} to {msg_type} within {timeout:.1f} s "
                            f"({retries + 1} tries); is `longanim serve` running there?")

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Events that arrived since the last call (waiting at most `timeout` for one);
        also keeps heartbeats, reconnects and streamed input going. 0 never blocks."""
        if not self._undelivered:
            self._pump(timeout)
        events = list(self._undelivered)
        self._undelivered.clear()
        return events

    def _pump(self, timeout: float) -> int:
        """Take every waiting message and route it to its job or request; returns how many."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            got = 0
            if self.socket.poll(max(0, int(left * 1000)) if left > 0 else 0, zmq.POLLIN):
                while got < 256:
                    try:
                        frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._on_message(frames)
                    got += 1
            self._pump_appends()
            self._heartbeat()
            if got or time.monotonic() >= deadline:
                return got

    def _on_message(self, frames: list) -> None:
        self._last_recv = time.monotonic()
        self._backoff = 0.25
        try:
            msg = deserialize(frames)
        except WireError:
            return
        engine_session = msg.header["session"]
        if engine_session != self._engine_session:
            restarted = self._engine_session is not None
            self._engine_session = engine_session
            if restarted:
                # ZeroMQ reconnected to a new engine process on its own: our jobs died with the
                # old one unless it was the same engine (then reattaching is harmless).
                self._reattach_all()
        parent = msg.parent_id
        if msg.msg_type.endswith("_reply") or msg.msg_type == M.ERROR:
            if parent in self._awaiting:
                self._replies[parent] = msg
            elif parent in self._pending_submits:
                job = self._pending_submits.pop(parent)
                if msg.content.get("status") == "ok":
                    job.id, job.submit_msg = msg.content["job_id"], msg
                    self._register(job)
                else:
                    job.state, job.error = "failed", _error_of(msg)
            elif parent in self._reattaching:
                job = self.jobs.get(self._reattaching.pop(parent))
                if job is not None and msg.content.get("status") == "error" and not job.final:
                    # e.g. the engine restarted and forgot the job: fail it rather than wait forever
                    job.state = "failed"
                    job.error = {"code": "lost", "message": "the engine no longer knows this job "
                                 f"({_error_of(msg)['message']}); submit it again"}
            elif msg.msg_type == "append_reply" or msg.msg_type == M.ERROR:
                for job in self.jobs.values():
                    if parent in job._appends_in_flight:
                        job._appends_in_flight.remove(parent)
                        if msg.content.get("status") == "error" and not job.final:
                            # Frames were refused: the job cannot complete, so stop it.
                            job.state, job.error, job._to_send = "failed", _error_of(msg), None
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

    def _heartbeat(self) -> None:
        now = time.monotonic()
        silent = now - self._last_recv
        if silent > self.heartbeat_s * self.liveness and now - self._ping_sent < self.heartbeat_s * self.liveness:
            if any(not j.final for j in self.jobs.values()) or self._awaiting:
                self._reconnect()
        if silent > self.heartbeat_s and now - self._ping_sent > self.heartbeat_s:
            self._ping_sent = now
            msg = make_message(M.PING, self.session)  # no seq: pings need no deduplication
            try:
                self.socket.send_multipart(serialize(msg), zmq.NOBLOCK)
            except zmq.Again:
                pass

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


def _error_of(msg: Message) -> dict:
    err = msg.content.get("error")
    err = err if isinstance(err, dict) else {}
    return {"code": str(err.get("code", "error")), "message": str(err.get("message", "engine error"))}


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
