"""The client's connection to an engine: a DEALER socket with deadlines, heartbeats and
reconnects. pyzmq + msgpack only, so it runs inside Blender's and Nuke's Python.

A Connection belongs to one thread (ZeroMQ sockets do). Every wait has a deadline.
Any message from the engine counts as a heartbeat; when the engine stays silent for
`liveness` heartbeats while something is outstanding, the connection reconnects with
doubling backoff. A request sent again on a new socket keeps its (session, seq), so the
engine answers it only once. What the messages mean for jobs is `client.EngineClient`'s:
it fills in the `_route`, `_after_pump`, `_has_live_work` and reconnect hooks.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import zmq

from longanim.protocol import messages as M
from longanim.protocol.wire import Message, WireError, deserialize, make_message, serialize

DEFAULT_URL = "tcp://127.0.0.1:5555"
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


class Connection:
    """One DEALER socket to one engine; requests with deadlines and retries, events routed on."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        heartbeat_s: float = 1.0,
        liveness: int = 3,
        curve: CurveKeys | None = None,
        context: zmq.Context | None = None,
    ):
        self.url = url
        self.timeout = timeout
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self.curve = curve
        self.session = uuid.uuid4().hex  # the client id: the engine deduplicates by (session, seq)
        self.ctx = context or zmq.Context.instance()
        self.reconnects = 0
        self._seq = 0
        self._replies: dict[str, Message] = {}
        self._awaiting: set[str] = set()
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

    def _reconnect(self) -> None:
        """Lazy/Paranoid Pirate: a fresh socket, doubling backoff, then `_on_reconnected`."""
        now = time.monotonic()
        if now < self._next_reconnect:
            return
        self.reconnects += 1
        self._connect()
        self._next_reconnect = now + self._backoff
        self._backoff = min(self._backoff * 2, 8.0)
        self._on_reconnected()

    @property
    def connected(self) -> bool:
        return time.monotonic() - self._last_recv < self.heartbeat_s * self.liveness

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def __enter__(self):
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
                        raise EngineError(**error_fields(reply))
                    return reply
            if attempt < retries:
                self._next_reconnect = 0.0
                self._reconnect()
        self._awaiting.discard(msg.msg_id)
        raise EngineTimeout(f"no reply from the engine at {self.url} to {msg_type} within {timeout:.1f} s "
                            f"({retries + 1} tries); is `longanim serve` running there?")

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
            self._after_pump()
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
                # ZeroMQ reconnected to a new engine process on its own.
                self._on_engine_restarted()
        if (msg.msg_type.endswith("_reply") or msg.msg_type == M.ERROR) and msg.parent_id in self._awaiting:
            self._replies[msg.parent_id] = msg
            return
        self._route(msg)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        silent = now - self._last_recv
        if silent > self.heartbeat_s * self.liveness and now - self._ping_sent < self.heartbeat_s * self.liveness:
            if self._has_live_work() or self._awaiting:
                self._reconnect()
        if silent > self.heartbeat_s and now - self._ping_sent > self.heartbeat_s:
            self._ping_sent = now
            msg = make_message(M.PING, self.session)  # no seq: pings need no deduplication
            try:
                self.socket.send_multipart(serialize(msg), zmq.NOBLOCK)
            except zmq.Again:
                pass


def error_fields(msg: Message) -> dict:
    """code and message of an error reply, whatever shape a peer gave them."""
    err = msg.content.get("error")
    err = err if isinstance(err, dict) else {}
    return {"code": str(err.get("code", "error")), "message": str(err.get("message", "engine error"))}
