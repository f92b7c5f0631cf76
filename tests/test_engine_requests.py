"""Requests as a real engine process sees them: retries that cannot cross-wire, limits
applied while a message is received, a cap on queued jobs, and `status` that shows a
client its own jobs.

Raw DEALER sockets stand in for clients that misbehave the ways real ones do (two
add-ons sharing a session id, a retry with a fresh msg_id, a seq reused).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from engine_helpers import Engine, job_done, reply_to
from longanim.protocol import messages as M
from longanim.protocol.wire import make_message, serialize


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("engine"), "--max-queued-mb", "1", "--max-queued-jobs", "3") as eng:
        yield eng


def dealer(engine) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.url)
    return sock


def streamed_submit(session: str, seq: int, label: str, value: int = 0, side: int = 4):
    """A streamed passthrough job (more: true), so it stays unfinished until closed."""
    bufs: list = []
    content = {"backend": "passthrough", "label": label, "cache": False,
               "input": {"kind": "inline", "more": True, "frames": [
                   {"number": 1, "array": M.array_desc(np.full((side, side, 3), value, np.uint8), bufs)}]}}
    return make_message(M.SUBMIT, session, content, buffers=bufs, seq=seq)


def close_job(sock, session: str, seq: int, job_id: str):
    bufs: list = []
    append = make_message(M.APPEND, session, {"job_id": job_id, "more": False, "frames": [
        {"number": 2, "array": M.array_desc(np.zeros((4, 4, 3), np.uint8), bufs)}]}, buffers=bufs, seq=seq)
    sock.send_multipart(serialize(append))
    return reply_to(sock, append)


def cancel(sock, session: str, seq: int, job_id: str):
    msg = make_message(M.CANCEL, session, {"job_id": job_id}, seq=seq)
    sock.send_multipart(serialize(msg))
    return reply_to(sock, msg)


def test_two_clients_sharing_a_session_do_not_get_each_others_job(engine):
    a, b = dealer(engine), dealer(engine)
    try:
        first = streamed_submit("shared-session", 1, "from a", value=1)
        a.send_multipart(serialize(first))
        ra = reply_to(a, first)
        second = streamed_submit("shared-session", 1, "from b", value=2)
        b.send_multipart(serialize(second))
        rb = reply_to(b, second)
        assert ra.content["status"] == "ok"
        assert rb.content["status"] == "error" and rb.content["error"]["code"] == "conflict"
        assert "seq 1" in rb.content["error"]["message"]
        cancel(a, "shared-session", 2, ra.content["job_id"])
        assert not b.poll(300), "b received an event of a's job"
    finally:
        a.close()
        b.close()


def test_a_seq_reused_by_another_request_type_is_refused_not_answered_with_the_old_reply(engine):
    sock = dealer(engine)
    try:
        submit = streamed_submit("reuse-seq", 5, "reuse")
        sock.send_multipart(serialize(submit))
        job_id = reply_to(sock, submit).content["job_id"]
        msg = make_message(M.CANCEL, "reuse-seq", {"job_id": job_id}, seq=5)
        sock.send_multipart(serialize(msg))
        reply = reply_to(sock, msg)
        assert reply.msg_type == "cancel_reply"
        assert reply.content["status"] == "error" and reply.content["error"]["code"] == "conflict"
        assert cancel(sock, "reuse-seq", 6, job_id).content["status"] == "ok"  # a fresh seq is taken
    finally:
        sock.close()


def test_a_retry_with_a_new_msg_id_gets_a_reply_naming_it(engine):
    sock = dealer(engine)
    try:
        submit = streamed_submit("retry-new-id", 1, "retry")
        sock.send_multipart(serialize(submit))
        first = reply_to(sock, submit)
        retry = streamed_submit("retry-new-id", 1, "retry")  # same content and seq, new msg_id
        assert retry.msg_id != submit.msg_id
        sock.send_multipart(serialize(retry))
        second = reply_to(sock, retry)
        assert second.parent_id == retry.msg_id
        assert second.content["job_id"] == first.content["job_id"]
        close_job(sock, "retry-new-id", 2, first.content["job_id"])
    finally:
        sock.close()


def test_busy_is_not_replayed_to_a_retry(engine):
    """1 MiB of queued frames: a 400x400 job holds 469 KiB, so the third is busy until one ends."""
    sock = dealer(engine)
    try:
        held = []
        for seq in (1, 2):
            msg = streamed_submit("busy-retry", seq, "big", side=400)
            sock.send_multipart(serialize(msg))
            held.append(reply_to(sock, msg).content["job_id"])
        third = streamed_submit("busy-retry", 3, "big", side=400)
        sock.send_multipart(serialize(third))
        assert reply_to(sock, third).content["error"]["code"] == "busy"
        cancel(sock, "busy-retry", 4, held[0])
        sock.send_multipart(serialize(third))  # the identical message, sent again
        reply = reply_to(sock, third)
        assert reply.content["status"] == "ok", reply.content
        for seq, job_id in ((5, held[1]), (6, reply.content["job_id"])):
            cancel(sock, "busy-retry", seq, job_id)
    finally:
        sock.close()


def test_a_client_may_queue_only_so_many_jobs(engine):
    sock = dealer(engine)
    try:
        ids = []
        for seq in range(1, 5):
            msg = streamed_submit("many-jobs", seq, f"job {seq}")
            sock.send_multipart(serialize(msg))
            ids.append(reply_to(sock, msg).content)
        assert [c["status"] for c in ids] == ["ok", "ok", "ok", "error"]
        assert ids[3]["error"]["code"] == "busy" and "3 unfinished jobs" in ids[3]["error"]["message"]
        other = dealer(engine)  # another client is not held up by this one
        try:
            msg = streamed_submit("another-client", 1, "other")
            other.send_multipart(serialize(msg))
            got = reply_to(other, msg).content
            assert got["status"] == "ok"
            cancel(other, "another-client", 2, got["job_id"])
        finally:
            other.close()
        for seq, c in enumerate(ids[:3], start=10):
            cancel(sock, "many-jobs", seq, c["job_id"])
    finally:
        sock.close()


def ping_rtt(sock, n: int = 1) -> float:
    msg = make_message(M.PING, "pinger", {})
    t0 = time.perf_counter()
    sock.send_multipart(serialize(msg))
    reply_to(sock, msg)
    return time.perf_counter() - t0


def test_a_message_of_a_million_frames_is_refused_while_it_is_received(engine):
    flood, probe = dealer(engine), dealer(engine)
    try:
        msg = make_message(M.SUBMIT, "flood", {"backend": "passthrough", "input": {"kind": "inline", "frames": []}})
        flood.send_multipart(serialize(msg) + [b""] * 1_000_000)
        time.sleep(0.2)
        rtt = ping_rtt(probe)
        reply = reply_to(flood, msg, timeout_s=30)
        assert reply.content["error"]["code"] == "too_large" and "frames" in reply.content["error"]["message"]
        assert rtt < 4.0, f"a ping waited {rtt:.1f} s behind the flood"
    finally:
        flood.close()
        probe.close()


def test_status_shows_a_client_only_its_own_jobs_and_the_operator_all(engine):
    sock = dealer(engine)
    try:
        msg = streamed_submit("status-owner", 1, "mine \x1b[31mred\x1b[0m")
        sock.send_multipart(serialize(msg))
        job_id = reply_to(sock, msg).content["job_id"]
        own = make_message(M.STATUS, "status-owner", {})
        sock.send_multipart(serialize(own))
        assert [j["job_id"] for j in reply_to(sock, own).content["jobs"]] == [job_id]
        stranger = make_message(M.STATUS, "someone-else", {})
        sock.send_multipart(serialize(stranger))
        reply = reply_to(sock, stranger).content
        assert reply["jobs"] == [] and reply["jobs_hidden"] >= 1
        operator = make_message(M.STATUS, "operator", {"all": True, "token": engine.token()})
        sock.send_multipart(serialize(operator))
        assert job_id in [j["job_id"] for j in reply_to(sock, operator).content["jobs"]]
        wrong = make_message(M.STATUS, "operator", {"all": True, "token": "guess"})
        sock.send_multipart(serialize(wrong))
        assert reply_to(sock, wrong).content["error"]["code"] == "unauthorized"

        out = subprocess.run([sys.executable, "-m", "longanim", "status", "--engine", engine.url,
                              "--token-file", str(engine.token_file)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert job_id in out.stdout and "\x1b" not in out.stdout and "mine \\x1b[31mred" in out.stdout
        cancel(sock, "status-owner", 2, job_id)
    finally:
        sock.close()


@pytest.mark.parametrize("shape, state", [((12, 64), "done"), ((8, 320), "done"), ((1, 64), "failed")])
def test_paint_on_tiny_frames_runs_or_fails_clearly_and_the_engine_lives(engine, shape, state):
    """DIS optical flow used to crash the engine process outright on low wide frames."""
    sock = dealer(engine)
    try:
        bufs: list = []
        frames = [{"number": n, "array": M.array_desc(np.full((*shape, 3), 255, np.uint8), bufs)} for n in range(3)]
        key = {"number": 0, "color": M.array_desc(np.full((*shape, 3), 200, np.uint8), bufs)}
        msg = make_message(M.SUBMIT, f"tiny-{shape}", {"backend": "paint", "keyframes": [key], "cache": False,
                                                      "input": {"kind": "inline", "frames": frames}},
                           buffers=bufs, seq=1)
        sock.send_multipart(serialize(msg))
        done = job_done(sock, reply_to(sock, msg).content["job_id"])
        assert done["state"] == state, (done, engine.log())
        if state == "failed":
            assert done["error"]["code"] == "input_error" and "64x1 px" in done["error"]["message"]
        assert ping_rtt(sock) < 5  # still serving
    finally:
        sock.close()


def ask(sock, msg_type: str, content: dict, session: str = "fuzzed", buffers=(), seq=None):
    msg = make_message(msg_type, session, content, buffers=list(buffers), seq=seq)
    sock.send_multipart(serialize(msg))
    return reply_to(sock, msg).content


def test_what_the_fuzz_benchmark_found_gets_clear_answers(tmp_path):
    """Each of these once got `internal`, or silenced every later status of the session."""
    root = tmp_path / "roots"
    (root / "shot").mkdir(parents=True)
    with Engine(tmp_path, "--roots", str(root), "--max-queued-mb", "1") as eng:
        sock = dealer(eng)
        try:
            huge_range = {"backend": "paint", "output": {"kind": "path", "path": str(root / "out")},
                          "input": {"kind": "path", "lineart": str(root / "shot" / "line.####.png"),
                                    "frames": [-(2**63), 2**63 - 1]}}
            assert ask(sock, M.SUBMIT, huge_range)["error"]["code"] == "invalid_content"
            assert ask(sock, M.STATUS, {})["status"] == "ok"

            long_name = dict(huge_range, input={"kind": "path", "lineart": f"{root}/{'a' * 300}/line.####.png"})
            assert ask(sock, M.SUBMIT, long_name)["error"]["code"] == "invalid_content"
            deep_out = dict(huge_range, input={"kind": "path", "lineart": str(root / "shot")},
                            output={"kind": "path", "path": str(root) + "/a" * 3000})
            assert ask(sock, M.SUBMIT, deep_out)["error"]["code"] == "invalid_content"

            nested: dict = {}
            inner = nested
            for _ in range(200):
                inner["x"] = {}
                inner = inner["x"]
            assert ask(sock, M.PING, nested)["error"]["code"] == "invalid_content"

            # 1,000 one-pixel frames: 3 KB of pixels, but what the engine holds for them counts.
            frames = [{"number": i, "array": {"buffer": i, "shape": [1, 1, 3], "dtype": "uint8"}} for i in range(1000)]
            many = {"backend": "passthrough", "cache": False, "input": {"kind": "inline", "frames": frames}}
            reply = ask(sock, M.SUBMIT, many, buffers=[b"\x80\x80\x80"] * 1000)
            assert reply["error"]["code"] == "busy", reply
            assert ask(sock, M.PING, {})["status"] == "ok"
        finally:
            sock.close()


@pytest.mark.parametrize("extra, code", [({}, "input_error"), ({"options": {"review_threshold": [1]}}, "backend_error")])
def test_paint_jobs_the_fuzz_broke_fail_with_the_reason(engine, extra, code):
    sock = dealer(engine)
    try:
        bufs: list = []
        frames = [{"number": n, "array": M.array_desc(np.zeros((16, 16, 3), np.uint8), bufs)} for n in range(2)]
        content = {"backend": "paint", "cache": False, "input": {"kind": "inline", "frames": frames}, **extra}
        if extra:
            content["keyframes"] = [{"number": 0, "color": M.array_desc(np.zeros((16, 16, 3), np.uint8), bufs)}]
        done = job_done(sock, ask(sock, M.SUBMIT, content, session=f"paint-{code}", buffers=bufs)["job_id"])
        assert done["state"] == "failed" and done["error"]["code"] == code, done
    finally:
        sock.close()
