"""What one message can make a real engine process hold (issue 15, "limits applied before
buffering"), read from /proc: libzmq refuses a single part over `max_message_bytes` as its
size header arrives (ZMQ_MAXMSGSIZE), so such a part is never buffered; a message of many
parts each under the limit is buffered whole by libzmq before the engine sees any of it,
so its peak is its own size (PROTOCOL.md, Message size), given back once it is refused."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import zmq
from engine_helpers import Engine, reply_to

from longanim.protocol import messages as M
from longanim.protocol.wire import make_message, serialize

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")

LIMIT_MB = 8
MIB = 1 << 20
SLACK_MB = 24  # allocator and libzmq buffers beyond the message itself


def _mem_mb(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024
    return out


def _dealer(engine: Engine) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.url)
    return sock


def _pings(sock: zmq.Socket) -> bool:
    msg = make_message(M.PING, "probe", {})
    sock.send_multipart(serialize(msg))
    return reply_to(sock, msg).content["status"] == "ok"


@pytest.fixture
def engine(tmp_path):
    with Engine(tmp_path, "--max-message-mb", str(LIMIT_MB)) as eng:
        yield eng


def test_one_part_over_the_limit_is_never_buffered_and_the_engine_goes_on(engine):
    probe, sender = _dealer(engine), _dealer(engine)
    try:
        assert _pings(probe)
        before = _mem_mb(engine.proc.pid)
        part = np.ones(16 * LIMIT_MB * MIB, np.uint8)  # 128 MiB in one part, 16 x the limit
        msg = make_message(M.SUBMIT, "big", {"backend": "passthrough", "input": {"kind": "inline", "frames": []}},
                           buffers=[part])
        sender.send_multipart(serialize(msg), copy=False)
        time.sleep(1.0)  # long enough for 128 MiB over loopback, were it read
        assert _pings(probe)
        grown = _mem_mb(engine.proc.pid)["VmHWM"] - before["VmHWM"]
        assert grown < SLACK_MB, f"the engine's peak grew {grown:.0f} MiB for a part it should refuse unread"
    finally:
        probe.close()
        sender.close()
    assert engine.proc.poll() is None


def test_many_parts_under_the_limit_cost_the_message_size_once_then_too_large(engine):
    probe, sender = _dealer(engine), _dealer(engine)
    try:
        assert _pings(probe)
        before = _mem_mb(engine.proc.pid)
        parts, part_mb = 16, LIMIT_MB // 2  # 64 MiB in parts of 4 MiB, each under the 8 MiB limit
        payload = b"\x01" * (part_mb * MIB)
        msg = make_message(M.SUBMIT, "many", {"backend": "passthrough", "input": {"kind": "inline", "frames": []}})
        sender.send_multipart(serialize(msg) + [payload] * parts, copy=False)
        reply = reply_to(sender, msg, timeout_s=60)
        assert reply.content["error"]["code"] == "too_large", reply.content
        assert _pings(probe)
        after = _mem_mb(engine.proc.pid)
        grown = after["VmHWM"] - before["VmHWM"]
        assert grown < parts * part_mb + SLACK_MB, f"peak grew {grown:.0f} MiB for a {parts * part_mb} MiB message"
        assert after["VmRSS"] - before["VmRSS"] < SLACK_MB, "the refused message was not given back"
    finally:
        probe.close()
        sender.close()
