"""Streamed jobs and their events on a real engine: a stream that runs dry gives the device
to the next job and picks up where it was, every event is numbered, and a client that
stopped reading sees the gap and catches up."""

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
from longanim.protocol.wire import deserialize, make_message, serialize


class Raw:
    """A client as bare as the protocol allows: one DEALER socket, messages as they come."""

    def __init__(self, url: str, session: str, rcvhwm: int = 1000):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.connect(url)
        self.session, self.seq, self.events = session, 0, []

    def request(self, msg_type: str, content: dict, buffers=(), timeout_s: float = 10.0):
        self.seq += 1
        msg = make_message(msg_type, self.session, content, buffers=list(buffers), seq=self.seq)
        self.sock.send_multipart(serialize(msg))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.take(0.1)
            if got is not None and got.parent_id == msg.msg_id and got.msg_type not in M.EVENTS:
                return got.content
        raise AssertionError(f"no reply to {msg_type}")

    def take(self, timeout_s: float):
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        msg = deserialize(self.sock.recv_multipart())
        if msg.msg_type in M.EVENTS:
            self.events.append(msg)
        return msg

    def until_done(self, job_id: str, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.events:
                if e.msg_type == M.DONE and e.content["job_id"] == job_id:
                    return e.content
            self.take(0.1)
        raise AssertionError(f"job {job_id} did not end")

    def results(self, job_id: str) -> dict:
        return {e.content["number"]: e for e in self.events
                if e.msg_type == M.RESULT and e.content["job_id"] == job_id}

    def close(self):
        self.sock.close()


def frames_content(frames, bufs):
    return [{"number": n, "array": M.array_desc(a, bufs)} for n, a in frames]


def submit_streamed(raw: Raw, frames, keyframes, backend: str = "paint"):
    bufs: list = []
    content = {"backend": backend, "input": {"kind": "inline", "more": True, "frames": frames_content(frames, bufs)},
               "keyframes": [{"number": n, "color": M.array_desc(c, bufs)} for n, c in keyframes]}
    reply = raw.request(M.SUBMIT, content, bufs)
    assert reply["status"] == "ok", reply
    return reply["job_id"]


def append(raw: Raw, job_id: str, frames, more: bool):
    bufs: list = []
    reply = raw.request(M.APPEND, {"job_id": job_id, "more": more, "frames": frames_content(frames, bufs)}, bufs)
    assert reply["status"] == "ok", reply


@pytest.fixture(scope="module")
def shot():
    s = make_shot(num_frames=24, width=160, height=96, seed=8)
    frames = [(1 + i, s.lineart(i)) for i in range(24)]
    keyframes = [(1, s.color(0))]
    expected = {r.number: r.rgb for r in create_backend("paint").colorize(frames, [Keyframe(1, s.color(0))])}
    return frames, keyframes, expected


def test_a_dry_stream_gives_the_device_to_the_next_job_and_resumes_where_it_was(shot, tmp_path):
    frames, keyframes, expected = shot
    with Engine(tmp_path, "--stall-timeout", "60") as engine:
        slow, quick = Raw(engine.url, "slow-renderer"), Raw(engine.url, "quick")
        try:
            job = submit_streamed(slow, frames[:8], keyframes)
            while len(slow.results(job)) < 7:  # paint segments one frame ahead: the 8th waits for the 9th
                assert slow.take(10) is not None, "the first frames never came back"
            t0 = time.monotonic()
            other = submit_streamed(quick, [(1, np.zeros((8, 8, 3), np.uint8))], [], backend="passthrough")
            append(quick, other, [], more=False)
            assert quick.until_done(other, timeout_s=20)["state"] == "done"
            waited = time.monotonic() - t0
            assert waited < 10, f"the next job waited {waited:.1f} s behind a silent stream"
            append(slow, job, frames[8:16], more=True)
            append(slow, job, frames[16:], more=False)
            done = slow.until_done(job)
        finally:
            slow.close()
            quick.close()
    assert done["state"] == "done", done
    paused = [e for e in slow.events if e.msg_type == M.PROGRESS and e.content.get("waiting_for_input")]
    assert paused, "the job never said it waits for input"
    results = slow.results(job)
    sent = [e.content["number"] for e in slow.events if e.msg_type == M.RESULT]
    assert sorted(sent) == [n for n, _ in frames], "a frame was sent twice or not at all"
    for number, event in results.items():
        rgb = M.array_from(event.content["rgb"], event.buffers)
        assert np.array_equal(rgb, expected[number]), number  # as if it had never paused


def test_a_paused_stream_still_fails_when_its_client_is_gone(shot, tmp_path):
    frames, keyframes, _ = shot
    with Engine(tmp_path, "--stall-timeout", "3") as engine:
        gone, other = Raw(engine.url, "gone"), Raw(engine.url, "other")
        try:
            job = submit_streamed(gone, frames[:2], keyframes)
            # Another silent stream queued behind it: the first gives the device up, then waits paused.
            submit_streamed(other, [(1, np.zeros((8, 8, 3), np.uint8))], [], backend="passthrough")
            done = gone.until_done(job, timeout_s=30)
            assert any(e.content.get("waiting_for_input") for e in gone.events if e.msg_type == M.PROGRESS)
        finally:
            gone.close()
            other.close()
    assert done["state"] == "failed" and done["error"]["code"] == "input_timeout"


def test_a_paused_stream_fails_at_the_stall_timeout_while_the_worker_runs_another_job(shot, tmp_path):
    """The worker is busy with a stream that is fed steadily, so it never goes idle: the paused
    job must still fail when its own client has been silent for the stall timeout."""
    frames, keyframes, _ = shot
    stall_s = 2.0
    with Engine(tmp_path, "--stall-timeout", str(stall_s)) as engine:
        gone, busy = Raw(engine.url, "gone"), Raw(engine.url, "busy")
        try:
            job = submit_streamed(gone, frames[:2], keyframes)
            last_frame = time.monotonic()
            time.sleep(0.5)
            other = submit_streamed(busy, [(0, np.zeros((8, 8, 3), np.uint8))], [], backend="passthrough")
            ended, n = None, 1
            while ended is None and time.monotonic() - last_frame < stall_s + 8:
                append(busy, other, [(n, np.zeros((8, 8, 3), np.uint8))], more=True)  # never dry for 1 s
                n += 1
                while gone.take(0.05) is not None:
                    pass
                done = [e.content for e in gone.events if e.msg_type == M.DONE and e.content["job_id"] == job]
                if done:
                    ended = (time.monotonic() - last_frame, done[0])
                time.sleep(0.2)
            append(busy, other, [], more=False)
            assert busy.until_done(other)["state"] == "done"
        finally:
            gone.close()
            busy.close()
    assert any(e.content.get("waiting_for_input") for e in gone.events if e.msg_type == M.PROGRESS), \
        "the job never paused: the test did not exercise a paused job"
    assert ended is not None, "the paused job did not fail while the worker ran the other job"
    after, done = ended
    assert done["state"] == "failed" and done["error"]["code"] == "input_timeout", done
    assert after < stall_s + 2.5, f"failed {after:.1f} s after its last frame (stall timeout {stall_s} s)"


def test_events_are_numbered_and_a_client_that_stopped_reading_sees_the_gap_and_catches_up(tmp_path):
    big = [(n, np.full((512, 512, 3), n, np.uint8)) for n in range(40)]  # 768 KiB a result
    with Engine(tmp_path, "--stall-timeout", "1") as engine:
        raw = Raw(engine.url, "paused-gui", rcvhwm=2)
        try:
            bufs: list = []
            content = {"backend": "passthrough", "input": {"kind": "inline", "frames": frames_content(big, bufs)}}
            job = raw.request(M.SUBMIT, content, bufs)["job_id"]
            time.sleep(6)  # a modal dialog: nothing read for longer than the stall timeout
            while raw.take(0.5) is not None:  # what was buffered before the engine gave up on us
                pass
            before = len(raw.results(job))
            assert before < len(big), "nothing was dropped: the test did not stall the client"
            assert raw.request(M.PING, {})["status"] == "ok"  # speaking again
            raw.take(2)
            seqs = [e.content["event_seq"] for e in raw.events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            gaps = [b - a for a, b in zip(seqs, seqs[1:]) if b - a > 1]
            assert gaps, "the progress sent after the stall should show the missed events"
            reply = raw.request(M.REATTACH, {"job_id": job, "resend": True})
            assert reply["status"] == "ok"
            raw.until_done(job)
        finally:
            raw.close()
    results = raw.results(job)
    assert sorted(results) == [n for n, _ in big]
    assert all(M.array_from(e.content["rgb"], e.buffers)[0, 0, 0] == n for n, e in results.items())


def test_a_long_stream_lets_handed_out_frames_go_and_gives_their_bytes_back():
    from longanim.engine.server.job import FrameFeed

    frame = lambda n: (n, np.full((10, 10, 3), n, np.uint8))  # noqa: E731  300 bytes each
    feed = FrameFeed([frame(0), frame(1)], more=True, retain_bytes=1000)
    feed.append([frame(2), frame(3)], more=True)  # 1200 bytes: past what is kept to start over
    assert not feed.restartable
    got = feed.iterate(lambda: False, timeout_s=5)
    assert [next(got)[0] for _ in range(4)] == [0, 1, 2, 3]
    assert feed.released == 600  # frames 2 and 3 are the backend's now; 0 and 1 live in the submit message
    feed.append([frame(4)], more=False)
    assert [n for n, _ in got] == [4]
    assert feed.released == 900 and feed.snapshot() == []


def test_a_short_stream_keeps_its_frames_to_start_over():
    from longanim.engine.server.job import FrameFeed

    feed = FrameFeed([(0, np.zeros((4, 4, 3), np.uint8))], more=False)
    assert [n for n, _ in feed.iterate(lambda: False, 5)] == [0]
    assert [n for n, _ in feed.iterate(lambda: False, 5)] == [0] and feed.released == 0


def _pause_past_the_stall_timeout(engine, catch_up_s: float):
    """A Blender F12 render: the timer stops calling poll() for longer than the engine waits.
    The job is accepted and its first results are in before the pause (the client's hello for
    the message limit and the submit both answered), so what the engine drops meanwhile is
    results of a running job this client knows."""
    # More results than the client's socket and the engine's send queue hold together (a
    # result and a progress event each), so the engine must give up on the client and drop some.
    big = [(n, np.full((128, 128, 3), n % 256, np.uint8)) for n in range(400)]
    got: dict = {}
    with engine.client() as client:
        job = client.submit_frames(big, backend="passthrough", wait=False)
        deadline = time.monotonic() + 20
        while (job.id is None or not got) and time.monotonic() < deadline:
            client.poll(0.02)
            got.update((r.number, r.rgb[0, 0, 0]) for r in job.poll())
        assert job.id is not None and got, "the job was not running before the pause"
        assert len(got) < len(big), "every result came before the pause: nothing to lose"
        time.sleep(5)  # from here on nothing reads, past the 1 s stall timeout
        deadline = time.monotonic() + catch_up_s
        while not job.final and time.monotonic() < deadline:
            client.poll()
            got.update((r.number, r.rgb[0, 0, 0]) for r in job.poll())
            time.sleep(0.02)
        got.update((r.number, r.rgb[0, 0, 0]) for r in job.poll())
    return job, got, {n: n % 256 for n, _ in big}


def test_the_reference_client_catches_up_by_itself_after_a_pause_past_the_stall_timeout(tmp_path):
    with Engine(tmp_path, "--stall-timeout", "1") as engine:
        job, got, expected = _pause_past_the_stall_timeout(engine, catch_up_s=30)
    assert job.state == "done", (job.state, job.error, len(got))
    assert got == expected


def test_without_its_catch_up_the_client_would_lose_results_in_that_pause(tmp_path, monkeypatch):
    """The control for the test above: the same pause with the client's catch-up (reattach
    with resend) switched off ends without every result, so the test above exercises it."""
    from longanim.protocol.client import EngineClient

    monkeypatch.setattr(EngineClient, "_resync", lambda self, job: None)
    with Engine(tmp_path, "--stall-timeout", "1") as engine:
        job, got, expected = _pause_past_the_stall_timeout(engine, catch_up_s=8)
    assert not (job.state == "done" and got == expected), "no result was lost: the pause exercised nothing"
