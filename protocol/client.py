"""Client of the longanim engine: the job API over a `Connection` (pyzmq + msgpack only;
numpy is imported when pixels are sent or received), so it runs inside Blender's and
Nuke's Python. A job's inline frames travel through an `Upload` (upload.py).

Blocking use (scripts, the farm CLI); every call has a deadline::

    with EngineClient("tcp://127.0.0.1:5555") as engine:
        job = engine.submit_frames(frames, keyframes=[(0, color0)], backend="paint")
        for result in job.results(timeout=60):
            save(result.number, result.rgb)

Non-blocking use (a GUI timer calls `poll()` every ~50 ms; no call here ever waits).
Every request has a `wait=False` form returning a `Pending` (or, for submits, a `Job`)
that `poll()` settles::

    job = engine.submit_frames(frames, keyframes, wait=False)   # frames read on a worker thread
    cancel = None
    def on_timer():
        engine.poll()                                           # returns at once
        for result in job.poll():                               # this job's new results
            show(result.number, result.rgb)
        if cancel is not None and cancel.done:
            report(cancel.error or cancel.result())
        return None if job.final else 0.05                      # job.state, frames_done, eta_s, error
    cancel = job.cancel(wait=False)                             # from a button: returns at once

An EngineClient belongs to one thread; use one per thread. When the connection
reconnects after silence, or finds a restarted engine, the client reattaches its
unfinished jobs, so results that arrived before the gap are kept and the rest are sent
again from the cache; the same happens when results went missing because the host
stopped polling for longer than the engine's stall timeout.
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
    Pending,
    default_token_path,
)
from longanim.protocol.upload import CHUNK_BYTES, HEADER_ROOM, Upload
from longanim.protocol.wire import PROTOCOL_VERSION, Message, WireError, compatible

__all__ = ["CHUNK_BYTES", "DEFAULT_URL", "CurveKeys", "EngineClient", "EngineError", "EngineTimeout", "Job",
           "Pending", "Result", "default_token_path"]

SILENT_JOB_S = 3.0  # a live job unheard of this long gets a status probe (was its job_done dropped?)


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
        self.start: dict | None = None  # how a path job began (resumed from a checkpoint...), from a 1.2 engine
        self.received: set[int] = set()
        self.results_queue: collections.deque[Result] = collections.deque()
        self.events_seen = 0
        self._upload: Upload | None = None  # inline frames still on their way
        self._failed_here = False
        self._cancel_wanted: Pending | None = None  # cancelled before the engine named the job
        self.cancel_sent = False  # this client asked the engine to cancel the job
        # Results that went missing (dropped by the engine while this client did not read)
        # are asked for again: `received` against the engine's frames_done tells.
        self._counts_results = True
        self._gap_ok = 0  # results missing that a resend could not bring back
        self._lost: list[int] = []  # their frame numbers, as the engine named them
        self._file_results = False  # a result named a file (a path job reattached by id)
        self._resync: Pending | None = None
        self._resync_replied = False
        self._probe: Pending | None = None
        self._last_event = time.monotonic()
        self._event_seq = 0  # the last event number seen (resent results carry none)

    @property
    def final(self) -> bool:
        return self.state in M.FINAL_STATES

    def _on_event(self, msg: Message) -> None:
        self.events_seen += 1
        self._last_event = time.monotonic()
        c = msg.content
        self._notice_gap(c)
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
            self._file_results = self._file_results or result.path is not None
            self.results_queue.append(result)
        elif msg.msg_type in (M.PROGRESS, M.DONE):
            if self._failed_here or self._held_back(msg):
                return  # keep the reason this client stopped the job / wait for the resent results
            for key in ("state", "frames_done", "frames_total", "eta_s", "error"):
                if key in c:
                    setattr(self, key, c[key])
            if isinstance(c.get("start"), dict):
                self.start = c["start"]
            if msg.msg_type == M.DONE:
                self.summary = c
                if self.state == "done" and self._missing(c) > 0 and not self._writes_files():
                    self._fail_here("results_lost", self._lost_message(c))

    def _note_lost(self, lost: Any) -> None:
        """The frames a reattach's reply says the engine could not keep (`results_lost`; an
        older engine says nothing, and then only their count is known)."""
        if isinstance(lost, list):
            self._lost = sorted(set(self._lost).union(n for n in lost if isinstance(n, int) and not isinstance(n, bool)))

    def _writes_files(self) -> bool:
        """A path-output job's results are files the engine wrote: one whose event was lost
        is still on disk, so only inline results can be missing for good."""
        content = self.submit_msg.content if self.submit_msg is not None else {}
        output = content.get("output") if isinstance(content, dict) else None
        return (isinstance(output, dict) and output.get("kind") == "path") or self._file_results

    def _lost_message(self, content: dict) -> str:
        """The job ran to its end, but results dropped while this client did not read (or was
        disconnected) could not be sent again: it is not done here, and the message says
        which frames to submit again."""
        missing = self._missing(content)
        named = [n for n in self._lost if n not in self.received]
        which = f": frames {_ranges(named)}" if named else ""
        return (f"{missing} of {content.get('frames_done')} results never arrived{which} (dropped while this "
                "client did not read, and neither cached nor kept for it by the engine); submit them again")

    def _notice_gap(self, content: dict) -> None:
        """The engine numbers a job's events (`event_seq`); a jump, or its word that events
        were dropped while this client did not read (`missed_events`), means catching up."""
        seq = content.get("event_seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return
        gap = seq > self._event_seq + 1 or (bool(content.get("missed_events")) and seq > self._event_seq)
        self._event_seq = max(self._event_seq, seq)
        if gap and self.id is not None and self._resync is None and not self.final:
            self.client._resync(self)

    def _held_back(self, msg: Message) -> bool:
        """Whether this progress or job_done must wait: results are missing (the engine
        counted more frames done than arrived) and are being resent, so an end seen
        meanwhile (job_done, or a progress naming a final state) waits for the resent one."""
        is_done = msg.msg_type == M.DONE or msg.content.get("state") in M.FINAL_STATES
        if self._resync is not None:
            if not self._resync_replied:
                return is_done
            # The first event after the resent results: what is still missing stays missing.
            self._gap_ok = max(self._gap_ok, self._missing(msg.content))
            self._resync, self._resync_replied = None, False
            return False
        if self._missing(msg.content) > self._gap_ok:
            self.client._resync(self)
            return is_done
        return False

    def _missing(self, content: dict) -> int:
        done = content.get("frames_done")
        if not self._counts_results or not isinstance(done, int) or isinstance(done, bool):
            return 0
        return done - len(self.received)

    def _fail_here(self, code: str, message: str) -> None:
        """This side stopped the job (refused frames, unreadable input): keep that reason."""
        self.state, self.error, self._failed_here = "failed", {"code": code, "message": message}, True

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
        """Yield results until the job ends. `timeout` bounds the engine's silence, not the
        whole job: any word from it counts, the replies to the heartbeat pings included, so
        a job queued behind another or a model loading for minutes waits while the engine
        answers, and a lost engine fails the wait (`EngineTimeout`) after `timeout`. A
        failed job raises EngineError."""
        last = time.monotonic()
        seen, heard = self.events_seen, self.client.heard_at
        while True:
            while self.results_queue:
                last = time.monotonic()
                yield self.results_queue.popleft()
            if self.final:
                break
            self.client._pump(self.client._pump_wait())
            if self.events_seen != seen or self.client.heard_at != heard:  # an event, or a heartbeat reply
                seen, heard, last = self.events_seen, self.client.heard_at, time.monotonic()
            elif time.monotonic() - last > timeout:
                raise EngineTimeout(f"job {self.id}: nothing from the engine for {timeout:.0f} s")
        while self.results_queue:
            yield self.results_queue.popleft()
        if self.state == "failed":
            err = self.error or {}
            raise EngineError(err.get("code", "failed"), f"job {self.id or '(not accepted)'} failed: "
                              f"{err.get('message', '?')}")

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

    def cancel(self, timeout: float | None = None, wait: bool = True):
        """Stop the job, even before the engine has named it; `wait=False` returns a
        Pending whose result is the job's state after the cancel."""
        pending = self.client._cancel_job(self, timeout)
        return pending.wait() if wait else pending


