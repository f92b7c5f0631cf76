"""Client library against a real `longanim serve` process: requests, jobs, events."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from engine_helpers import Engine
from longanim.engine.backends import create_backend
from longanim.engine.backends.base import Keyframe
from longanim.engine.evaluation.synthetic import make_shot
from longanim.protocol import messages as M
from longanim.protocol.client import EngineClient, EngineError
from longanim.protocol.wire import PROTOCOL_VERSION, deserialize, make_message, serialize


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("engine")) as eng:
        yield eng


@pytest.fixture
def client(engine):
    with engine.client() as c:
        yield c


@pytest.fixture(scope="module")
def shot():
    s = make_shot(num_frames=30, width=96, height=64, seed=3)
    frames = [(1001 + i, s.lineart(i)) for i in range(8)]
    keyframes = [(1001, s.color(0), s.lineart(0))]
    return frames, keyframes


def serial_paint(frames, keyframes):
    backend = create_backend("paint")
    kfs = [Keyframe(n, c, l) for n, c, l in keyframes]
    return {r.number: r.rgb for r in backend.colorize(frames, kfs)}


def test_hello_reports_version_and_capabilities(client):
    info = client.hello()
    assert info["protocol_version"] == PROTOCOL_VERSION
    caps = info["capabilities"]
    assert {"paint", "passthrough"} <= set(caps["backends"])
    assert caps["devices"][0]["name"] == "cpu" and caps["input_kinds"] == ["inline"]
    assert client.capabilities()["max_message_bytes"] == caps["max_message_bytes"]
    assert client.ping() > 0


def test_paint_job_round_trip_matches_in_process_run(client, shot):
    frames, keyframes = shot
    job = client.submit_frames(frames, keyframes, backend="paint", confidence=True, cache=False)
    results = {r.number: r for r in job.results(timeout=30)}
    assert job.state == "done" and sorted(results) == [n for n, _ in frames]
    expected = serial_paint(frames, keyframes)
    for number, result in results.items():
        assert np.array_equal(result.rgb, expected[number])
        assert result.confidence.shape == result.rgb.shape[:2] and result.confidence.dtype == np.float32
    assert job.summary["frames_done"] == len(frames) and job.summary["error"] is None


def test_second_identical_job_comes_from_the_cache(client, shot):
    frames, keyframes = shot
    first = client.submit_frames(frames[:4], keyframes, backend="paint", label="first")
    assert all(not r.cached for r in first.results(timeout=30))
    again = client.submit_frames(frames[:4], keyframes, backend="paint", label="again")
    results = list(again.results(timeout=30))
    assert [r.cached for r in results] == [True] * 4
    assert again.summary["frames_cached"] == 4
    changed = [(n, 255 - a) for n, a in frames[:4]]
    assert not any(r.cached for r in client.submit_frames(changed, keyframes, backend="paint").results(30))


def test_streamed_input_in_several_messages(client):
    frames = [(n, np.full((32, 48, 4), n, np.uint8)) for n in range(12)]
    job = client.submit_frames(frames, backend="passthrough", chunk_bytes=3 * 32 * 48 * 4, cache=False)
    results = {r.number: r.rgb for r in job.results(timeout=30)}
    assert job.state == "done" and job.frames_total == 12
    assert all(np.array_equal(results[n], a) for n, a in frames)


def test_refused_append_fails_and_stops_the_job(client):
    a = np.zeros((8, 8, 3), np.uint8)
    job = client.submit_frames([(0, a), (1, a), (0, a)], backend="passthrough", chunk_bytes=a.nbytes, cache=False)
    with pytest.raises(EngineError, match="already sent"):
        list(job.results(timeout=30))
    assert job.error["code"] == "invalid_content"
    deadline = time.monotonic() + 30
    while client.status(job.id)[0]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.status(job.id)[0]["state"] == "cancelled"


def test_non_blocking_poll_as_a_gui_timer_would(client):
    frames = [(n, np.full((8, 8, 3), n, np.uint8)) for n in range(5)]
    job = client.submit_frames(frames, backend="passthrough", cache=False, wait=False)
    assert job.id is None  # nothing waited for the engine yet
    refused = client.submit_frames(frames, backend="nope", wait=False)
    got, kinds = {}, set()
    deadline = time.monotonic() + 30
    while not job.final and time.monotonic() < deadline:
        t0 = time.monotonic()
        for event in client.poll():  # timeout 0: returns at once
            kinds.add(event.msg_type)
        assert time.monotonic() - t0 < 5  # generous: "does not wait for the job"
        got.update({r.number: r for r in job.poll()})
        time.sleep(0.01)
    got.update({r.number: r for r in job.poll()})
    kinds.update(e.msg_type for e in client.poll())
    assert job.state == "done" and sorted(got) == list(range(5)) and job.id in client.jobs
    assert {M.PROGRESS, M.RESULT, M.DONE} <= kinds
    assert refused.state == "failed" and refused.error["code"] == "unknown_backend"


def test_errors_come_back_as_error_replies(client):
    with pytest.raises(EngineError) as err:
        client.submit_frames([(1, np.zeros((4, 4, 3), np.uint8))], backend="nope")
    assert err.value.code == "unknown_backend" and "passthrough" in str(err.value)
    with pytest.raises(EngineError) as err:
        client.status("no-such-job")
    assert err.value.code == "not_found"
    with pytest.raises(EngineError) as err:
        client.request(M.SUBMIT, {"backend": "paint", "input": {"kind": "inline", "frames": [1]}})
    assert err.value.code == "invalid_content" and "input.frames[0]" in str(err.value)
    with pytest.raises(EngineError) as err:
        client.request(M.HELLO, {"protocol_version": "one"})
    assert err.value.code == "invalid_content" and "MAJOR.MINOR" in str(err.value)
    with pytest.raises(EngineError) as err:  # inline input without path roots configured
        client.submit_paths("/tmp/x.####.png", [("/tmp/r.png", 1)], "/tmp/out")
    assert err.value.code == "forbidden"
    assert client.ping() > 0


def test_failed_job_reports_its_error(client):
    # paint needs HxWx3 uint8; RGBA fails the job, never the engine
    job = client.submit_frames([(1, np.zeros((8, 8, 4), np.uint8))], [(1, np.zeros((8, 8, 3), np.uint8))],
                               backend="paint", cache=False)
    with pytest.raises(EngineError, match="HxWx3 uint8"):
        list(job.results(timeout=30))
    assert job.state == "failed" and job.error["code"] == "invalid_content"
    rgb = np.zeros((8, 8, 3), np.uint8)  # a keyframe alpha that does not fit its color
    bad_alpha = client.submit_frames([(1, rgb)], [(1, rgb, None, np.zeros((8, 9), np.uint8))],
                                     backend="paint", cache=False)
    assert bad_alpha.wait(30) == "failed" and bad_alpha.error["code"] == "invalid_content"
    assert "keyframe 1 alpha" in bad_alpha.error["message"] and "[8, 9]" in bad_alpha.error["message"]
    bad_option = client.submit_frames([(1, np.zeros((8, 8, 3), np.uint8))], backend="paint",
                                      options={"gap_close": 99}, cache=False)
    assert bad_option.wait(30) == "failed" and "gap_close" in bad_option.error["message"]
    assert bad_option.error["code"] == "backend_error"
    assert client.ping() > 0


def test_two_clients_at_once_each_get_their_own_results(engine):
    a_frames = [(n, np.full((16, 16, 3), n, np.uint8)) for n in range(10)]
    b_frames = [(n, np.full((16, 16, 3), 100 + n, np.uint8)) for n in range(10)]
    with engine.client() as a, engine.client() as b:
        job_a = a.submit_frames(a_frames, backend="passthrough", cache=False)
        job_b = b.submit_frames(b_frames, backend="passthrough", cache=False)
        res_a = {r.number: r.rgb for r in job_a.results(30)}
        res_b = {r.number: r.rgb for r in job_b.results(30)}
        assert job_b.id not in a.jobs and job_a.id not in b.jobs
    assert all(np.array_equal(res_a[n], x) for n, x in a_frames)
    assert all(np.array_equal(res_b[n], x) for n, x in b_frames)


def _open_job(client) -> str:
    """A job whose streamed input never completes: it runs until cancelled."""
    bufs: list = []
    content = {"backend": "passthrough", "cache": False, "input": {"kind": "inline", "more": True, "frames": [
        {"number": 0, "array": M.array_desc(np.zeros((8, 8, 3), np.uint8), bufs)}]}}
    return client.request(M.SUBMIT, content, bufs).content["job_id"]


def _wait_state(client, job_id, leave: str, deadline: float) -> str:
    while client.status(job_id)[0]["state"] == leave and time.monotonic() < deadline:
        time.sleep(0.02)
    return client.status(job_id)[0]["state"]


def test_a_client_that_stops_reading_slows_only_its_own_job(engine):
    frames = [(n, np.full((512, 512, 4), n % 256, np.uint8)) for n in range(200)]  # 200 MiB
    with engine.client() as slow, engine.client() as other:
        job = slow.submit_frames(frames, backend="passthrough", cache=False, chunk_bytes=1 << 30)
        # `slow` reads nothing now; wait until the job stops advancing.
        deadline = time.monotonic() + 60
        done, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_done = other.status(job.id)[0]["frames_done"]
            if now_done != done:
                done, since = now_done, time.monotonic()
            elif done > 0 and time.monotonic() - since > 1.0:
                break
            time.sleep(0.05)
        assert 0 < done < 200  # the engine waits for the reader instead of queueing everything
        got = {r.number: r.rgb[0, 0, 0] for r in job.results(timeout=30)}
    assert job.state == "done" and got == {n: n % 256 for n in range(200)}


def test_a_stalled_client_frees_the_device_and_reattaches_later(tmp_path):
    frames = [(n, np.full((512, 512, 4), n % 256, np.uint8)) for n in range(200)]
    with Engine(tmp_path, "--stall-timeout", "1") as engine:
        with engine.client() as stalled, engine.client() as other:
            job = stalled.submit_frames(frames, backend="passthrough", chunk_bytes=1 << 30)  # then reads nothing
            queued = other.submit_frames([(0, np.zeros((4, 4, 3), np.uint8))], backend="passthrough")
            assert queued.wait(60) == "done"  # ran although the first job's client never read
            assert other.status(job.id)[0]["state"] == "done"
            stalled.socket.close(linger=0)  # its buffered results are useless now
            stalled._connect()
            again = stalled.reattach(job.id, resend=True)
            got = {r.number: r.rgb[0, 0, 0] for r in again.results(timeout=60)}
    assert again.state == "done" and got == {n: n % 256 for n in range(200)}


def test_a_client_that_stops_sending_input_fails_its_job(tmp_path):
    with Engine(tmp_path, "--stall-timeout", "1") as engine, engine.client() as c:
        job_id = _open_job(c)  # more: true, and nothing follows
        queued = c.submit_frames([(0, np.zeros((4, 4, 3), np.uint8))], backend="passthrough")
        assert queued.wait(60) == "done"
        [summary] = c.status(job_id)
        assert summary["state"] == "failed" and summary["error"]["code"] == "input_timeout"


def test_cancel_stops_a_running_job_and_control_stays_responsive(client):
    job = _open_job(client)
    deadline = time.monotonic() + 30
    assert _wait_state(client, job, "queued", deadline) == "running"
    assert client.ping() > 0  # answered while the job runs
    assert client.cancel(job) in ("running", "cancelled")
    assert _wait_state(client, job, "running", deadline) == "cancelled"


def test_cancel_a_queued_job_and_status_lists_jobs(client):
    blocker = _open_job(client)  # one cpu worker: the next job waits behind this one
    deadline = time.monotonic() + 30
    assert _wait_state(client, blocker, "queued", deadline) == "running"
    queued = client.submit_frames([(0, np.zeros((4, 4, 3), np.uint8))], backend="passthrough")
    assert client.status(queued.id)[0]["state"] == "queued"
    assert client.cancel(queued.id) == "cancelled"
    assert queued.wait(30) == "cancelled"  # its job_done arrives too
    listed = {j["job_id"]: j for j in client.status()}
    assert listed[queued.id]["state"] == "cancelled" and listed[blocker]["state"] == "running"
    assert all(set(j) >= {"state", "backend", "frames_done", "eta_s", "label"} for j in listed.values())
    client.cancel(blocker)
    assert _wait_state(client, blocker, "running", deadline) == "cancelled"


def test_queued_frames_are_bounded(tmp_path):
    with Engine(tmp_path, "--max-queued-mb", "1") as engine, engine.client() as c:
        blocker = _open_job(c)  # holds the only device
        small = c.submit_frames([(0, np.zeros((256, 256, 3), np.uint8))], backend="passthrough")  # 192 KiB
        with pytest.raises(EngineError) as err:
            c.submit_frames([(n, np.zeros((512, 512, 3), np.uint8)) for n in range(2)], backend="passthrough")
        assert err.value.code == "busy" and "retry" in str(err.value)
        c.cancel(blocker)
        assert small.wait(30) == "done"
        assert c.submit_frames([(0, np.zeros((512, 512, 3), np.uint8))], backend="passthrough").wait(30) == "done"


def test_one_worker_per_device(tmp_path):
    with Engine(tmp_path, "--devices", "cpu:0,cpu:1") as engine, engine.client() as c:
        assert [d["name"] for d in c.capabilities()["devices"]] == ["cpu:0", "cpu:1"]
        first, second = _open_job(c), _open_job(c)
        deadline = time.monotonic() + 30
        assert _wait_state(c, first, "queued", deadline) == "running"
        assert _wait_state(c, second, "queued", deadline) == "running"
        assert {c.status(first)[0]["device"], c.status(second)[0]["device"]} == {"cpu:0", "cpu:1"}
        third = c.submit_frames([(0, np.zeros((4, 4, 3), np.uint8))], backend="paint",
                                keyframes=[(0, np.zeros((4, 4, 3), np.uint8))])
        assert c.status(third.id)[0]["state"] == "queued"  # both devices are busy
        c.cancel(first)
        assert third.wait(30) == "done"  # paint takes no device option: it still runs there
        c.cancel(second)


def test_reattach_from_a_new_client_gets_all_results(engine):
    frames = [(n, np.full((16, 24, 3), 7 * n % 256, np.uint8)) for n in range(6)]
    with engine.client() as first:
        job = first.submit_frames(frames, backend="passthrough")
        first.poll(0.05)
        job_id = job.id
    # The first client is gone (as after a crash); a new one takes the job over.
    with engine.client() as second:
        job = second.reattach(job_id, resend=True)
        results = {r.number: r.rgb for r in job.results(timeout=30)}
        assert job.state == "done"
    assert sorted(results) == [n for n, _ in frames]
    assert all(np.array_equal(results[n], a) for n, a in frames)


def _dealer(engine):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.url)
    return sock


def _next(sock, msg_type: str):
    while True:
        assert sock.poll(10_000), f"no {msg_type}"
        msg = deserialize(sock.recv_multipart())
        if msg.msg_type == msg_type:
            return msg


def test_reattach_while_the_job_ends_loses_no_result(engine):
    """Reattaching at every moment of a short job: started, half done, just ended."""
    base = [(n, np.full((16, 24, 3), n, np.uint8)) for n in range(6)]
    for i in range(40):
        frames = [(n, a + np.uint8(5 * (i + 1))) for n, a in base]
        with engine.client() as first:
            job_id = first.submit_frames(frames, backend="passthrough").id
            first.poll((i % 5) * 0.001)
        with engine.client() as second:
            job = second.reattach(job_id, resend=True)
            results = {r.number: r.rgb[0, 0, 0] for r in job.results(timeout=30)}
        assert job.state == "done" and results == {n: a[0, 0, 0] for n, a in frames}, i


def test_duplicate_request_gets_the_cached_reply_not_a_second_job(engine):
    """A client that timed out resends its submit on a new connection (same session and
    seq): one job, the same reply, and the job's events follow the new connection."""
    first, second = _dealer(engine), _dealer(engine)
    try:
        bufs: list = []
        content = {"backend": "passthrough", "label": "dup", "cache": False,
                   "input": {"kind": "inline", "more": True, "frames": [
                       {"number": 1, "array": M.array_desc(np.zeros((4, 4, 3), np.uint8), bufs)}]}}
        msg = make_message(M.SUBMIT, "dup-session", content, buffers=bufs, seq=1)
        first.send_multipart(serialize(msg))
        reply1 = _next(first, "submit_reply")
        second.send_multipart(serialize(msg))
        reply2 = _next(second, "submit_reply")
        assert reply1.content["job_id"] == reply2.content["job_id"]
        assert reply1.parent_id == reply2.parent_id == msg.msg_id
        job_id = reply1.content["job_id"]
        bufs = []
        append = make_message(M.APPEND, "dup-session", {"job_id": job_id, "more": False, "frames": [
            {"number": 2, "array": M.array_desc(np.ones((4, 4, 3), np.uint8), bufs)}]}, buffers=bufs, seq=2)
        second.send_multipart(serialize(append))
        assert _next(second, M.DONE).content["state"] == "done"
    finally:
        first.close()
        second.close()
    with engine.client() as c:
        jobs = c.request(M.STATUS, {"all": True, "token": engine.token()}).content["jobs"]
        assert sum(1 for j in jobs if j["label"] == "dup") == 1


