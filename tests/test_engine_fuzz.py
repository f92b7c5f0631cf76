"""Property-based fuzzing of the decoder and validator, then of a real engine: every
hostile message gets an answer and the engine still answers a ping afterwards."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_helpers import Engine
from longanim.protocol import messages as M
from longanim.protocol import wire
from longanim.protocol.wire import WireError, deserialize, make_message, serialize

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
                 st.text(max_size=20), st.binary(max_size=20))
value = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                    st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                     max_leaves=12)
content_maps = st.dictionaries(st.sampled_from(
    ["backend", "input", "frames", "kind", "job_id", "more", "token", "protocol_version", "keyframes", "output",
     "refs", "resend", "options", "cache", "x"]), value, max_size=6)


@st.composite
def hostile_frames(draw) -> list[bytes]:
    """A mix of noise, almost-valid messages and valid messages with wrong field types."""
    kind = draw(st.sampled_from(["noise", "header", "content", "truncate", "buffers"]))
    if kind == "noise":
        return draw(st.lists(st.binary(max_size=64), min_size=1, max_size=8))
    msg_type = draw(st.sampled_from(list(M.REQUESTS) + ["result", "error", "bogus_request"]))
    msg = make_message(msg_type, "fuzz", draw(content_maps))
    # A fixed id and date: hypothesis needs the same draws to give the same bytes.
    msg.header.update(msg_id="fuzz-1", date="2026-01-01T00:00:00+00:00")
    frames = [bytes(f) for f in serialize(msg)]
    if kind == "header":
        header = {**msg.header, **draw(st.dictionaries(st.sampled_from(["msg_id", "msg_type", "version", "session",
                                                                         "seq"]), value, max_size=3))}
        frames[1] = msgpack.packb(header, use_bin_type=True, default=repr)
    elif kind == "truncate":
        cut = draw(st.integers(0, len(frames) - 1))
        frames = frames[:cut] + [frames[cut][: draw(st.integers(0, max(0, len(frames[cut]) - 1)))]]
    elif kind == "buffers":
        bufs = draw(st.lists(st.binary(max_size=48), max_size=3))
        frames = frames + bufs
        shape = draw(st.lists(st.integers(-2, 5), min_size=0, max_size=4))
        desc = {"buffer": draw(st.integers(-1, 3)), "shape": shape,
                "dtype": draw(st.sampled_from(["uint8", "float32", "int64", "x"]))}
        content = {"backend": "passthrough", "input": {"kind": "inline", "frames": [{"number": 1, "array": desc}]},
                   "keyframes": [{"number": 1, "color": desc}]}
        if msg_type == M.APPEND:
            content = {"job_id": "j", "frames": [{"number": 1, "array": desc}], "more": False}
        frames[4] = msgpack.packb(content)
    return frames


@FUZZ
@given(hostile_frames())
def test_decoder_raises_only_wire_errors(frames):
    try:
        msg = deserialize(frames)
    except WireError:
        return
    try:
        M.validate_request(msg)
    except M.ProtocolError:
        pass


@FUZZ
@given(st.sampled_from(list(M.SCHEMAS)), content_maps, st.lists(st.binary(max_size=32), max_size=3))
def test_validator_raises_only_protocol_errors(msg_type, content, buffers):
    try:
        M.validate_request(make_message(msg_type, "s", content, buffers=buffers))
    except M.ProtocolError:
        pass


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    # A small message limit, so oversized messages are cheap to make.
    with Engine(tmp_path_factory.mktemp("fuzz"), "--max-message-mb", "1") as eng:
        yield eng


@pytest.fixture(scope="module")
def raw(engine):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.url)
    yield sock
    sock.close()


def _answer(sock, timeout_ms: int = 10_000):
    """The next reply (not a job event), with a deadline."""
    while sock.poll(timeout_ms):
        msg = deserialize(sock.recv_multipart())
        if msg.msg_type not in M.EVENTS:
            return msg
    raise AssertionError("the engine did not answer")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(frames=hostile_frames())
def test_engine_answers_every_hostile_message(raw, frames):
    raw.send_multipart(frames)
    reply = _answer(raw)
    assert reply.msg_type.endswith("_reply") or reply.msg_type == M.ERROR
    assert (reply.content.get("error") or {}).get("code") != "internal", reply.content  # no bug paths


def test_oversized_and_shutdown_attempts_get_errors_then_ping_works(engine, raw):
    # Every frame under the 1 MiB limit, together over it: an error reply, not a disconnect.
    bufs = [np.zeros(600_000, np.uint8), np.zeros(600_000, np.uint8)]
    msg = make_message(M.PING, "fuzz", {}, buffers=bufs)
    raw.send_multipart(serialize(msg), copy=False)
    reply = _answer(raw)
    assert reply.content["error"]["code"] == "too_large" and reply.parent_id == msg.msg_id
    raw.send_multipart(serialize(make_message(M.SHUTDOWN, "fuzz", {"token": "x" * 64})))
    assert _answer(raw).content["error"]["code"] == "unauthorized"
    # A single frame over libzmq's MAXMSGSIZE only costs that connection.
    big = make_message(M.PING, "fuzz", {}, buffers=[np.zeros(2 << 20, np.uint8)])
    raw.send_multipart(serialize(big), copy=False)
    with engine.client() as c:
        assert c.ping() > 0
        assert c.hello()["protocol_version"] == wire.PROTOCOL_VERSION
    assert engine.proc.poll() is None