class EngineClient(Connection):
    """Jobs over one connection; `connection` options (timeout, heartbeat_s, liveness, curve,
    context) are `Connection`'s."""

    def __init__(self, url: str = DEFAULT_URL, *, client_name: str = "longanim-client", **connection):
        self.client_name = client_name
        self.jobs: dict[str, Job] = {}
        self.engine_info: dict = {}
        self.max_message_bytes: int | None = None  # the engine's, from hello or capabilities
        self._limits: Pending | None = None  # a hello asked for them
        self._uploads: list[Upload] = []
        self._early: dict[str, list[Message]] = {}
        # Events for poll(); bounded, since blocking users read results from their Job instead.
        self._undelivered: collections.deque[Message] = collections.deque(maxlen=10_000)
        # Messages that answer no request of ours (events, heartbeat replies) were last heard
        # then: the engine is alive (a new socket is not a word from it, so a lost engine's
        # reconnects do not count).
        self.heard_at = 0.0
        super().__init__(url, **connection)

    def __enter__(self) -> "EngineClient":
        return self

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Events that arrived since the last call (waiting at most `timeout` for one);
        also settles pending requests and keeps heartbeats, reconnects and streamed input
        going. 0 never blocks."""
        if not self._undelivered:
            self._pump(timeout)
        events = list(self._undelivered)
        self._undelivered.clear()
        return events

    def close(self) -> None:
        for upload in self._uploads:
            upload.stop()
        self._uploads = []
        super().close()

    # -- what the connection carries -------------------------------------------------------

    def _has_live_work(self) -> bool:
        return any(not j.final for j in self.jobs.values())

    def _on_reconnected(self) -> None:
        self._reattach_all()

    def _on_engine_restarted(self) -> None:
        # Our jobs died with the old engine unless it was the same one (then reattaching is
        # harmless); the new one may have other limits.
        self.max_message_bytes = None
        self._reattach_all()

    def _after_pump(self) -> None:
        if self._uploads:
            self._uploads = [u for u in self._uploads if u.advance()]
        self._watch_jobs()

    def _pump_wait(self) -> float:
        return 0.005 if self._uploads else 0.05  # frames being read: look for them often

    def _reattach_all(self) -> None:
        for job in list(self.jobs.values()):
            if not job.final and job._resync is None:
                self._resync(job)

    def _resync(self, job: Job) -> None:
        """Reattach with resend: results since the gap come again (duplicates are dropped)."""
        job._resync_replied = False
        job._resync = self.begin(M.REATTACH, {"job_id": job.id, "resend": True}, retries=0)
        job._resync.add_done_callback(lambda p: self._after_resync(job, p))

    def _after_resync(self, job: Job, p: Pending) -> None:
        if p.error is None:
            job._resync_replied = True
            job._note_lost(p.value.content.get("results_lost") if isinstance(p.value, Message) else None)
            return
        job._resync = None
        if p.error.code not in ("timeout", "closed") and not job.final:
            # e.g. the engine restarted and forgot the job: fail it rather than wait forever
            job.state = "failed"
            job.error = {"code": "lost", "message": f"the engine no longer knows this job ({p.error.message}); "
                         "submit it again"}

    def _watch_jobs(self) -> None:
        """A live job unheard of for a while may have ended while its events were dropped:
        ask for its state."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.final or job._probe is not None or job._resync is not None or now - job._last_event < SILENT_JOB_S:
                continue
            job._probe = self.begin(M.STATUS, {"job_id": job.id}, retries=0)
            job._probe.add_done_callback(lambda p, job=job: self._after_probe(job, p))

    def _after_probe(self, job: Job, p: Pending) -> None:
        job._probe, job._last_event = None, time.monotonic()
        if p.error is not None or job.final or job._resync is not None:
            return
        jobs = p.value.content.get("jobs")
        if isinstance(jobs, list) and jobs and isinstance(jobs[0], dict) and jobs[0].get("state") in M.FINAL_STATES:
            self._resync(job)  # it ended, and its job_done never came

    def _route(self, msg: Message) -> None:
        self.heard_at = time.monotonic()
        if msg.msg_type in M.EVENTS:
            job_id = msg.content.get("job_id")
            job = self.jobs.get(job_id)
            if job is not None:
                job._on_event(msg)
            elif isinstance(job_id, str) and self._pending and len(self._early) < 64:
                # Events can overtake the reply that names their job (submit, reattach).
                self._early.setdefault(job_id, []).append(msg)
            self._undelivered.append(msg)
        # anything else: a late reply to a request given up on, or a newer engine's message type

    # -- requests: each blocks by default, or returns a Pending with wait=False ------------

    def hello(self, timeout: float | None = None, wait: bool = True):
        """Version check; the engine's capabilities, heartbeat and message limit are kept."""
        p = self.begin(M.HELLO, {"protocol_version": PROTOCOL_VERSION, "client": self.client_name},
                       timeout=timeout, on_reply=self._on_hello)
        return p.wait() if wait else p

    def _on_hello(self, reply: Message) -> dict:
        theirs = reply.content.get("protocol_version")
        try:
            ok = isinstance(theirs, str) and compatible(theirs)
        except WireError:
            ok = False
        if not ok:
            raise EngineError("incompatible_version", f"the engine at {self.url} speaks protocol {theirs}, "
                              f"this client {PROTOCOL_VERSION}; update whichever side is older")
        self.engine_info = reply.content
        self.adopt_heartbeat(reply.content.get("heartbeat_s"))
        self._adopt_limits(reply.content.get("capabilities"))
        return reply.content

    def _adopt_limits(self, capabilities: Any) -> None:
        size = capabilities.get("max_message_bytes") if isinstance(capabilities, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            self.max_message_bytes = size

    def capabilities(self, timeout: float | None = None, wait: bool = True):
        def on_reply(reply: Message) -> dict:
            self._adopt_limits(reply.content)
            return reply.content

        p = self.begin(M.CAPABILITIES, {}, timeout=timeout, on_reply=on_reply)
        return p.wait() if wait else p

    def ping(self, timeout: float | None = None, wait: bool = True):
        """Round-trip time in seconds (without waiting: until poll() saw the reply)."""
        t0 = time.perf_counter()
        p = self.begin(M.PING, {}, timeout=timeout, retries=0, on_reply=lambda r: time.perf_counter() - t0)
        return p.wait() if wait else p

    def status(self, job_id: str | None = None, timeout: float | None = None, wait: bool = True):
        """Job summaries: the one asked for, else this client's jobs."""
        p = self.begin(M.STATUS, {"job_id": job_id}, timeout=timeout, on_reply=lambda r: r.content["jobs"])
        return p.wait() if wait else p

    def cancel(self, job_id: str, timeout: float | None = None, wait: bool = True):
        """The job's state after the cancel (a running job ends `cancelled` within a frame)."""
        def on_reply(reply: Message) -> str:
            state = reply.content["state"]
            job = self.jobs.get(job_id)
            if job is not None and state in M.FINAL_STATES and not job.final:
                job.state = state
            return state

        if job_id in self.jobs:
            self.jobs[job_id].cancel_sent = True
        p = self.begin(M.CANCEL, {"job_id": job_id}, timeout=timeout, on_reply=on_reply)
        return p.wait() if wait else p

    def _cancel_job(self, job: Job, timeout: float | None) -> Pending:
        if job.id is not None:
            return self.cancel(job.id, timeout=timeout, wait=False)
        p = self.local_pending("cancel_request", timeout)
        if job.final:
            p.settle(job.state)
        elif job._upload is not None and job._upload.submit is None:
            job.state = "cancelled"  # never sent: nothing to tell the engine
            p.settle(job.state)
        else:
            job._cancel_wanted = p  # sent when the submit's reply names the job
        return p

    def shutdown(self, token: str | None = None, timeout: float | None = None, wait: bool = True):
        """Stop the engine. Without `token`, read it from the file the engine wrote."""
        if token is None:
            path = default_token_path(self.url)
            try:
                token = path.read_text().strip()
            except OSError as exc:
                raise EngineError("unauthorized", f"cannot read the engine's shutdown token {path}: {exc}") from None
        p = self.begin(M.SHUTDOWN, {"token": token}, timeout=timeout, retries=0, on_reply=lambda r: None)
        return p.wait() if wait else p

    def reattach(self, job_id: str, resend: bool = True, timeout: float | None = None, wait: bool = True):
        """Take over a job's events, e.g. after this program restarted; with `resend`,
        results finished so far are sent again (from the engine's cache). Returns the Job
        (`wait=False`: a Pending whose result is the Job)."""
        # Events that arrive while the reply is awaited are held and replayed by _register.
        job = self.jobs.pop(job_id, None)
        p = self.begin(M.REATTACH, {"job_id": job_id, "resend": resend}, timeout=timeout,
                       on_reply=lambda reply: self._reattached(job_id, job, reply, resend))

        def restore(p: Pending) -> None:
            if p.error is not None and job is not None and job_id not in self.jobs:
                self._register(job)

        p.add_done_callback(restore)
        return p.wait() if wait else p

    def _reattached(self, job_id: str, job: Job | None, reply: Message, resend: bool) -> Job:
        summary = reply.content["job"]
        if job is None:
            job = Job(self, job_id, reply)
        if resend:
            job.received.clear()
        for key in ("state", "frames_done", "frames_total", "eta_s", "error"):
            setattr(job, key, summary.get(key))
        resending = reply.content.get("resending") or 0
        job._counts_results = resend
        job._gap_ok = max(0, (job.frames_done or 0) - resending) if resend else 0
        job._note_lost(reply.content.get("results_lost"))
        seq = summary.get("event_seq")
        if isinstance(seq, int) and not isinstance(seq, bool):  # events up to here are what resend covers
            job._event_seq = max(job._event_seq, seq)
        if job.final and resend:
            job.state = "running"  # the final job_done follows the resent results
        self._register(job)
        return job

    # -- submitting ----------------------------------------------------------------------

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
        max_ahead: int | None = None,
        timeout: float | None = None,
        wait: bool = True,
    ) -> Job:
        """Submit inline pixels: `frames` yields (number, HxWxC array), `keyframes` holds
        (number, color), (number, color, lineart) or (number, color, lineart, alpha)
        (alpha: HxW uint8, where the keyframe is opaque, for line art on transparent film). `frames` is read on a worker thread
        (a lazy iterator may decode files) and sent in messages of at most `chunk_bytes`
        and the engine's max_message_bytes, as results stream back; `max_ahead` caps the
        frames sent before their results were taken, and as many again read ahead (None:
        as fast as the engine takes them, a chunk read ahead).
        `wait=False` returns at once: the job gets its `id` when poll() sees the reply, or
        ends `failed` (code `timeout`) when no engine answers within `timeout`."""
        kf_content, kf_bufs = [], []
        for kf in keyframes:
            entry = {"number": int(kf[0]), "color": M.array_desc(kf[1], kf_bufs)}
            if len(kf) > 2 and kf[2] is not None:
                entry["lineart"] = M.array_desc(kf[2], kf_bufs)
            if len(kf) > 3 and kf[3] is not None:
                entry["alpha"] = M.array_desc(kf[3], kf_bufs)
            kf_content.append(entry)
        content = {
            "backend": backend,
            "options": dict(options or {}),
            "keyframes": kf_content,
            "output": {"kind": "inline"},
            "cache": cache,
            "confidence": confidence,
            "label": label,
        }
        job = Job(self, None, None)
        job._upload = Upload(self, job, frames, content, kf_bufs, chunk_bytes, max_ahead,
                              self.timeout if timeout is None else timeout)
        self._uploads.append(job._upload)
        if wait:
            self._wait_accepted(job)
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
        allow_gaps: bool = False,
        checkpoint_every: int = 0,
        resume: bool = False,
        timeout: float | None = None,
        wait: bool = True,
    ) -> Job:
        """Submit files on storage the engine shares (absolute paths inside its --roots);
        the engine writes the output files itself. `allow_gaps`: skip (and report) frames
        missing from the numbering instead of failing. `checkpoint_every` frames the engine
        saves the shot's state in the output folder, and `resume` continues from the one
        there (protocol 1.2: a 1.1 engine ignores both; `job.start` then stays None).
        `wait` as for `submit_frames`."""
        output = {"kind": "path", "path": output, "ext": out_ext}
        if checkpoint_every:
            output["checkpoint_every"] = int(checkpoint_every)
        if resume:
            output["resume"] = True
        content = {
            "backend": backend,
            "options": dict(options or {}),
            "input": {"kind": "path", "lineart": lineart, "frames": list(frames) if frames else None,
                      "allow_gaps": bool(allow_gaps)},
            "refs": [{"path": str(p), "frame": f} for p, f in refs],
            "output": output,
            "label": label,
        }
        job = Job(self, None, None)
        self._send_submit(job, content, [], timeout)
        if wait:
            self._wait_accepted(job)
        return job

    def _send_submit(self, job: Job, content: dict, bufs: list, timeout: float | None) -> Pending:
        p = self.begin(M.SUBMIT, content, bufs, timeout=timeout, on_reply=lambda r: (r.content["job_id"], r))
        p.add_done_callback(lambda p: self._accepted(job, p))
        return p

    def _accepted(self, job: Job, p: Pending) -> None:
        """The submit's answer: the job gets its id, or fails with the engine's reason."""
        wanted, job._cancel_wanted = job._cancel_wanted, None
        if p.error is not None:
            if not job.final:
                job.state, job.error = "failed", self._job_error(p)
            if wanted is not None:
                wanted.settle(job.state)
            return
        job.id, job.submit_msg = p.value
        failed_here = job.final  # e.g. its frames could not be read: the engine must not wait for them
        if not failed_here:
            job.state = job.submit_msg.content.get("state", "queued")
        self._register(job)
        if failed_here:
            self.cancel(job.id, wait=False)
        if wanted is not None:
            self.cancel(job.id, timeout=wanted.timeout, wait=False).add_done_callback(
                lambda c: wanted.settle(c.value, c.error))

    def _job_error(self, p: Pending) -> dict:
        if p.error.code == "timeout":
            return {"code": "timeout", "message": f"no engine answered at {self.url} within {p.timeout:.1f} s "
                    f"({p.what}); is `longanim serve` running there?"}
        return {"code": p.error.code, "message": p.error.message}

    def _wait_accepted(self, job: Job) -> None:
        """Blocking submits: until the engine named the job, or raise why it did not."""
        while job.id is None and not job.final:
            self._pump(self._pump_wait())
        if job.id is None:
            err = job.error or {"code": "failed", "message": f"the job ended {job.state} before it was submitted"}
            raise EngineError(err["code"], err["message"])

    def _message_limit(self, timeout: float) -> int | None:
        """Bytes of frames one message may carry; None until hello has told the engine's
        limit (asked for here, once)."""
        if self.max_message_bytes is not None:
            return self.max_message_bytes - HEADER_ROOM
        if self._limits is None:
            self._limits = self.hello(timeout=timeout, wait=False)
            self._limits.add_done_callback(self._on_limits)
        return None

    def _on_limits(self, p: Pending) -> None:
        self._limits = None
        if p.error is None:
            return
        for upload in self._uploads:
            if upload.submit is None and not upload.job.final:
                upload.job.state, upload.job.error = "failed", self._job_error(p)

    def _register(self, job: Job) -> None:
        self.jobs[job.id] = job
        job._last_event = time.monotonic()
        for msg in self._early.pop(job.id, []):
            job._on_event(msg)


def _ranges(numbers: list[int], most: int = 12) -> str:
    """1-3, 7, 10-12: frame numbers as a person reads them, the first `most` runs."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:most])
    return text + (f" and {len(runs) - most} more runs" if len(runs) > most else "")
