"""The Open Job Description bundle in farm/: `openjd check` and real `openjd run` sessions on
synthetic shots. A two-shot job; a task whose longanim process is SIGKILLed mid-shot and then
run again; a cancel (NOTIFY_THEN_TERMINATE); a shot in two chunks. Each compares every output
file's bytes with a plain uninterrupted `longanim colorize` run.

Needs `openjd` (pip install openjd-cli); skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.pipeline import checkpoints
from run_helpers import colorize_pids, outputs, wait_for_frames

TEMPLATE = Path(__file__).resolve().parents[1] / "farm" / "template.yaml"
OPENJD = shutil.which("openjd")
pytestmark = pytest.mark.skipif(OPENJD is None, reason="openjd-cli is not installed (pip install openjd-cli)")
W, H = 160, 90


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("farm-shots")
    make_shot(40, W, H, seed=5).save(root / "a", kinds=("lineart", "color"))
    make_shot(40, W, H, seed=6).save(root / "b", kinds=("lineart", "color"))
    make_shot(120, W, H, seed=7).save(root / "long", kinds=("lineart", "color"))
    return root


def _shot(name: str, output: str, **extra) -> dict:
    return {"name": name, "lineart": f"{name}/lineart", "refs": [f"{name}/color/shot.1001.png:1001"],
            "output": output, **extra}


def _job(root: Path, list_name: str, shots: list[dict]) -> Path:
    path = root / list_name
    path.write_text(json.dumps({"shots": shots}))
    return path


def _openjd_run(shot_list: Path, count: int, **popen) -> list[str]:
    return [OPENJD, "run", str(TEMPLATE), "-p", f"Shots={shot_list}", "-p", f"ShotCount={count}",
            "-p", f"Python={sys.executable}", "-p", "CheckpointEvery=5"]


@pytest.fixture(scope="module")
def reference(shots, tmp_path_factory):
    """Plain uninterrupted CLI runs, the same each shot."""
    out = tmp_path_factory.mktemp("reference")

    def run(name: str) -> Path:
        target = out / name
        if not target.exists():
            assert main(["colorize", str(shots / name / "lineart"), "--ref", str(shots / name / "color" / "shot.1001.png"),
                         "-o", str(target), "-q", "--checkpoint-every", "0"]) == 0
        return target

    return run


def _assert_same(out: Path, ref: Path) -> None:
    mine, theirs = outputs(out), outputs(ref)
    assert sorted(mine) == sorted(theirs)
    different = [name for name in mine if mine[name] != theirs[name]]
    assert not different, f"{len(different)} files differ, first {different[:3]}"


def test_template_passes_openjd_check():
    done = subprocess.run([OPENJD, "check", str(TEMPLATE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "passes validation" in done.stdout, done.stdout + done.stderr


def test_two_shot_job(shots, reference, tmp_path):
    job = _job(shots, "two.json", [_shot("a", str(tmp_path / "a")), _shot("b", str(tmp_path / "b"))])
    done = subprocess.run(_openjd_run(job, 2), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "openjd_status: shot 1/2: a" in done.stdout and "openjd_status: shot 2/2: b" in done.stdout
    assert "openjd_progress: 100.0" in done.stdout and "Chunks run: 2" in done.stdout
    for name in ("a", "b"):
        _assert_same(tmp_path / name, reference(name))
        assert json.loads((tmp_path / name / "report.json").read_text())["frames"] == list(range(1001, 1041))


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the task's process in /proc")
def test_task_killed_mid_shot_and_run_again_gives_identical_output(shots, reference, tmp_path):
    out = tmp_path / "long"
    job = _job(shots, "killed.json", [_shot("long", str(out))])
    first = subprocess.Popen(_openjd_run(job, 1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_frames(out, 50, first)
    pids = colorize_pids(str(out))
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)  # a preempted worker: no notice at all
    log, _ = first.communicate(timeout=120)
    assert first.returncode != 0 and "Session ended with errors" in log
    assert not (out / "report.json").exists() and len(list(out.glob("shot.*.png"))) < 120
    again = subprocess.run(_openjd_run(job, 1), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "openjd_status: resumed from the checkpoint after frame" in again.stdout
    _assert_same(out, reference("long"))


def test_cancel_notifies_saves_a_checkpoint_and_leaves_no_partial_files(shots, reference, tmp_path):
    out = tmp_path / "long"
    job = _job(shots, "cancel.json", [_shot("long", str(out))])
    # `openjd run` cancels its session on SIGINT the way a farm does: NOTIFY_THEN_TERMINATE.
    run = subprocess.Popen(_openjd_run(job, 1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_frames(out, 30, run)
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    log, _ = run.communicate(timeout=60)
    assert time.monotonic() - started < 30  # well within the notify period
    assert 'Sending signal "term"' in log and "exited with code: 143" in log
    assert "openjd_status: cancelled after frame" in log
    assert not [p for p in out.rglob(".*") if "partial" in p.name] and not (out / "report.json").exists()
    last = max(int(p.name.split(".")[1]) for p in out.glob("shot.*.png"))
    header_frame = _checkpoint_frame(out)
    assert header_frame == last
    again = subprocess.run(_openjd_run(job, 1), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"resumed from the checkpoint after frame {last}" in again.stdout
    _assert_same(out, reference("long"))


def test_shot_in_two_chunks_equals_one_run(shots, reference, tmp_path):
    out = tmp_path / "long"
    job = _job(shots, "chunks.json", [_shot("long", str(out), frames="1001-1060"),
                                      _shot("long", str(out), frames="1061-1120")])
    done = subprocess.run(_openjd_run(job, 2), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "resumed from the checkpoint after frame 1060" in done.stdout
    _assert_same(out, reference("long"))


def test_bad_shot_list_fails_with_exit_2(shots, tmp_path):
    job = _job(shots, "bad.json", [{"name": "missing", "lineart": "nowhere/", "refs": ["x.png"],
                                    "output": str(tmp_path / "x")}])
    done = subprocess.run(_openjd_run(job, 1), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "exited with code: 2" in done.stdout


def _checkpoint_frame(out: Path) -> int:
    import numpy as np

    with np.load(checkpoints.checkpoint_path(out, "shot"), allow_pickle=False) as z:
        return json.loads(z["header"].tobytes().decode())["frame"]
