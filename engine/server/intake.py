"""Taking a request off the ROUTER socket without letting one message exhaust the engine.

ZeroMQ hands a multipart message over whole, but Python only pays for the frames it
takes: `recv_multipart` builds an object per frame first and checks afterwards, so a
message of a million empty frames stalled the loop for seconds. Here frames are taken
one at a time and, once a limit is passed, the rest are drained as throwaway bytes; the
first frames are kept so the error reply can still name the request.
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq
from longanim.protocol.wire import N_MAP_FRAMES

KEEP_FOR_HEADER = 1 + 1 + N_MAP_FRAMES  # identity, delimiter and the four maps


@dataclass
class Intake:
    frames: list  # identity first; on refusal only the first KEEP_FOR_HEADER frames
    nbytes: int
    count: int  # frames after the identity
    refused: str | None = None  # why, when a limit was passed


def take_request(sock: zmq.Socket, max_frames: int, max_bytes: int) -> Intake | None:
    """One whole message from `sock`, or None when nothing is waiting."""
    try:
        first = sock.recv(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None
    frames, nbytes, count, refused = [first], 0, 0, None
    more = first.more
    while more:
        if refused is None:
            frame = sock.recv(copy=False)
            more = frame.more
            count += 1
            nbytes += len(frame)
            frames.append(frame)
            if count > max_frames:
                refused = f"message has more than {max_frames} frames"
            elif nbytes > max_bytes:
                refused = f"message is more than {max_bytes} bytes"
            if refused is not None:
                del frames[KEEP_FOR_HEADER:]
        else:  # draining: plain bytes are the cheapest frames pyzmq makes
            sock.recv()
            count += 1
            more = sock.getsockopt(zmq.RCVMORE)
    return Intake(frames, nbytes, count, refused)
