"""Eight clients submitting twenty jobs each at once: no job lost, every output equal
to a serial in-process run."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from engine_helpers import Engine

from longanim.engine.backends import create_backend
from longanim.engine.backends.base import Keyframe
from longanim.engine.evaluation.synthetic import make_shot
from longanim.protocol import messages as M

CLIENTS, JOBS, FRAMES = 8, 20, 3


@pytest.fixture(scope="module")
def shot():
    s = make_shot(num_frames=40, width=64, height=48, seed=11)
    return [s.lineart(i) for i in range(40)], [s.color(i) for i in range(40)]


def job_input(shot, client: int, job: int):
    lineart, color = shot
    start = (client * JOBS + job) % (len(lineart) - FRAMES)
    frames = [(100 + start + k, lineart[start + k]) for k in range(FRAMES)]
    keyframes = [(100 + start, color[start], lineart[start])]
    return frames, keyframes


def serial(shot) -> dict:
    backend = create_backend("paint")
    out = {}
    for c in range(CLIENTS):
        for j in range(JOBS):
            frames, kfs = job_input(shot, c, j)
            out[c, j] = {r.number: r.rgb for r in backend.colorize(frames, [Keyframe(*k) for k in kfs])}
    return out


def test_eight_clients_twenty_jobs_each(tmp_path, shot):
    expected = serial(shot)
    got: dict = {}
    errors: list = []

    def client_thread(c: int, engine: Engine) -> None:
        try:
            with engine.client(timeout=30) as client:
                jobs = {}
                for j in range(JOBS):  # all submitted before any is collected: a real queue
                    frames, kfs = job_input(shot, c, j)
                    jobs[j] = client.submit_frames(frames, kfs, backend="paint", cache=False, label=f"{c}/{j}")
                for j, job in jobs.items():
                    got[c, j] = {r.number: np.array(r.rgb) for r in job.results(timeout=60)}
                    assert job.state == "done", (c, j, job.state, job.error)
        except BaseException as exc:  # reported by the main thread
            errors.append((c, exc))

    with Engine(tmp_path) as engine:
        threads = [threading.Thread(target=client_thread, args=(c, engine)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a client hung"
        with engine.client() as c:
            jobs = c.request(M.STATUS, {"all": True, "token": engine.token()}).content["jobs"]
    assert not errors, errors
    assert len(got) == CLIENTS * JOBS
    assert len(jobs) == CLIENTS * JOBS and all(j["state"] == "done" for j in jobs)
    for key, frames in expected.items():
        assert frames.keys() == got[key].keys(), key
        for number, rgb in frames.items():
            assert np.array_equal(got[key][number], rgb), (key, number)
