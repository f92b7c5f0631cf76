"""The engine forgets clients it has not heard from: a real engine process, thousands of
client identities and ids that each send one request and vanish, and what the engine
keeps for them (stalled marks, replies kept for retries) shrinking back once they have
been silent past the bound, while a forgotten client that comes back is served and its
job, which forgetting never touches, can still be reached by its id.

`--stall-timeout 0.5` makes the bound (20 stall timeouts) 10 s.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from engine_helpers import Engine, job_done, reply_to
from longanim.protocol import messages as M
from longanim.protocol.wire import deserialize, make_message, serialize

STALL_S = 0.5
FORGET_S = 20 * STALL_S
CLIENTS = 2000


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("engine"), "--stall-timeout", str(STALL_S)) as eng:
        yield eng


def dealer(engine, identity: bytes | None = None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.connect(engine.url)
    return sock


def ask(sock, msg_type: str, session: str, content: dict, seq: int | None = None, buffers=None) -> M.Message:
    msg = make_message(msg_type, session, content, seq=seq, buffers=buffers or [])
    sock.send_multipart(serialize(msg))
    return reply_to(sock, msg)


def client_counts(engine) -> dict:
    sock = dealer(engine)
    try:
        return ask(sock, M.STATUS, "operator", {}).content["clients"]
    finally:
        sock.close()


def one_frame_job() -> tuple[dict, list]:
    bufs: list = []
    return {"backend": "passthrough", "cache": False, "label": "comes back",
            "input": {"kind": "inline", "frames": [
                {"number": 1, "array": M.array_desc(np.full((4, 4, 3), 7, np.uint8), bufs)}]}}, bufs


def test_silent_clients_are_forgotten_and_a_returning_one_is_served(engine):
    before = client_counts(engine)
    assert before["forget_after_s"] == pytest.approx(FORGET_S)

    # A client that submits a job, reads its end, then falls silent.
    back = dealer(engine, b"comes-back")
    content, bufs = one_frame_job()
    job_id = ask(back, M.SUBMIT, "returning-client", content, seq=1, buffers=bufs).content["job_id"]
    assert job_done(back, job_id)["state"] == "done"

    # Thousands of clients, each its own identity and client id, each one remembered
    # request (a cancel naming no job: its not_found reply is kept for retries), gone.
    start = time.monotonic()
    for batch in range(CLIENTS // 100):
        socks = [dealer(engine, f"vanishing-{batch}-{i}".encode()) for i in range(100)]
        sent = []
        for i, sock in enumerate(socks):
            msg = make_message(M.CANCEL, f"vanishing-{batch}-{i}", {"job_id": "0" * 32}, seq=1)
            sock.send_multipart(serialize(msg))
            sent.append(msg)
        for sock, msg in zip(socks, sent):
            assert reply_to(sock, msg).content["error"]["code"] == "not_found"
        for sock in socks:
            sock.close()
    sent_s = time.monotonic() - start
    assert sent_s < FORGET_S, f"sending took {sent_s:.1f} s, past the bound: the peak below would be partial"
    peak = client_counts(engine)
    assert peak["identities"] >= CLIENTS and peak["sessions"] >= CLIENTS
    assert peak["replies_kept"] >= CLIENTS + 1

    # Silence past the bound (the status calls themselves come from fresh identities of
    # the single client id "operator"). The tables shrink back to about what they were.
    deadline = time.monotonic() + FORGET_S + 10
    while True:
        after = client_counts(engine)
        if after["identities"] < 50 and after["replies_kept"] < 50:
            break
        assert time.monotonic() < deadline, f"still kept after {FORGET_S + 10:.0f} s of silence: {after}"
        time.sleep(0.5)
    assert after["sessions"] <= before["sessions"] + 2
    assert after["stalled"] == 0
    assert "forgot" in engine.log()

    # The forgotten client comes back on the same identity: served like any client, and its
    # job (a job id is the capability) is still there to ask about and reattach to.
    assert ask(back, M.PING, "returning-client", {}).content["status"] == "ok"
    status = ask(back, M.STATUS, "returning-client", {"job_id": job_id}).content
    assert status["jobs"][0]["state"] == "done"
    reattached = ask(back, M.REATTACH, "returning-client", {"job_id": job_id}).content
    assert reattached["status"] == "ok" and reattached["job"]["job_id"] == job_id
    content, bufs = one_frame_job()
    again = ask(back, M.SUBMIT, "returning-client", content, seq=2, buffers=bufs).content
    assert again["status"] == "ok" and again["job_id"] != job_id
    assert job_done(back, again["job_id"])["state"] == "done"
    back.close()


def test_a_client_that_keeps_talking_is_not_forgotten(engine):
    """Heartbeats keep a client: its kept reply still answers a retry after the bound."""
    sock = dealer(engine, b"talker")
    content, bufs = one_frame_job()
    first = ask(sock, M.SUBMIT, "talker", content, seq=1, buffers=bufs).content
    end = time.monotonic() + FORGET_S + 2
    while time.monotonic() < end:
        assert ask(sock, M.PING, "talker", {}).content["status"] == "ok"
        time.sleep(0.5)
    content, bufs = one_frame_job()
    retry = ask(sock, M.SUBMIT, "talker", content, seq=1, buffers=bufs).content
    assert retry["job_id"] == first["job_id"]  # the retry recognised, not a second job
    sock.close()


def test_a_stalled_mark_outlives_forgetting_while_a_job_sends_to_that_client(engine):
    """A client that stops reading mid-job is stalled, then silent past the bound: its mark
    stays (its job is listed), so when it speaks again it learns that it missed events."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 2)  # what it does not read backs up to the engine at once
    sock.setsockopt(zmq.ROUTING_ID, b"stalls")
    sock.connect(engine.url)
    bufs: list = []
    frames = [{"number": n, "array": M.array_desc(np.full((128, 128, 3), n % 256, np.uint8), bufs)}
              for n in range(300)]  # 48 KiB a result, 14 MiB in all: more than any socket buffer holds
    submit = {"backend": "passthrough", "cache": False, "label": "stalls",
              "input": {"kind": "inline", "frames": frames}}
    job_id = ask(sock, M.SUBMIT, "stalls", submit, seq=1, buffers=bufs).content["job_id"]
    time.sleep(FORGET_S + 3)  # not reading: stalled after STALL_S, silent past the bound
    counts = client_counts(engine)
    assert counts["stalled"] >= 1, counts
    assert "took nothing for" in engine.log()
    ping = make_message(M.PING, "stalls", {})
    sock.send_multipart(serialize(ping))
    missed = None
    deadline = time.monotonic() + 20
    while missed is None and time.monotonic() < deadline:
        if sock.poll(100):
            got = deserialize(sock.recv_multipart())
            if got.msg_type == M.PROGRESS and got.content.get("missed_events"):
                missed = got.content
    assert missed is not None and missed["job_id"] == job_id
    sock.close()


def test_client_ids_made_up_by_the_thousand_are_capped(engine):
    """Ids cost nothing to make: 6,000 pings, each under a new client id, leave at most the
    cap noted once the engine has swept (once a second)."""
    from longanim.engine.server.clients import NOTED

    sock = dealer(engine)
    for batch in range(60):  # replies read as they come: a client not reading for 0.5 s is stalled
        for i in range(100):
            msg = make_message(M.PING, f"made-up-{batch}-{i}", {})
            sock.send_multipart(serialize(msg))
        assert reply_to(sock, msg).content["status"] == "ok"
    sock.close()
    time.sleep(1.5)
    counts = client_counts(engine)
    assert counts["sessions"] <= NOTED + 2, counts
