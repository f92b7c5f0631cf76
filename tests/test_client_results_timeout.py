"""`Job.results(timeout)` bounds the engine's silence, heartbeat replies included, not the job's
own: a job queued behind a longer one hears nothing of its own for longer than the timeout and
still gets its results; a killed engine fails the wait within the timeout and a few heartbeats."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import Engine
from longanim.engine.evaluation.synthetic import make_shot
from longanim.protocol.client import EngineTimeout

TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("queued-behind")
    make_shot(300, 160, 90, seed=3).save(root / "shot", kinds=("lineart", "color"))
    return root


def _long_job(client, root: Path, out: Path):
    return client.submit_paths(str(root / "shot" / "lineart"), [(str(root / "shot" / "color" / "shot.1001.png"), 1001)],
                               str(out), backend="paint", label="long")


def test_a_job_queued_behind_a_longer_one_outwaits_the_timeout(shot, tmp_path):
    with Engine(tmp_path, "--roots", str(shot), str(tmp_path), "--no-cache") as engine, engine.client() as client:
        long = _long_job(client, shot, tmp_path / "out")
        frames = [(1, np.full((8, 8, 3), 7, np.uint8))]
        queued = client.submit_frames(frames, backend="passthrough", cache=False)
        started = time.monotonic()
        got = [r.number for r in queued.results(timeout=TIMEOUT_S)]
        waited = time.monotonic() - started
        long.wait(timeout=60)
    print(f"the queued job waited {waited:.1f} s with a {TIMEOUT_S} s timeout")
    assert got == [1] and queued.state == "done"
    assert long.state == "done"
    assert waited > 2 * TIMEOUT_S  # it did wait longer than its timeout, silent itself: the heartbeats counted


def test_a_killed_engine_still_fails_the_wait_within_the_timeout(shot, tmp_path):
    engine = Engine(tmp_path, "--roots", str(shot), str(tmp_path), "--no-cache").start()
    try:
        with engine.client() as client:
            job = _long_job(client, shot, tmp_path / "out")
            with pytest.raises(EngineTimeout, match="nothing from the engine"):
                for result in job.results(timeout=TIMEOUT_S):
                    if result.number == 1005:
                        engine.kill()
                        killed = time.monotonic()
            late = time.monotonic() - killed
    finally:
        engine.kill()
    print(f"the wait failed {late:.1f} s after the engine was killed")
    assert late < TIMEOUT_S + 2.0  # the reconnect attempts are no word from the engine
