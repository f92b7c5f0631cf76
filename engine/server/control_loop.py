"""The engine's control loop: one ROUTER socket that every client talks to.

The loop only decodes, validates and answers; colorizing runs on the job workers,
so a ping or a cancel is answered within milliseconds even while a long job runs.
Every incoming message is checked (size, wire format, version, schema) and any
failure becomes an error reply: a bad peer never crashes or stalls the engine.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import zmq

import longanim
from longanim.engine.errors import InputError
from longanim.engine.server.backlog import BACKLOG_BYTES, ResultBacklog
from longanim.engine.server.clients import FORGET_AFTER_STALLS, SilentClients
from longanim.engine.server.confinement import Roots, WeightsRoots, confine_options
from longanim.engine.server.intake import Intake, take_request
from longanim.engine.server.job import RESULT_CREDITS, FrameFeed, Job
from longanim.engine.server.job_queue import EVENTS_ENDPOINT, JobManager
from longanim.engine.server.result_cache import ResultCache
from longanim.engine.server.retries import RequestMemory, request_digest
from longanim.protocol import messages as M
from longanim.protocol.client import default_token_path
from longanim.protocol.wire import (
    MAX_BUFFERS,
    N_MAP_FRAMES,
    PROTOCOL_VERSION,
    Message,
    WireError,
    compatible,
    deserialize,
    frames_nbytes,
    make_message,
    serialize,
    unpack_map,
)

log = logging.getLogger("longanim.engine")

HEARTBEAT_S = 1.0
SNDHWM = 16
FORGET_SWEEP_S = 1.0  # how often silent clients are looked for


@dataclass
class ServeConfig:
    bind: str = "tcp://127.0.0.1:5555"
    roots: list[str] = field(default_factory=list)
    weights_roots: list[str] = field(default_factory=list)  # where options.weights may point
    cache_dir: str | None = None
    cache_max_bytes: int | None = 20 << 30
    insecure: bool = False
    curve_keys: str | None = None
    allowed_clients: str | None = None
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    max_message_bytes: int = 1 << 30
    max_queued_bytes: int = 8 << 30
    token_file: str | None = None
    stall_timeout_s: float = 30.0
    max_queued_jobs: int = 64  # unfinished jobs per client; more are refused as busy
    max_unfinished_jobs: int = 1024  # all clients together
    backlog_bytes: int = BACKLOG_BYTES  # undelivered results kept for clients' catch-up
    forget_after_s: float | None = None  # a client silent this long is forgotten; None: 20 stall timeouts

    def forget_bound_s(self) -> float:
        """Never under two stall timeouts: a client is stalled before it is forgotten."""
        if self.forget_after_s is None:
            return FORGET_AFTER_STALLS * self.stall_timeout_s
        return max(self.forget_after_s, 2 * self.stall_timeout_s)


def is_loopback(bind: str) -> bool:
    """ipc:// and inproc:// never leave the machine; tcp:// must name a loopback address."""
    parts = urlsplit(bind)
    if parts.scheme in ("ipc", "inproc"):
        return True
    if parts.scheme != "tcp":
        raise InputError(f"--bind {bind!r}: use tcp://HOST:PORT (or ipc://PATH)")
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: reachable from elsewhere


def check_bind(config: ServeConfig) -> None:
    if not is_loopback(config.bind) and not config.curve_keys and not config.insecure:
        raise InputError(
            f"refusing to listen on {config.bind} without encryption: anyone on the network could "
            "submit jobs and read results. Create keys with `longanim keys DIR` and pass "
            "--curve-keys DIR, or pass --insecure if this network is trusted."
        )


