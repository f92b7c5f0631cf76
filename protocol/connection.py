"""The client's connection to an engine: a DEALER socket with deadlines, heartbeats and
reconnects. pyzmq + msgpack only, so it runs inside Blender's and Nuke's Python.

A Connection belongs to one thread (ZeroMQ sockets do). Every request is a `Pending`
that `_pump` settles: with the reply, the engine's error, or `EngineTimeout` at its
deadline, so a GUI timer starts requests and looks back later while scripts simply
`wait()`. Any message from the engine counts as a heartbeat; when the engine stays silent
for `liveness` heartbeats while something is outstanding, or a request's retry falls due,
the connection reconnects with doubling backoff and sends every unanswered request again,
byte for byte (same msg_id, session and seq), so the engine answers each only once. What
the messages mean for jobs is `client.EngineClient`'s: it fills in the `_route`,
`_after_pump`, `_has_live_work` and reconnect hooks.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import zmq

from longanim.protocol import messages as M
from longanim.protocol.wire import Message, WireError, deserialize, make_message, serialize

DEFAULT_URL = "tcp://127.0.0.1:5555"
DEFAULT_HEARTBEAT_S = 1.0  # until the engine's hello names its own
RCVHWM = 128  # messages; a frame is a result plus a progress event
# One pump round takes at most this many messages, or this long, so poll() stays short
# however much is waiting; the rest waits for the next round.
PUMP_BATCH = 256
PUMP_BUDGET_S = 0.005


class EngineError(Exception):
    """The engine answered with an error; `code` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


class EngineTimeout(EngineError, TimeoutError):
    def __init__(self, message: str):
        super().__init__("timeout", message)