def test_incompatible_major_version_is_refused_clearly(engine):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.url)
    try:
        major = int(PROTOCOL_VERSION.split(".")[0])
        msg = make_message(M.HELLO, "old", {"protocol_version": f"{major + 1}.0"})
        msg.header["version"] = f"{major + 1}.0"
        sock.send_multipart(serialize(msg))
        assert sock.poll(10_000)
        reply = deserialize(sock.recv_multipart())
        assert reply.parent_id == msg.msg_id
        assert reply.content["error"]["code"] == "incompatible_version"
        assert PROTOCOL_VERSION in reply.content["error"]["message"]
    finally:
        sock.close()


def test_request_to_a_dead_address_times_out_with_a_clear_message():
    from engine_helpers import free_port

    with EngineClient(f"tcp://127.0.0.1:{free_port()}", timeout=0.3) as c:
        with pytest.raises(EngineError, match="is `longanim serve` running") as err:
            c.hello()
        assert err.value.code == "timeout" and c.reconnects == 1  # one retry on a fresh socket


# -- caching policies, with an in-process engine so a test backend can be registered ----------

class IndependentEcho:
    """Passthrough marked frame-independent, counting the frames it computes."""

    computed: list = []

    def __new__(cls, **options):
        from longanim.engine.backends.passthrough import PassthroughBackend

        class _Echo(PassthroughBackend):
            name = "independent_echo"
            frame_independent = True

            def colorize(self, frames, keyframes, **kw):
                for number, frame in frames:
                    IndependentEcho.computed.append(number)
                    yield from super().colorize([(number, frame)], keyframes, **kw)

        return _Echo()


