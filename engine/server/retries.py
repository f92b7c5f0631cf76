"""Which requests are retries, so a client that timed out can resend without a second job.

A retry is the identical request sent again: same session, seq, type and content
(buffers included), whatever its msg_id and connection. Anything else that reuses a
(session, seq) pair is a different request and is refused, never answered with the
first one's reply: two clients sharing a session id, or a client reusing a seq, would
otherwise receive each other's jobs. Transient answers (`busy`) are not remembered, so
a retry after the engine has room runs for real.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass

from longanim.protocol import messages as M
from longanim.protocol.wire import Message

REMEMBERED = 4096
DEDUPLICATED = (M.SUBMIT, M.APPEND, M.CANCEL)  # the requests that change state
TRANSIENT = ("busy", "internal")


@dataclass
class Answer:
    msg_type: str
    digest: bytes
    content: dict
    job_id: str | None


def request_digest(frames: list) -> bytes:
    """Of the content map and every buffer as received (frames from the delimiter on)."""
    h = hashlib.blake2b(digest_size=16)
    for frame in frames[4:]:
        view = memoryview(getattr(frame, "buffer", frame))
        h.update(view.nbytes.to_bytes(8, "little"))
        h.update(view)
    return h.digest()


class RequestMemory:
    def __init__(self, capacity: int = REMEMBERED):
        self.capacity = capacity
        self._answers: collections.OrderedDict[tuple, Answer] = collections.OrderedDict()

    @staticmethod
    def key(msg: Message) -> tuple | None:
        seq = msg.header.get("seq")
        return (msg.header["session"], seq) if seq is not None and msg.msg_type in DEDUPLICATED else None

    def recall(self, msg: Message, digest: bytes) -> Answer | None:
        """The earlier answer when `msg` is a retry; ProtocolError `conflict` when its
        (session, seq) already named a different request."""
        key = self.key(msg)
        answer = self._answers.get(key) if key is not None else None
        if answer is None:
            return None
        if answer.msg_type != msg.msg_type or answer.digest != digest:
            same = "another" if answer.msg_type == msg.msg_type else f"a {answer.msg_type}"
            raise M.ProtocolError(
                "conflict", f"seq {key[1]} of session {key[0][:40]!r} was already used by {same} request "
                "with different content; a retry must repeat the request exactly, every request needs "
                "its own seq, and every client its own session id")
        return answer

    def remember(self, msg: Message, digest: bytes, content: dict, job_id: str | None) -> None:
        key = self.key(msg)
        if key is None or content.get("error", {}).get("code") in TRANSIENT:
            return
        self._answers[key] = Answer(msg.msg_type, digest, content, job_id)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def forget(self, sessions: list[str]) -> int:
        """Drops the answers kept for these client ids (clients the engine has forgotten)."""
        gone = set(sessions)
        keys = [key for key in self._answers if key[0] in gone]
        for key in keys:
            del self._answers[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._answers)