class EngineServer:
    def __init__(self, config: ServeConfig):
        check_bind(config)
        self.config = config
        self.session = uuid.uuid4().hex
        self.roots = Roots(config.roots)
        self.weights_roots = WeightsRoots(config.weights_roots)
        self.ctx = zmq.Context()
        self._auth = None
        self._stopping = False
        self._answers = RequestMemory()
        self._pending: dict[bytes, collections.deque] = {}
        self._stalled: set[bytes] = set()
        self._backlog = ResultBacklog(config.backlog_bytes)
        self._clients = SilentClients(config.forget_bound_s())
        self._next_forget = 0.0
        self.token = secrets.token_hex(32)
        self.token_path = Path(config.token_file) if config.token_file else default_token_path(config.bind)

        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 500)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDHWM, SNDHWM)
        self.router.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        if config.curve_keys:
            from longanim.engine.server.curve_keys import configure_server

            self._auth = configure_server(self.router, self.ctx, config.curve_keys, config.allowed_clients)
        try:
            self.router.bind(config.bind)
        except zmq.ZMQError as exc:
            self.close()
            raise InputError(f"cannot listen on {config.bind}: {exc}") from None
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.cache = ResultCache(config.cache_dir, config.cache_max_bytes)
        self.events = self.ctx.socket(zmq.PULL)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(EVENTS_ENDPOINT)
        self.jobs = JobManager(self.ctx, config.devices, self.cache, self.roots, self.session,
                               input_timeout_s=config.stall_timeout_s)
        self._write_token()
        self._handlers = {
            M.HELLO: self._hello,
            M.CAPABILITIES: self._capabilities,
            M.SUBMIT: self._submit,
            M.APPEND: self._append,
            M.CANCEL: self._cancel,
            M.STATUS: self._status,
            M.REATTACH: self._reattach,
            M.PING: self._ping,
            M.SHUTDOWN: self._shutdown,
        }

    # -- lifecycle ----------------------------------------------------------------------

    def _write_token(self) -> None:
        """Shutdown needs this token: only users who can read the file (mode 0600) have it."""
        self.token_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.token_path.with_name(f".{self.token_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        os.replace(tmp, self.token_path)

    def serve_forever(self) -> None:
        self.jobs.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        try:
            while not self._stopping:
                ready = dict(poller.poll(2 if self._pending else 200))
                for _ in range(64):  # take turns so neither socket starves the other
                    if self.router in ready and not self._take_request():
                        ready.pop(self.router)
                    if self.events in ready and not self._recv_one(self.events, self._on_event):
                        ready.pop(self.events)
                    if not ready:
                        break
                self._flush_pending()
                self._forget_silent()
        finally:
            self.close()

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        workers_done = True
        if getattr(self, "jobs", None) is not None:
            workers_done = self.jobs.stop()
        for sock in (getattr(self, "router", None), getattr(self, "events", None)):
            if sock is not None and not sock.closed:
                sock.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        try:
            if self.token_path.read_text().strip() == self.token:
                self.token_path.unlink()
        except OSError:
            pass
        if workers_done:
            self.ctx.term()
        else:  # a worker's socket is still open; term() would wait for it forever
            log.warning("a worker is still busy; exiting without waiting for it")

    def _take_request(self) -> bool:
        intake = take_request(self.router, 1 + N_MAP_FRAMES + MAX_BUFFERS, self.config.max_message_bytes)
        if intake is None:
            return False
        try:
            self._on_request(intake)
        except Exception:  # the loop must survive anything a message can trigger
            log.error("unexpected error handling a request:\n%s", traceback.format_exc())
        return True

    def _recv_one(self, sock: zmq.Socket, handler) -> bool:
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        try:
            handler(frames)
        except Exception:  # the loop must survive anything a message can trigger
            log.error("unexpected error handling a message:\n%s", traceback.format_exc())
        return True

    # -- sending with backpressure -------------------------------------------------------

    def _send(self, ids: list, frames: list, job: Job | None = None, result: tuple | None = None) -> None:
        """`job`: a result that holds one of the job's credits (given back once it is sent or
        dropped); `result`: (job id, frame number) of a result event, kept in the backlog
        if it has to be dropped."""
        key = ids[0] if ids else b""
        if key in self._stalled:
            self._dropped(frames, job, result)
            return
        queue = self._pending.get(key)
        if queue:
            queue.append((ids, frames, job, time.monotonic(), result))
            return
        if not self._try_send(ids, frames, job, result):
            self._pending.setdefault(key, collections.deque()).append((ids, frames, job, time.monotonic(), result))

    def _try_send(self, ids: list, frames: list, job: Job | None, result: tuple | None = None) -> bool:
        try:
            self.router.send_multipart([*ids, *frames], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                log.warning("dropping a message: %s", exc)
            # The client is gone: a reattach gets the result from the cache or the backlog.
            self._dropped(frames, job, result)
            return True
        if job is not None:
            job.credits.release()
        return True

    def _dropped(self, frames: list, job: Job | None, result: tuple | None) -> None:
        if job is not None:
            job.credits.release()
        if result is not None:
            self._backlog.keep(*result, frames, self._job_ended)

    def _job_ended(self, job_id: str) -> bool:
        job = self.jobs.jobs.get(job_id)
        return job is None or job.final

    def _flush_pending(self) -> None:
        now = time.monotonic()
        for key in list(self._pending):
            queue = self._pending[key]
            while queue:
                ids, frames, job, since, result = queue[0]
                if not self._try_send(ids, frames, job, result):
                    if now - since > self.config.stall_timeout_s:
                        # A client that stopped reading must not hold a device: drop what is
                        # queued for it, and what comes, until it speaks again.
                        log.warning("client %s took nothing for %.0f s; dropping its events until it "
                                    "sends a request", key.hex(), self.config.stall_timeout_s)
                        for _, stalled_frames, stalled_job, _, result in queue:
                            self._dropped(stalled_frames, stalled_job, result)
                        queue.clear()
                        self._stalled.add(key)
                        self._clients.heard(now, key)  # the mark is looked at again one bound later
                    break
                queue.popleft()
            if not queue:
                del self._pending[key]

    def _forget_silent(self) -> None:
        """Releases what is kept for clients silent past the bound. A stalled mark stays while
        a job the engine still lists sends to that identity: it is how the client, speaking
        again, learns that it missed events (bounded by the job table, not by the clients)."""
        now = time.monotonic()
        if now < self._next_forget:
            return
        self._next_forget = now + FORGET_SWEEP_S
        identities, sessions = self._clients.silent(now)
        if not identities and not sessions:
            return
        kept = 0
        if identities:
            addressed = {job.identity[0] for job in self.jobs.list() if job.identity}
            for key in identities:
                if key not in self._stalled:
                    continue
                if key in addressed:
                    self._clients.heard(now, key)  # looked at again one bound later
                    kept += 1
                else:
                    self._stalled.discard(key)
        dropped = self._answers.forget(sessions) if sessions else 0
        log.info("forgot %d client identities and %d client ids silent for over %.0f s (%d kept replies "
                 "released; %d stalled marks kept for jobs still listed)", len(identities) - kept, len(sessions),
                 self._clients.forget_after_s, dropped, kept)

    def _reply(self, ids: list, request: Message | None, content: dict, parent: dict | None = None) -> list:
        msg_type = M.reply_type(request.msg_type) if request is not None else M.ERROR
        msg = make_message(msg_type, self.session, content, parent=request.header if request else parent)
        frames = serialize(msg)
        self._send(ids, frames)
        return frames

    # -- requests -------------------------------------------------------------------------

    def _on_request(self, intake: Intake) -> None:
        # Clients are DEALER sockets: exactly one identity frame, then the message.
        ids, frames = [intake.frames[0].bytes], intake.frames[1:]
        self._clients.heard(time.monotonic(), ids[0])
        if ids[0] in self._stalled:
            self._stalled.discard(ids[0])
            self._tell_what_was_missed(ids)
        if intake.refused is not None:
            self._reply(ids, None, M.error_content(
                "too_large", f"{intake.refused}; this engine accepts at most {self.config.max_message_bytes} "
                f"bytes and {MAX_BUFFERS} buffers in one message (send frames in several append_request "
                "messages)"), parent=_best_effort_header(frames))
            return
        try:
            msg = deserialize(frames)
        except WireError as exc:
            self._reply(ids, None, M.error_content(exc.code, str(exc)), parent=_best_effort_header(frames))
            return
        self._clients.heard(time.monotonic(), ids[0], msg.header["session"])
        if not compatible(msg.header["version"]):
            self._reply(ids, msg, M.error_content(
                "incompatible_version",
                f"client speaks protocol {msg.header['version']}, this engine speaks {PROTOCOL_VERSION}; "
                "major versions must match: update the client or the engine"))
            return
        # Only requests that change state are remembered; the others are safe to run again.
        digest = request_digest(frames) if self._answers.key(msg) is not None else b""
        try:
            earlier = self._answers.recall(msg, digest)
        except M.ProtocolError as exc:
            self._reply(ids, msg, exc.as_content())
            return
        if earlier is not None:  # a retry: the same answer, no second job
            if earlier.job_id in self.jobs.jobs:
                self.jobs.jobs[earlier.job_id].identity = ids  # it may come over a new connection
            self._reply(ids, msg, earlier.content)
            return
        try:
            if msg.msg_type not in M.SCHEMAS and msg.msg_type in M.EVENTS + (M.ERROR,):
                raise M.ProtocolError("unknown_msg_type", f"{msg.msg_type!r} is sent by the engine, not to it")
            M.validate_request(msg)
            content = self._handlers[msg.msg_type](ids, msg)
        except M.ProtocolError as exc:
            content = exc.as_content()
        except InputError as exc:
            content = M.error_content("input_error", str(exc))
        except OSError as exc:  # a path the file system refuses (too long, unreadable...)
            content = M.error_content("input_error", f"{exc.strerror or exc}: {exc.filename or ''}"[:500])
        except Exception as exc:
            log.error("request %s failed:\n%s", msg.msg_type, traceback.format_exc())
            content = M.error_content("internal", f"{type(exc).__name__}: {exc}")
        if content.get("_sent"):  # the handler sent its reply itself (reattach with resend)
            return
        self._reply(ids, msg, content)
        self._answers.remember(msg, digest, content, content.get("job_id") if msg.msg_type == M.SUBMIT else None)
        if msg.msg_type == M.SHUTDOWN and content.get("status") == "ok":
            self._flush_pending()
            self.stop()

    def _hello(self, ids, msg: Message) -> dict:
        theirs = msg.content["protocol_version"]
        try:
            ok = compatible(theirs)
        except WireError as exc:
            raise M.invalid(f"protocol_version: {exc}") from None
        if not ok:
            raise M.ProtocolError(
                "incompatible_version",
                f"client wants protocol {theirs}, this engine speaks {PROTOCOL_VERSION}; "
                "update whichever side is older")
        return {
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "engine_version": longanim.__version__,
            "engine_session": self.session,
            "heartbeat_s": HEARTBEAT_S,
            "capabilities": self._capabilities(ids, msg),
        }

    def _capabilities(self, ids, msg) -> dict:
        from longanim.engine.backends import available_backends

        return {
            "status": "ok",
            "backends": available_backends(),
            "devices": [_describe_device(d) for d in self.jobs.devices],
            "max_message_bytes": self.config.max_message_bytes,
            "max_frame_side": M.MAX_SIDE,
            "dtypes": sorted(M.DTYPES),
            "channels": [1, 3, 4],
            "input_kinds": ["inline", "path"] if self.roots else ["inline"],
            "output_kinds": ["inline", "path"] if self.roots else ["inline"],
            "file_formats": _file_formats() if self.roots else [],
            "cache": self.cache.enabled,
            "result_credits": RESULT_CREDITS,
        }

    def _submit(self, ids, msg: Message) -> dict:
        from longanim.engine.backends import available_backends

        content = {k: v for k, v in msg.content.items() if k in M.SCHEMAS[M.SUBMIT]}  # unknown fields: not kept
        if content["backend"] not in available_backends():
            raise M.ProtocolError("unknown_backend", f"unknown backend {content['backend']!r:.60}; "
                                  f"choose one of: {', '.join(available_backends())}")
        content["options"] = confine_options(content.get("options", {}), self.weights_roots)
        self._check_queue_share(msg.header["session"])
        job = Job(uuid.uuid4().hex, msg.header["session"], ids, msg.header, content)
        inp = content["input"]
        if inp["kind"] == "inline":
            job.input_bytes = self._admit(_held_bytes(msg.buffers, len(inp["frames"])))
            frames = [(f["number"], M.array_from(f["array"], msg.buffers)) for f in inp["frames"]]
            job.feed = FrameFeed(frames, bool(inp.get("more", False)))
            content["_buffers"] = msg.buffers
            if job.feed.complete:
                job.frames_total = job.feed.count
        else:
            content["_paths"] = self.roots.resolve_job(inp["lineart"], content.get("refs", []),
                                                      content["output"]["path"])
            rng = inp.get("frames")
            if rng:
                job.frames_total = rng[1] - rng[0] + 1
        self.jobs.submit(job)
        self._backlog.forget_all_but(self.jobs.jobs)  # jobs the manager no longer lists
        return {"status": "ok", "job_id": job.id, "state": job.state, "queue_length": self.jobs.queue_position()}

    def _append(self, ids, msg: Message) -> dict:
        job = self.jobs.get(msg.content["job_id"])
        if job.feed is None:
            raise M.ProtocolError("conflict", f"job {job.id} takes no more frames (state {job.state})")
        frames = [(f["number"], M.array_from(f["array"], msg.buffers)) for f in msg.content["frames"]]
        size = self._admit(_held_bytes(msg.buffers, len(msg.content["frames"])))
        self.jobs.append(job, frames, msg.content["more"])
        job.input_bytes += size
        if job.feed.complete:
            job.frames_total = job.feed.count
        return {"status": "ok", "job_id": job.id, "frames_received": job.feed.count}

    def _check_queue_share(self, session: str) -> None:
        """One client cannot fill the queue: past its share, it waits for its own jobs. Client
        ids are the clients' to choose, so the engine's own total is bounded too."""
        live = [j for j in self.jobs.list() if not j.final]
        if len(live) >= self.config.max_unfinished_jobs:
            raise M.ProtocolError("busy", f"the engine has {len(live)} unfinished jobs, its limit; retry when "
                                  "some end")
        unfinished = sum(1 for j in live if j.session == session)
        if unfinished >= self.config.max_queued_jobs:
            raise M.ProtocolError("busy", f"this client already has {unfinished} unfinished jobs, the most "
                                  f"this engine queues for one client (--max-queued-jobs); retry when one ends")

    def _admit(self, size: int) -> int:
        """Pixels of unfinished jobs live in memory; past the limit, clients retry later."""
        held = sum(j.input_bytes - feed.released for j in self.jobs.list() if (feed := j.feed) is not None)
        if held + size > self.config.max_queued_bytes:
            raise M.ProtocolError("busy", f"the engine holds {_mib(held)} of queued frames; {_mib(size)} more "
                                  f"would pass its limit ({_mib(self.config.max_queued_bytes)}, --max-queued-mb); "
                                  "retry when jobs finish")
        return size

    def _cancel(self, ids, msg: Message) -> dict:
        job = self.jobs.get(msg.content["job_id"])
        job.cancel.set()
        with job.lock:
            cancelled_in_queue = job.state == "queued"  # in the queue, or paused for input
            if cancelled_in_queue:
                job.state, job.finished, job.paused = "cancelled", time.time(), False
        if cancelled_in_queue:
            job.release_inputs()
            done = make_message(M.DONE, self.session,
                                {**job.summary(), "elapsed_s": 0.0, "event_seq": job.next_event_seq()},
                                parent=job.submit_header)
            self._send(job.identity, serialize(done))
        return {"status": "ok", "job_id": job.id, "state": job.state}

    def _status(self, ids, msg: Message) -> dict:
        """A job id is its capability: without one, a client sees only the jobs it submitted,
        and the operator (who can read the shutdown token) may ask for all."""
        job_id = msg.content.get("job_id")
        if job_id:
            return {"status": "ok", "jobs": [self.jobs.get(job_id).summary()], "engine_session": self.session}
        if msg.content.get("all"):
            self._check_token(msg.content.get("token"))
            jobs = self.jobs.list()
        else:
            jobs = [j for j in self.jobs.list() if j.session == msg.header["session"]]
        hidden = len(self.jobs.jobs) - len(jobs)
        return {"status": "ok", "jobs": [j.summary() for j in sorted(jobs, key=lambda j: j.created)],
                "jobs_hidden": hidden, "engine_session": self.session, "clients": self._client_counts()}

    def _client_counts(self) -> dict:
        """What the engine keeps per client, for an operator checking that it stays bounded."""
        return {**self._clients.counts(), "stalled": len(self._stalled), "replies_kept": len(self._answers),
                "forget_after_s": self._clients.forget_after_s}

    def _reattach(self, ids, msg: Message) -> dict:
        """Events of the job go to the caller from now on. With `resend`, finished inline
        results are queued again from the cache right here, on the control loop, so they
        reach the client before any later event of the job (job_done above all)."""
        job = self.jobs.get(msg.content["job_id"])
        job.identity = ids
        resent = 0
        if msg.content.get("resend", False):
            # `final` before the snapshot: a worker records a frame's key before it can end
            # the job, so an ended job's snapshot is complete; a running job's later frames
            # and its job_done reach the new identity through the event queue, in order.
            ended = job.final
            items = sorted(job.done_keys.items())
            # Results dropped while the client was away and not in the cache (a job run
            # without it) come from the backlog; those it could not keep are named.
            kept, lost = self._backlog.take(job.id)
            kept = [(n, frames) for n, frames in kept if n not in job.done_keys]
            lost = [n for n in lost if n not in job.done_keys]
            reply = make_message(M.reply_type(msg.msg_type), self.session,
                                 {"status": "ok", "job": job.summary(), "resending": len(items) + len(kept),
                                  "results_lost": lost}, parent=msg.header)
            self._send(ids, serialize(reply))  # the reply first, then the results
            for number, key in items:
                resent += self._resend_one(job, ids, number, key)
            for number, frames in kept:
                self._send(ids, frames, result=(job.id, number))
            if ended:
                done = make_message(M.DONE, self.session,
                                    {**job.summary(), "resent": True, "event_seq": job.next_event_seq()},
                                    parent=job.submit_header)
                self._send(ids, serialize(done))
            return {"_sent": True}
        return {"status": "ok", "job": job.summary(), "resending": 0}

    def _tell_what_was_missed(self, ids: list) -> None:
        """A stalled client speaks again: its events were dropped meanwhile. One progress
        event per job, with the next `event_seq` and no state (it may be stale by the time
        the client reads it), shows the gap; a reattach with resend catches up."""
        for job in self.jobs.list():
            if job.identity == ids:
                event = make_message(M.PROGRESS, self.session,
                                     {"job_id": job.id, "missed_events": True, "event_seq": job.next_event_seq()},
                                     parent=job.submit_header)
                self._send(ids, serialize(event))

    def _resend_one(self, job: Job, ids: list, number: int, key: str) -> int:
        hit = self.cache.get_arrays(key)  # mapped, not read: cheap even for big frames
        if hit is None:
            return 0
        arrays, info = hit
        bufs: list = []
        content = {"job_id": job.id, "number": number, "rgb": M.array_desc(arrays["rgb"], bufs),
                   "cached": True, "resent": True, "info": info}
        if job.content.get("confidence") and "confidence" in arrays:
            content["confidence"] = M.array_desc(arrays["confidence"], bufs)
        msg = make_message(M.RESULT, self.session, content, parent=job.submit_header, buffers=bufs)
        self._send(ids, serialize(msg))
        return 1

    def _ping(self, ids, msg: Message) -> dict:
        running = sum(1 for j in self.jobs.list() if j.state == "running")
        return {"status": "ok", "time": time.time(), "jobs_running": running}

    def _shutdown(self, ids, msg: Message) -> dict:
        self._check_token(msg.content["token"])
        return {"status": "ok"}

    def _check_token(self, token) -> None:
        if not isinstance(token, str) or not secrets.compare_digest(token.encode(), self.token.encode()):
            raise M.ProtocolError("unauthorized", f"wrong or missing engine token (it is in {self.token_path}, "
                                  "readable only by the user running the engine)")

    # -- events from workers ------------------------------------------------------------

    def _on_event(self, frames: list) -> None:
        job_id, kind, number, rest = frames[0].bytes.decode(), frames[1].bytes, frames[2].bytes, frames[3:]
        job = self.jobs.jobs.get(job_id)
        if job is None:
            return
        if kind == b"r":
            self._send(job.identity, rest, job, (job_id, int(number)))
        else:
            self._send(job.identity, rest)


def _best_effort_header(frames: list) -> dict | None:
    """The header of a message that failed validation, if it can be read, so the client
    can match the error reply to its request."""
    try:
        header = unpack_map(frames[1].buffer if hasattr(frames[1], "buffer") else frames[1], "header")
        if isinstance(header.get("msg_id"), str) and 0 < len(header["msg_id"]) <= 256:
            return {k: header[k] for k in ("msg_id", "msg_type", "session", "version", "date")
                    if isinstance(header.get(k), str) and 0 < len(header[k]) <= 256}
    except Exception:
        pass
    return None


# What one inline frame costs the engine besides its pixels (descriptor, array and
# bookkeeping objects): counted against --max-queued-mb, so a million 1-pixel frames are too.
FRAME_OVERHEAD_BYTES = 2048


def _held_bytes(buffers, frames: int) -> int:
    return frames_nbytes(buffers) + FRAME_OVERHEAD_BYTES * frames


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"


def _file_formats() -> list[str]:
    from longanim.engine.sequences.image_files import CV2_EXTS, EXR_EXTS

    return sorted(CV2_EXTS | EXR_EXTS)


def _describe_device(device: str) -> dict:
    info: dict = {"name": device}
    if device == "cpu":
        try:
            info["memory_total_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    elif device.startswith("cuda") and "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            free, total = torch.cuda.mem_get_info(torch.device(device))
            info.update(memory_total_bytes=total, memory_free_bytes=free)
        except Exception:
            pass
    return info
