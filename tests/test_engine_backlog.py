"""Results dropped while a client did not read, for jobs the result cache does not hold
(`serve --no-cache`, a job's `cache: false`): the engine keeps them in a bounded backlog
and the client's catch-up gets them; past the bound, the client's job ends failed naming
the frames that never came, never `done` with frames silently missing. Real engine
processes, the reference client driven as a GUI timer drives it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from engine_helpers import Engine

FRAMES = [(n, np.full((128, 128, 3), (n * 7) % 256, np.uint8)) for n in range(300)]  # 48 KiB a result


def _stop_reading_past_the_stall_timeout(engine: Engine, cache: bool):
    """A Nuke modal dialog: the first results are in, then nothing reads for 5 s (stall 1 s)."""
    got: dict = {}
    with engine.client() as client:
        job = client.submit_frames(FRAMES, backend="passthrough", chunk_bytes=1 << 30, cache=cache, wait=False)
        deadline = time.monotonic() + 20
        while len(got) < 5 and time.monotonic() < deadline:
            client.poll(0.02)
            got.update((r.number, int(r.rgb[0, 0, 0])) for r in job.poll())
        assert len(got) >= 5, "the job was not running before the pause"
        time.sleep(5)
        deadline = time.monotonic() + 60
        while not job.final and time.monotonic() < deadline:
            client.poll()
            got.update((r.number, int(r.rgb[0, 0, 0])) for r in job.poll())
            time.sleep(0.01)
        got.update((r.number, int(r.rgb[0, 0, 0])) for r in job.poll())
    assert "took nothing for" in engine.log_path.read_text(), "the engine never gave up on the client"
    return job, got


@pytest.mark.parametrize("where", ["serve --no-cache", "job cache=false"])
def test_results_dropped_while_not_reading_come_back_from_the_backlog_without_a_cache(tmp_path, where):
    extra = ("--no-cache",) if where == "serve --no-cache" else ()
    with Engine(tmp_path, "--stall-timeout", "1", *extra) as engine:
        job, got = _stop_reading_past_the_stall_timeout(engine, cache=where == "serve --no-cache")
    assert job.state == "done", (job.state, job.error, len(got))
    assert got == {n: int(a[0, 0, 0]) for n, a in FRAMES}


def test_past_the_backlog_the_job_fails_naming_the_frames_that_never_came(tmp_path):
    with Engine(tmp_path, "--stall-timeout", "1", "--backlog-mb", "1") as engine:  # about 20 results
        job, got = _stop_reading_past_the_stall_timeout(engine, cache=False)
    assert len(got) < len(FRAMES), "nothing was lost: the backlog held everything"
    assert job.state == "failed", (job.state, len(got))
    assert job.error["code"] == "results_lost"
    missing = sorted(set(range(len(FRAMES))) - set(got))
    assert f"{len(missing)} of {len(FRAMES)} results never arrived" in job.error["message"], job.error
    assert f"frames {missing[0]}-" in job.error["message"] or f"frames {missing[0]}," in job.error["message"], \
        job.error


def test_the_backlog_is_bounded_and_gives_up_ended_jobs_first():
    from longanim.engine.server.backlog import ResultBacklog

    backlog = ResultBacklog(max_bytes=1000)
    part = [b"x" * 300]
    ended = {"old"}
    for n in range(3):
        backlog.keep("old", n, part, ended.__contains__)
    backlog.keep("live", 0, part, ended.__contains__)  # room made by the ended job's oldest result
    assert backlog.nbytes == 900
    backlog.keep("live", 1, part, ended.__contains__)
    backlog.keep("live", 2, part, ended.__contains__)
    backlog.keep("live", 3, part, ended.__contains__)  # nothing ended is left to give up
    kept, lost = backlog.take("live")
    assert [n for n, _ in kept] == [0, 1, 2] and lost == [3]
    assert backlog.take("old") == ([], [0, 1, 2])
    assert backlog.nbytes == 0