@pytest.fixture
def inprocess(tmp_path, monkeypatch):
    import threading

    from engine_helpers import free_port
    from longanim.engine import backends
    from longanim.engine.server.control_loop import EngineServer, ServeConfig

    monkeypatch.setitem(backends._REGISTRY, "independent_echo", "test_client_server:IndependentEcho")
    server = EngineServer(ServeConfig(bind=f"tcp://127.0.0.1:{free_port()}", cache_dir=str(tmp_path / "cache"),
                                      token_file=str(tmp_path / "token")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with EngineClient(server.endpoint, timeout=10) as c:
            yield server, c
    finally:
        server.stop()
        thread.join(10)


def test_frame_independent_backend_is_cached_per_frame_even_when_streamed(inprocess):
    server, c = inprocess
    frames = [(n, np.full((8, 8, 3), n, np.uint8)) for n in range(6)]
    IndependentEcho.computed.clear()
    first = c.submit_frames(frames, backend="independent_echo", chunk_bytes=2 * 8 * 8 * 3)
    assert not any(r.cached for r in first.results(30)) and IndependentEcho.computed == list(range(6))
    changed = frames[:3] + [(3, np.full((8, 8, 3), 99, np.uint8))] + frames[4:]
    IndependentEcho.computed.clear()
    second = c.submit_frames(changed, backend="independent_echo", chunk_bytes=2 * 8 * 8 * 3)
    results = {r.number: r for r in second.results(30)}
    assert IndependentEcho.computed == [3]  # only the changed frame ran
    assert [results[n].cached for n in range(6)] == [True, True, True, False, True, True]
    assert results[3].rgb[0, 0, 0] == 99 and results[5].rgb[0, 0, 0] == 5


def test_whole_input_cache_serves_survivors_when_entries_are_lost(inprocess, shot):
    server, c = inprocess
    frames, keyframes = shot
    first = {r.number: r.rgb.copy() for r in c.submit_frames(frames, keyframes, backend="paint").results(30)}
    entries = sorted(server.cache.root.rglob("*.lrc"))
    assert len(entries) == len(frames)
    for path in entries[::2]:  # as if the engine died before writing these
        path.unlink()
    again = c.submit_frames(frames, keyframes, backend="paint")
    results = {r.number: r for r in again.results(30)}
    assert sum(r.cached for r in results.values()) == len(frames) - len(entries[::2])
    assert all(np.array_equal(results[n].rgb, first[n]) for n in first)
    reattached = c.reattach(again.id, resend=True)  # the ended job's results, again from the cache
    resent = {r.number for r in reattached.results(30)}
    assert resent == set(first) and reattached.state == "done"
