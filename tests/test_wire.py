"""The wire format and message validation, without an engine process."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from longanim.protocol import messages as M
from longanim.protocol import wire
from longanim.protocol.wire import (
    DELIMITER,
    PROTOCOL_VERSION,
    WireError,
    compatible,
    deserialize,
    make_message,
    serialize,
)

SPEC = Path(__file__).resolve().parents[1] / "protocol" / "PROTOCOL.md"


def test_spec_states_the_code_version():
    text = SPEC.read_text()
    stated = re.search(r"Protocol version: `([0-9]+\.[0-9]+)`", text)
    assert stated and stated.group(1) == PROTOCOL_VERSION
    # The version string appears nowhere else in the code: one constant to change.
    sources = [p for p in (SPEC.parent).glob("*.py") if p.name != "wire.py"]
    for path in sources:
        assert f'"{PROTOCOL_VERSION}"' not in path.read_text(), path


def test_spec_documents_every_message_type():
    text = SPEC.read_text()
    for name in M.REQUESTS + M.EVENTS + (M.ERROR,):
        assert f"`{name}`" in text, name
    for name in M.REQUESTS:
        assert f"`{M.reply_type(name)}`" in text, name


def test_round_trip_keeps_every_part_and_buffers_stay_raw():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    bufs: list = []
    desc = M.array_desc(pixels, bufs)
    msg = make_message("result", "s1", {"rgb": desc, "n": 1}, parent={"msg_id": "p", "msg_type": "submit_request",
                                                                      "session": "c", "version": "1.0"},
                       buffers=bufs, metadata={"k": [1, 2]}, seq=7)
    frames = serialize(msg)
    assert frames[0] == DELIMITER and frames[5] is bufs[0]  # passed through, not packed
    back = deserialize([bytes(memoryview(f).cast("B")) if isinstance(f, np.ndarray) else f for f in frames])
    assert back.header == msg.header and back.header["seq"] == 7
    assert back.parent_id == "p" and back.metadata == {"k": [1, 2]} and back.content["n"] == 1
    assert np.array_equal(M.array_from(back.content["rgb"], back.buffers), pixels)


def test_buffers_cross_a_socket_without_copies():
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://wire-test")
        b.connect("inproc://wire-test")
        big = np.random.default_rng(0).integers(0, 255, (256, 256, 4), dtype=np.uint8)
        bufs: list = []
        msg = make_message("result", "s", {"rgb": M.array_desc(big, bufs)}, buffers=bufs)
        a.send_multipart(serialize(msg), copy=False)
        frames = b.recv_multipart(copy=False)
        back = deserialize(frames)
        view = M.array_from(back.content["rgb"], back.buffers)
        assert np.array_equal(view, big)
        assert np.shares_memory(view, np.frombuffer(frames[5].buffer, np.uint8))  # no copy
        assert not view.flags.writeable
    finally:
        a.close(0)
        b.close(0)


def _frames(header=None, parent=b"\x80", meta=b"\x80", content=b"\x80"):
    header = header if header is not None else wire.pack(wire.make_header("ping_request", "s"))
    return [DELIMITER, header, parent, meta, content]


@pytest.mark.parametrize(
    "frames, fragment",
    [
        ([DELIMITER, b"\x80"], "at least"),
        ([b"nope"] + _frames()[1:], "delimiter"),
        (_frames(header=b"\xc1"), "not valid msgpack"),
        (_frames(header=wire.pack([1, 2])), "must be a msgpack map"),
        (_frames(header=wire.pack({"msg_id": "x"})), "header.msg_type"),
        (_frames(header=wire.pack({**wire.make_header("ping_request", "s"), "version": "one"})), "MAJOR.MINOR"),
        (_frames(header=wire.pack({**wire.make_header("ping_request", "s"), "seq": -1})), "seq"),
        (_frames(header=wire.pack({**wire.make_header("ping_request", "s"), "seq": True})), "seq"),
        (_frames(content=msgpack.packb(msgpack.ExtType(5, b"x"))), "extension"),
        (_frames(content=wire.pack({1: "int key"})), "not valid msgpack"),
        (_frames(content=wire.pack({"a": 1}) + b"\x00"), "not valid msgpack"),
        (_frames(parent=wire.pack({"msg_id": 3})), "parent_header.msg_id"),
    ],
)
def test_malformed_frames_raise_wire_errors(frames, fragment):
    with pytest.raises(WireError, match=fragment):
        deserialize(frames)


def test_oversized_map_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(wire, "MAX_MAP_BYTES", 100)
    with pytest.raises(WireError) as err:
        deserialize(_frames(content=wire.pack({"a": "x" * 200})))
    assert err.value.code == "too_large"


def test_version_rules():
    assert compatible(PROTOCOL_VERSION)
    major = int(PROTOCOL_VERSION.split(".")[0])
    assert compatible(f"{major}.99")
    assert not compatible(f"{major + 1}.0")
    with pytest.raises(WireError):
        compatible("1")


def _submit(content, buffers=()):
    return make_message(M.SUBMIT, "s", content, buffers=list(buffers))


def _inline(frames, bufs, **extra):
    return {"backend": "paint", "input": {"kind": "inline", "frames": frames}, **extra}


def test_valid_submit_passes_and_extra_fields_are_ignored():
    bufs: list = []
    frame = {"number": 3, "array": M.array_desc(np.zeros((4, 5, 3), np.uint8), bufs)}
    content = _inline([frame], bufs, keyframes=[{"number": 3, "color": dict(frame["array"])}],
                      future_field={"anything": 1})
    assert M.validate_request(_submit(content, bufs)) == content


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda c: c.pop("backend"), "missing field 'backend'"),
        (lambda c: c.update(backend=3), "'backend' must be str"),
        (lambda c: c.update(cache=1), "'cache' must be bool"),
        (lambda c: c["input"].update(kind="ftp"), "input.kind"),
        (lambda c: c["input"]["frames"][0].update(number=True), "'number' must be int"),
        (lambda c: c["input"]["frames"][0]["array"].update(buffer=5), "does not exist"),
        (lambda c: c["input"]["frames"][0]["array"].update(shape=[4, 5, 4]), "needs"),
        (lambda c: c["input"]["frames"][0]["array"].update(shape=[4, 5, 2]), "out of range"),
        (lambda c: c["input"]["frames"][0]["array"].update(shape=[0, 60]), "out of range"),
        (lambda c: c["input"]["frames"][0]["array"].update(dtype="float64"), "dtype"),
        (lambda c: c["input"]["frames"].append(dict(c["input"]["frames"][0])), "appears twice"),
        (lambda c: c["input"].update(frames=[]), "nothing to colorize"),
        (lambda c: c.update(output={"kind": "path", "path": "/x"}), "needs a path input"),
        (lambda c: c.update(refs=[{"path": "/x"}]), "need a path input"),
        (lambda c: c.update(keyframes=[{"number": 1}]), "missing field 'color'"),
    ],
)
def test_invalid_submit_names_the_problem(mutate, fragment):
    bufs: list = []
    content = _inline([{"number": 1, "array": M.array_desc(np.zeros((4, 5, 3), np.uint8), bufs)}], bufs)
    mutate(content)
    with pytest.raises(M.ProtocolError, match=re.escape(fragment)) as err:
        M.validate_request(_submit(content, bufs))
    assert err.value.code == "invalid_content"


def test_path_submit_rules():
    ok = {"backend": "paint", "input": {"kind": "path", "lineart": "/a/l.####.png", "frames": [1, 5]},
          "refs": [{"path": "/a/r.png", "frame": 1}], "output": {"kind": "path", "path": "/a/out"}}
    M.validate_request(_submit(ok))
    for bad, fragment in [
        ({**ok, "input": {**ok["input"], "frames": [5, 1]}}, "after last"),
        ({**ok, "input": {**ok["input"], "frames": [1]}}, "[first, last]"),
        ({**ok, "output": {"kind": "inline"}}, "needs output.kind 'path'"),
    ]:
        with pytest.raises(M.ProtocolError, match=re.escape(fragment)):
            M.validate_request(_submit(bad))


def test_unknown_request_type_and_reply_names():
    with pytest.raises(M.ProtocolError) as err:
        M.validate_request(make_message("frobnicate_request", "s"))
    assert err.value.code == "unknown_msg_type"
    assert M.reply_type(M.SUBMIT) == "submit_reply"
    assert M.reply_type("weird") == M.ERROR


def test_protocol_package_imports_without_the_engine():
    import subprocess
    import sys

    code = ("import sys, longanim.protocol.client, longanim.protocol.messages;"
            "bad = [m for m in sys.modules if m.startswith('longanim.engine') or m in ('numpy', 'torch')];"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
