"""The wire format: pure functions between a Message and a list of ZeroMQ frames.

No sockets here, so the format is tested without a process, and the engine and
every client (Blender, Nuke, the CLI) share one definition of it. Layout of one
message, after the ROUTER identity frame::

    DELIMITER, header, parent_header, metadata, content, buffer 0, buffer 1, ...

The four maps are msgpack; buffers are raw bytes (pixel data) that never pass
through msgpack, so they can be sent and received without a copy.
"""

from __future__ import annotations

import datetime
import itertools
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack

# The protocol version lives here and only here; PROTOCOL.md and tests read it.
PROTOCOL_VERSION = "1.2"

DELIMITER = b"<LONGANIM|MSG>"
N_MAP_FRAMES = 4
# Limits on the msgpack parts; pixel buffers have their own (configurable) limit.
MAX_MAP_BYTES = 16 * 1024 * 1024
MAX_BUFFERS = 100_000


class WireError(ValueError):
    """A message that cannot be decoded; `code` goes into the error reply."""

    def __init__(self, message: str, code: str = "malformed"):
        super().__init__(message)
        self.code = code


def version_tuple(version: Any) -> tuple[int, int]:
    """Parse "MAJOR.MINOR"; anything else is malformed."""
    if not isinstance(version, str):
        raise WireError(f"version must be a string like '1.0', got {type(version).__name__}")
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise WireError(f"version must look like 'MAJOR.MINOR', got {version[:40]!r}")
    return int(parts[0]), int(parts[1])


def compatible(version: str, ours: str = PROTOCOL_VERSION) -> bool:
    """Peers interoperate when the major versions match; minor versions only add."""
    return version_tuple(version)[0] == version_tuple(ours)[0]


_counter = itertools.count()
_process_tag = uuid.uuid4().hex[:12]


def new_id() -> str:
    # A random per-process tag plus a counter: unique, and much cheaper than uuid4 per message.
    return f"{_process_tag}-{os.getpid():x}-{next(_counter):x}"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Message:
    header: dict
    parent_header: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    content: dict = field(default_factory=dict)
    buffers: list = field(default_factory=list)  # bytes-like: bytes, memoryview, numpy arrays, zmq.Frame

    @property
    def msg_type(self) -> str:
        return self.header["msg_type"]

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]

    @property
    def parent_id(self) -> str | None:
        return self.parent_header.get("msg_id")


def make_header(msg_type: str, session: str, seq: int | None = None) -> dict:
    header = {
        "msg_id": new_id(),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
        "session": session,
        "date": utc_now(),
    }
    if seq is not None:
        header["seq"] = seq
    return header


def make_message(
    msg_type: str,
    session: str,
    content: dict | None = None,
    *,
    parent: Message | dict | None = None,
    buffers: Sequence | None = None,
    metadata: dict | None = None,
    seq: int | None = None,
) -> Message:
    if isinstance(parent, Message):
        parent = parent.header
    return Message(
        header=make_header(msg_type, session, seq),
        parent_header=dict(parent or {}),
        metadata=dict(metadata or {}),
        content=dict(content or {}),
        buffers=list(buffers or []),
    )


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_map(data: Any, what: str) -> dict:
    """Decode one msgpack part; it must be exactly one map with string keys."""
    data = memoryview(data)
    if data.nbytes > MAX_MAP_BYTES:
        raise WireError(f"{what} is {data.nbytes} bytes; the limit is {MAX_MAP_BYTES}", "too_large")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
        )
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise WireError(f"{what} is not valid msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be a msgpack map, got {type(obj).__name__}")
    return obj


def _reject_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension types are not allowed (got ext type {code})")


def serialize(msg: Message) -> list:
    """Message -> frames. Buffers are passed through untouched (send with copy=False)."""
    return [
        DELIMITER,
        pack(msg.header),
        pack(msg.parent_header),
        pack(msg.metadata),
        pack(msg.content),
        *msg.buffers,
    ]


def deserialize(frames: Sequence) -> Message:
    """Frames (starting at the delimiter) -> Message, checking the header's shape.

    Buffers come back as memoryviews over the received frames, without a copy.
    """
    if len(frames) < 1 + N_MAP_FRAMES:
        raise WireError(f"message has {len(frames)} frames; at least {1 + N_MAP_FRAMES} are needed")
    if _as_bytes(frames[0]) != DELIMITER:
        raise WireError("message does not start with the delimiter frame")
    if len(frames) - 1 - N_MAP_FRAMES > MAX_BUFFERS:
        raise WireError(f"message has more than {MAX_BUFFERS} buffers", "too_large")
    names = ("header", "parent_header", "metadata", "content")
    maps = [unpack_map(_view(f), name) for f, name in zip(frames[1:5], names)]
    header = maps[0]
    check_header(header)
    parent_id = maps[1].get("msg_id")
    if maps[1] and (not isinstance(parent_id, str) or not 0 < len(parent_id) <= 256):
        raise WireError("parent_header.msg_id must be a non-empty string of at most 256 characters")
    return Message(header, maps[1], maps[2], maps[3], [_view(f) for f in frames[5:]])


def check_header(header: dict, what: str = "header") -> None:
    for key in ("msg_id", "msg_type", "session", "version"):
        value = header.get(key)
        if not isinstance(value, str) or not value or len(value) > 256:
            raise WireError(f"{what}.{key} must be a non-empty string of at most 256 characters")
    version_tuple(header["version"])
    seq = header.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise WireError(f"{what}.seq must be a non-negative integer")


def frames_nbytes(frames: Sequence) -> int:
    return sum(_view(f).nbytes for f in frames)


def _view(frame: Any) -> memoryview:
    buffer = getattr(frame, "buffer", None)  # zmq.Frame
    return memoryview(buffer if buffer is not None else frame)


def _as_bytes(frame: Any) -> bytes:
    view = _view(frame)
    return view.tobytes() if view.nbytes <= 64 else b""
