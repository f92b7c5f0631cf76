"""farm/template.yaml with Engine=session: one real `longanim serve` per `openjd run` session,
started in the LonganimEngine environment's onEnter, used by every task of the session
(`longanim colorize --engine URL`), stopped in onExit, with no engine process left behind, also
after a cancel; a task SIGKILLed mid-shot resumes from the checkpoint the engine kept. The
frames equal an in-process run's, byte for byte.

Needs `openjd` (pip install openjd-cli); skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from run_helpers import colorize_pids, outputs, running, wait_for_frames

FARM = Path(__file__).resolve().parents[1] / "farm"
TEMPLATE = FARM / "template.yaml"
OPENJD = shutil.which("openjd")
pytestmark = pytest.mark.skipif(OPENJD is None, reason="openjd-cli is not installed (pip install openjd-cli)")
W, H = 160, 90
ENGINE_STARTED = re.compile(r"openjd_status: engine pid (\d+) on (tcp://\S+)")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("session-shots")
    make_shot(24, W, H, seed=5).save(root / "a", kinds=("lineart", "color"))
    make_shot(24, W, H, seed=6).save(root / "b", kinds=("lineart", "color"))
    make_shot(400, W, H, seed=7).save(root / "long", kinds=("lineart", "color"))
    return root


def _shot(root: Path, name: str, output: Path, **extra) -> dict:
    return {"name": name, "lineart": f"{name}/lineart", "refs": [f"{name}/color/shot.1001.png:1001"],
            "output": str(output), **extra}


def _job(root: Path, list_name: str, shots: list[dict]) -> Path:
    path = root / list_name
    path.write_text(json.dumps({"shots": shots}))
    return path


def _openjd_run(shot_list: Path, count: int) -> list[str]:
    return [OPENJD, "run", str(TEMPLATE), "-p", f"Shots={shot_list}", "-p", f"ShotCount={count}",
            "-p", f"Python={sys.executable}", "-p", "Engine=session"]


def _in_process(root: Path, name: str, out: Path, *extra: str) -> Path:
    assert main(["colorize", str(root / name / "lineart"), "--ref", str(root / name / "color" / "shot.1001.png"),
                 "-o", str(out), "-q", "--checkpoint-every", "0", *extra]) == 0
    return out


def _engines_for(session_marker: str) -> list[int]:
    """`longanim serve` processes whose command line names this session's files."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            wanted = b"serve" in cmdline and b"longanim" in cmdline and session_marker.encode() in cmdline
            if wanted and running(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks for left-over processes in /proc")
def test_one_engine_serves_every_task_of_the_session_and_is_stopped_at_the_end(shots, tmp_path):
    out = tmp_path / "out"
    # Three tasks in one session: two shots, then the second half of a shot (a warm-up through the engine).
    job = _job(shots, "session.json", [_shot(shots, "a", out / "a"), _shot(shots, "b", out / "b"),
                                       _shot(shots, "a", out / "a_tail", frames="1013-1024")])
    done = subprocess.run(_openjd_run(job, 3), capture_output=True, text=True, timeout=300)
    log = done.stdout
    assert done.returncode == 0 and "Chunks run: 3" in log, log[-3000:] + done.stderr[-2000:]
    started = ENGINE_STARTED.findall(log)
    assert len(started) == 1, started  # once per session, not per task
    pid, url = int(started[0][0]), started[0][1]
    assert log.count(f"via the session's engine {url}") == 3
    assert log.count(f"colorized via {url} (job ") == 3  # each task's frames came from that engine
    assert f"openjd_status: engine pid {pid} shut down" in log
    assert log.index(f"engine pid {pid} shut down") > log.rindex("colorized via")
    assert not running(pid)
    for name, extra in (("a", ()), ("b", ()), ("a_tail", ("--frames", "1013-1024"))):
        reference = _in_process(shots, name.split("_")[0], tmp_path / "ref" / name, *extra)
        assert outputs(out / name) == outputs(reference), name
        assert len(outputs(out / name)) == 2 * (12 if extra else 24)
        # the engine read and wrote the files itself (its roots: the shot list's folders) and
        # kept the checkpoint in the output folder, as a task in-process does
        assert (out / name / ".shot.longanim-checkpoint.npz").is_file()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks for left-over processes in /proc")
def test_cancel_stops_the_task_then_the_engine(shots, tmp_path):
    out = tmp_path / "long"
    job = _job(shots, "cancel.json", [_shot(shots, "long", out)])
    run = subprocess.Popen(_openjd_run(job, 1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_frames(out, 30, run)
    run.send_signal(signal.SIGINT)  # `openjd run` cancels the session as a farm does
    log, _ = run.communicate(timeout=90)
    started = ENGINE_STARTED.findall(log)
    assert len(started) == 1, log[-3000:]
    pid = int(started[0][0])
    assert 'Sending signal "term"' in log and "exited with code: 143" in log
    assert "openjd_status: cancelled after frame" in log
    assert f"openjd_status: engine pid {pid} shut down" in log  # onExit ran after the cancel
    assert not running(pid)
    written = sorted(out.glob("shot.*.png"))
    assert 30 <= len(written) < 400 and not (out / "report.json").exists()
    assert not [p for p in out.rglob(".*") if "partial" in p.name]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks for left-over processes in /proc")
def test_an_engine_killed_mid_task_fails_the_task_with_a_retryable_exit(shots, tmp_path):
    out = tmp_path / "long"
    job = _job(shots, "engine-killed.json", [_shot(shots, "long", out)])
    run = subprocess.Popen(_openjd_run(job, 1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_frames(out, 30, run)
    (pid,) = _engines_for("longanim-engine.token")  # the only session engine running here
    os.kill(pid, signal.SIGKILL)  # out of memory, a driver fault: the engine is gone without a word
    log, _ = run.communicate(timeout=120)
    assert "Session ended with errors" in log
    assert "exited with code: 1 " in log and "exited with code: 2 " not in log  # a farm retries 1, not 2
    assert "openjd_fail: the engine ended before the session did" in log
    assert not (out / "report.json").exists()
    # The engine wrote the files: SIGKILLed, it may leave the hidden temporaries of the frames in
    # flight, never a frame's own name half written; the retry removes them and resumes.
    import cv2

    left = [p for p in out.rglob(".*") if "partial" in p.name]
    assert all(p.name.startswith(".shot.") for p in left), left
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in out.rglob("shot.*.png"))
    again = subprocess.run(_openjd_run(job, 1), capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "openjd_status: resumed from the checkpoint after frame" in again.stdout, \
        again.stdout[-3000:]
    assert not [p for p in out.rglob(".*") if "partial" in p.name]
    assert outputs(out) == outputs(_in_process(shots, "long", tmp_path / "ref"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the task's process in /proc")
def test_task_killed_mid_shot_under_the_engine_resumes_with_identical_output(shots, tmp_path):
    """SIGKILL of the task (its `colorize --engine` client) mid-shot: the session ends, its
    engine is stopped and saves the shot's checkpoint; the re-run task, through a new
    session's engine, resumes from it and the frames equal an uninterrupted run's."""
    out = tmp_path / "long"
    job = _job(shots, "task-killed.json", [_shot(shots, "long", out)])
    first = subprocess.Popen(_openjd_run(job, 1) + ["-p", "CheckpointEvery=10"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    wait_for_frames(out, 40, first)
    (pid,) = colorize_pids(str(out))
    os.kill(pid, signal.SIGKILL)  # a preempted task: no notice at all
    log, _ = first.communicate(timeout=120)
    assert first.returncode != 0 and "Session ended with errors" in log, log[-3000:]
    assert "openjd_status: engine pid" in log and " shut down" in log  # onExit stopped the session's engine
    assert not (out / "report.json").exists() and len(list(out.glob("shot.*.png"))) < 400
    again = subprocess.run(_openjd_run(job, 1) + ["-p", "CheckpointEvery=10"], capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 0, again.stdout[-3000:]
    resumed = re.search(r"openjd_status: resumed from the checkpoint after frame (\d+)", again.stdout)
    assert resumed and 1010 <= int(resumed.group(1)) < 1400, again.stdout[-3000:]
    assert "via the session's engine" in again.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["start"]["mode"] == "resumed" and report["start"]["checkpoint_frame"] == int(resumed.group(1))
    reference = _in_process(shots, "long", tmp_path / "ref")
    assert outputs(out) == outputs(reference) and len(outputs(out)) == 800


def _session_script() -> str:
    import yaml  # openjd-cli's own dependency

    template = yaml.safe_load(TEMPLATE.read_text())
    (env,) = template["jobEnvironments"]
    (embedded,) = env["script"]["embeddedFiles"]
    return embedded["data"]


def test_an_engine_that_cannot_start_fails_the_session_enter_with_its_error(tmp_path):
    """The environment's own script, run as onEnter runs it, with serve arguments the engine refuses."""
    script = tmp_path / "longanim_engine_session.py"
    script.write_text(_session_script())
    done = subprocess.run([sys.executable, str(script), "start", str(tmp_path), sys.executable, "60", "30", "session",
                           str(tmp_path / "no-shots.json"), "--max-queued-jobs", "0"],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 1
    assert "openjd_fail: the engine exited with 2 before it listened" in done.stdout
    assert "--max-queued-jobs must be at least 1" in done.stdout  # the engine's own message, from its log
    stopped = subprocess.run([sys.executable, str(script), "stop", str(tmp_path), "5"],
                             capture_output=True, text=True, timeout=60)
    assert "had already exited" in stopped.stdout and not _engines_for(str(tmp_path))


def test_in_process_mode_starts_no_engine(tmp_path):
    script = tmp_path / "longanim_engine_session.py"
    script.write_text(_session_script())
    done = subprocess.run([sys.executable, str(script), "start", str(tmp_path), sys.executable, "60", "30", "in-process"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "openjd_env:" not in done.stdout
    assert not (tmp_path / "longanim-engine.json").exists()
    stopped = subprocess.run([sys.executable, str(script), "stop", str(tmp_path), "5"],
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and "no engine was started" in stopped.stdout