class Pending:
    """An operation in flight. `done` once the engine answered, refused, or `deadline`
    (time.monotonic()) passed; the connection's pump (`poll()`) settles it, so a GUI timer
    starts one and looks again on its next tick instead of waiting."""

    def __init__(self, connection: "Connection", what: str, timeout: float, msg: Message | None = None,
                 retries: int = 0, on_reply: Callable[[Message], Any] | None = None):
        now = time.monotonic()
        self.connection = connection
        self.what = what
        self.timeout = timeout
        self.deadline = now + timeout
        self.msg = msg
        self.frames = serialize(msg) if msg is not None else None  # a retry sends these very frames
        # Retries fall due evenly inside the deadline: `timeout` bounds the whole operation.
        self._retry_at = [now + timeout * (k + 1) / (retries + 1) for k in range(retries)]
        self._on_reply = on_reply
        self.sent = False
        self.tries = 0
        self.done = False
        self.error: EngineError | None = None
        self.value: Any = None
        self._callbacks: list[Callable[["Pending"], None]] = []

    @property
    def key(self) -> str:
        return self.msg.msg_id if self.msg is not None else f"local-{id(self):x}"

    def result(self) -> Any:
        """The answer; raises the EngineError it ended with, or one saying there is none yet."""
        if not self.done:
            raise EngineError("pending", f"{self.what} to {self.connection.url} has no answer yet; "
                              "call poll() until .done (or wait())")
        if self.error is not None:
            raise self.error
        return self.value

    def wait(self) -> Any:
        """Block, pumping the connection, until settled: for scripts, never for GUI timers."""
        self.connection.wait_for(self)
        return self.result()

    def add_done_callback(self, fn: Callable[["Pending"], None]) -> None:
        """`fn(self)` once settled (at once if it is); runs inside poll(), so keep it short."""
        if self.done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def settle(self, value: Any = None, error: EngineError | None = None) -> None:
        if self.done:
            return
        self.done, self.value, self.error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def _answer(self, reply: Message) -> None:
        if reply.content.get("status") == "error":
            self.settle(error=EngineError(**error_fields(reply)))
            return
        try:
            value = self._on_reply(reply) if self._on_reply is not None else reply
        except EngineError as exc:
            self.settle(error=exc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a peer's reply must not crash the host
            self.settle(error=EngineError("malformed", f"the engine's reply to {self.what} is not as "
                                          f"expected ({type(exc).__name__}: {exc})"))
        else:
            self.settle(value)

    def __repr__(self) -> str:
        state = "pending" if not self.done else ("failed" if self.error else "done")
        return f"<Pending {self.what} {state}>"


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


class Connection:
    """One DEALER socket to one engine; requests with deadlines and retries, events routed on."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        heartbeat_s: float | None = None,
        liveness: int = 3,
        curve: CurveKeys | None = None,
        context: zmq.Context | None = None,
    ):
        self.url = url
        self.timeout = timeout
        # None: the engine's interval from hello (DEFAULT_HEARTBEAT_S until then).
        self._heartbeat_fixed = heartbeat_s is not None
        self.heartbeat_s = DEFAULT_HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self.liveness = liveness
        self.curve = curve
        self.session = uuid.uuid4().hex  # the client id: the engine deduplicates by (session, seq)
        self.ctx = context or zmq.Context.instance()
        self.reconnects = 0
        self._seq = 0
        self._pending: dict[str, Pending] = {}  # by msg_id: requests not yet answered
        self._engine_session: str | None = None
        self._backoff = 0.25
        self._next_reconnect = 0.0
        self._ping_sent = 0.0
        self.socket: zmq.Socket | None = None
        self._connect()

    # -- hooks for what is carried over the connection ------------------------------------

    def _route(self, msg: Message) -> None:
        """A message that is not the reply to an awaited request (events, late replies)."""

    def _after_pump(self) -> None:
        """Runs on every pump: a place to keep streamed input moving."""

    def _has_live_work(self) -> bool:
        """Whether silence from the engine should make us reconnect."""
        return False

    def _on_reconnected(self) -> None:
        """After a fresh socket replaced a silent one."""

    def _on_engine_restarted(self) -> None:
        """A message came from a different engine process than before."""

    def _pump_wait(self) -> float:
        """How long a blocking wait may sleep in one pump round."""
        return 0.05

    # -- connection -----------------------------------------------------------------------

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
        self._heard_on_socket: float | None = None  # a message came in on this socket then

    def _reconnect(self) -> None:
        """Lazy/Paranoid Pirate: a fresh socket, doubling backoff, then `_on_reconnected`."""
        now = time.monotonic()
        if now < self._next_reconnect:
            return
        self.reconnects += 1
        self._connect()
        self._next_reconnect = now + self._backoff
        self._backoff = min(self._backoff * 2, 8.0)
        self._resend_pending()
        self._on_reconnected()

    def _resend_pending(self) -> None:
        """Every unanswered request again on the new socket, as the identical message."""
        for p in list(self._pending.values()):
            if p.msg is not None:
                p.sent = False
                self._try_send(p)

    def adopt_heartbeat(self, seconds: Any) -> None:
        """Use the engine's heartbeat interval (from hello) unless one was asked for."""
        if not self._heartbeat_fixed and isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                and 0.01 <= seconds <= 600:
            self.heartbeat_s = float(seconds)

    @property
    def connected(self) -> bool:
        return time.monotonic() - self._last_recv < self.heartbeat_s * self.liveness

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
        pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            p.settle(error=EngineError("closed", f"the client was closed before {p.what} was answered"))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level ------------------------------------------------------------------------

    def _make_request(self, msg_type: str, content: dict | None = None, buffers: Sequence = ()) -> Message:
        self._seq += 1
        return make_message(msg_type, self.session, content, buffers=buffers, seq=self._seq)

    def begin(self, msg_type: str, content: dict | None = None, buffers: Sequence = (), *,
              timeout: float | None = None, retries: int = 1,
              on_reply: Callable[[Message], Any] | None = None) -> Pending:
        """Send a request without waiting; the pump settles the returned Pending with
        `on_reply(reply)` (default: the reply Message). `timeout` bounds it, retries included."""
        timeout = self.timeout if timeout is None else timeout
        msg = self._make_request(msg_type, content, buffers)
        p = Pending(self, msg_type, timeout, msg, retries=retries, on_reply=on_reply)
        if self.socket is None:
            p.settle(error=EngineError("closed", f"the client is closed; {msg_type} was not sent"))
            return p
        self._pending[p.key] = p
        self._try_send(p)
        return p

    def local_pending(self, what: str, timeout: float | None = None) -> Pending:
        """A Pending this side settles (e.g. a cancel waiting for its job's id); the pump
        still ends it at its deadline."""
        p = Pending(self, what, self.timeout if timeout is None else timeout)
        self._pending[p.key] = p
        return p

    def _try_send(self, p: Pending) -> None:
        if self.socket is None:
            return
        try:
            self.socket.send_multipart(p.frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return  # the send queue is full: the next pump tries again
        p.sent = True
        p.tries += 1

    def request(self, msg_type: str, content: dict | None = None, buffers: Sequence = (),
                timeout: float | None = None, retries: int = 1) -> Message:
        """Send and wait for the reply (`begin(...).wait()`); on silence the identical request
        goes again on a new connection, so the engine answers it only once."""
        return self.begin(msg_type, content, buffers, timeout=timeout, retries=retries).wait()

    def wait_for(self, p: Pending) -> None:
        while not p.done:
            self._pump(min(self._pump_wait(), max(0.0, p.deadline - time.monotonic())))

    def _pump(self, timeout: float) -> int:
        """Take waiting messages and route them to their job or request, keep streamed input
        and pending requests moving; waits at most `timeout` for the first message."""
        deadline = time.monotonic() + timeout
        total = 0
        while True:
            got, drained = self._take_messages(deadline - time.monotonic())
            total += got
            self._after_pump()
            self._advance_pending(drained)
            self._heartbeat()
            if got or time.monotonic() >= deadline:
                return total

    def _take_messages(self, wait: float) -> tuple[int, bool]:
        """Up to PUMP_BATCH messages or PUMP_BUDGET_S of them; `drained`: none is left waiting."""
        if self.socket is None or not self.socket.poll(max(0, int(wait * 1000)), zmq.POLLIN):
            return 0, True
        started, got = time.monotonic(), 0
        while got < PUMP_BATCH and time.monotonic() - started < PUMP_BUDGET_S:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return got, True
            self._on_message(frames)
            got += 1
        return got, False

    def _advance_pending(self, drained: bool) -> None:
        """Send what could not be sent, retry on a fresh socket what fell due, and time out
        what passed its deadline; deadlines wait while messages are still queued (a host
        that paused polling finds its replies there)."""
        now = time.monotonic()
        retry = False
        for p in list(self._pending.values()):
            if p.done:  # settled by this side (a local Pending)
                self._pending.pop(p.key, None)
                continue
            if p.msg is not None and not p.sent:
                self._try_send(p)
            if now >= p.deadline:
                if drained:
                    self._expire(p)
            elif drained and p._retry_at and now >= p._retry_at[0]:
                # Not while messages wait: they may hold the reply.
                p._retry_at.pop(0)
                retry = True
        heard = self._heard_on_socket
        if retry and heard is not None and now - heard < self.heartbeat_s * self.liveness:
            # The engine is talking on this socket, so the reply was lost (dropped for a
            # client that stopped reading), not the connection: a fresh socket would throw
            # away what is still on its way in on this one (results a paused host missed).
            self._resend_pending()
        elif retry:
            self._next_reconnect = 0.0
            self._reconnect()

    def _expire(self, p: Pending) -> None:
        self._pending.pop(p.key, None)
        if p.msg is None:
            p.settle(error=EngineTimeout(f"{p.what} did not finish within {p.timeout:.1f} s"))
            return
        p.settle(error=EngineTimeout(
            f"no reply from the engine at {self.url} to {p.what} within {p.timeout:.1f} s "
            f"({p.tries} {'try' if p.tries == 1 else 'tries'}); is `longanim serve` running there?"))

    def _on_message(self, frames: list) -> None:
        self._last_recv = self._heard_on_socket = time.monotonic()
        self._backoff = 0.25
        try:
            msg = deserialize(frames)
        except WireError:
            return
        engine_session = msg.header["session"]
        restarted = self._engine_session not in (None, engine_session)
        self._engine_session = engine_session
        p = None
        if msg.msg_type.endswith("_reply") or msg.msg_type == M.ERROR:
            p = self._pending.pop(msg.parent_id, None) if msg.parent_id else None
        if restarted:
            # ZeroMQ reconnected to a new engine process on its own: what the old one had
            # not answered is lost with it.
            self._resend_pending()
            self._on_engine_restarted()
        if p is not None:
            p._answer(msg)
        else:
            self._route(msg)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        silent = now - self._last_recv
        if silent > self.heartbeat_s * self.liveness and now - self._ping_sent < self.heartbeat_s * self.liveness:
            if self._has_live_work() or self._pending:
                self._reconnect()
        if silent > self.heartbeat_s and now - self._ping_sent > self.heartbeat_s:
            self._ping_sent = now
            msg = make_message(M.PING, self.session)  # no seq: pings need no deduplication
            try:
                if self.socket is not None:
                    self.socket.send_multipart(serialize(msg), zmq.NOBLOCK)
            except zmq.Again:
                pass


def error_fields(msg: Message) -> dict:
    """code and message of an error reply, whatever shape a peer gave them."""
    err = msg.content.get("error")
    err = err if isinstance(err, dict) else {}
    return {"code": str(err.get("code", "error")), "message": str(err.get("message", "engine error"))}
