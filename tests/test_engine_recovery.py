"""Recovery of inline jobs: what a killed engine or a vanished client finished is reused,
for streamed input too, and never served once the code or the weights changed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import Engine

from longanim.engine.backends import base, create_backend
from longanim.engine.backends.base import Keyframe
from longanim.engine.backends.paint.colorizer import PaintBackend
from longanim.engine.evaluation.synthetic import make_shot

FRAMES = 60
REPO = Path(__file__).resolve().parent.parent
SMALL_CHUNKS = 3 * 320 * 180 * 3  # three frames a message: the job is streamed


def trickle(frames, delay_s: float = 0.02):
    """Frames as a slow renderer hands them over: the job starts before its input is complete."""
    for item in frames:
        yield item
        time.sleep(delay_s)


@pytest.fixture(scope="module")
def shot():
    s = make_shot(num_frames=FRAMES, width=320, height=180, seed=4)
    frames = [(1001 + i, s.lineart(i)) for i in range(FRAMES)]
    keyframes = [(1001, s.color(0), s.lineart(0))]
    backend = create_backend("paint")
    expected = {r.number: r.rgb for r in backend.colorize(frames, [Keyframe(*k) for k in keyframes])}
    return frames, keyframes, expected


def test_a_streamed_paint_job_killed_mid_way_is_reused_on_resubmit(shot, tmp_path):
    frames, keyframes, expected = shot
    cache = tmp_path / "cache"
    engine = Engine(tmp_path, cache=cache).start()
    try:
        with engine.client() as c:
            job = c.submit_frames(trickle(frames), keyframes, backend="paint", chunk_bytes=SMALL_CHUNKS)
            finished: list[int] = []
            deadline = time.monotonic() + 60
            while len(finished) < 10 and time.monotonic() < deadline:
                finished += [r.number for r in job.poll(0.05)]
            assert len(finished) >= 10 and not job.final, "the job should still be running"
            engine.kill()
    finally:
        engine.kill()
    with Engine(tmp_path, cache=cache, port=engine.port) as restarted, restarted.client() as c:
        job = c.submit_frames(trickle(frames), keyframes, backend="paint", chunk_bytes=SMALL_CHUNKS)
        results = {r.number: r for r in job.results(timeout=60)}
    assert job.state == "done" and sorted(results) == [n for n, _ in frames]
    assert all(results[n].cached for n in finished)
    assert not all(r.cached for r in results.values())
    assert all(np.array_equal(results[n].rgb, expected[n]) for n in expected)  # as an uninterrupted run


def test_reattach_with_resend_returns_every_finished_frame_of_a_streamed_paint_job(shot, tmp_path):
    frames, keyframes, expected = shot
    with Engine(tmp_path) as engine:
        with engine.client() as first:
            job = first.submit_frames(trickle(frames[:30]), keyframes, backend="paint", chunk_bytes=SMALL_CHUNKS)
            assert job.wait(60) == "done"
        with engine.client() as second:
            again = second.reattach(job.id, resend=True)
            resent = {r.number: r.rgb for r in again.results(timeout=60)}
    assert sorted(resent) == [n for n, _ in frames[:30]]
    assert all(np.array_equal(resent[n], expected[n]) for n in resent)


SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


def installed_copy(dest: Path) -> dict:
    """The package as an install would lay it out: cli/, engine/ and protocol/ copied under
    `dest` in their import layout. The env runs `python -m longanim` from the copy
    (PYTHONPATH comes before the editable install's finder)."""
    pkg = dest / "longanim"
    shutil.copytree(REPO / "cli", pkg, ignore=SKIP)
    shutil.copytree(REPO / "engine", pkg / "engine", ignore=SKIP)
    shutil.copytree(REPO / "protocol", pkg / "protocol", ignore=SKIP)
    return {"PYTHONPATH": str(dest)}


def copy_of(installed: dict, dest: Path, change: str | None = None) -> dict:
    """Another copy of that install; with `change`, an upgrade: the text appended to paint's
    colorizer module as a comment."""
    shutil.copytree(Path(installed["PYTHONPATH"]) / "longanim", dest / "longanim", ignore=SKIP)
    if change is not None:
        module = dest / "longanim" / "engine" / "backends" / "paint" / "colorizer.py"
        module.write_text(module.read_text() + f"\n# {change}\n")
    return {"PYTHONPATH": str(dest)}


def test_results_of_other_backend_code_are_not_served(shot, tmp_path):
    """Engine processes one after another on one cache: an install, an identical copy of it
    (served from the cache: a copy alone changes nothing) and an upgraded paint (computed
    again). Copies of one copy, so an edit in the working tree meanwhile changes none."""
    frames, keyframes, _ = shot
    cache = tmp_path / "cache"

    def run(env: dict, where: str) -> list[bool]:
        with Engine(tmp_path / where, cache=cache, env=env) as engine, engine.client() as c:
            return [r.cached for r in c.submit_frames(frames[:6], keyframes, backend="paint").results(30)]

    installed = installed_copy(tmp_path / "installed")
    assert run(installed, "installed") == [False] * 6
    assert run(installed, "installed") == [True] * 6
    assert run(copy_of(installed, tmp_path / "same"), "same") == [True] * 6
    upgraded = copy_of(installed, tmp_path / "upgraded", change="an upgraded paint")
    assert run(upgraded, "upgraded") == [False] * 6
    assert run(upgraded, "upgraded") == [True] * 6  # its own results are cached as usual
    assert run(installed, "installed") == [True] * 6  # and the old code's are still there for it


def test_code_version_covers_the_whole_backend_package():
    from longanim.engine.backends.passthrough import PassthroughBackend

    assert base.code_version(PaintBackend) != base.code_version(PassthroughBackend)
    assert PaintBackend().cache_identity()["code"] == base.code_version(PaintBackend)


def test_replacing_a_weight_file_changes_the_longanimation_identity(tmp_path):
    from longanim.engine.backends.longanimation.backend import LongAnimationBackend

    weights = tmp_path / "weights"
    (weights / "memory").mkdir(parents=True)
    (weights / "memory" / "model.safetensors").write_bytes(b"one")
    backend = LongAnimationBackend(weights, tiny=True)
    before = backend.cache_identity()
    assert before == backend.cache_identity()
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"two")
    replacement.replace(weights / "memory" / "model.safetensors")
    assert backend.cache_identity() != before
