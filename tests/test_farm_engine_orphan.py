"""No orphan engine: `longanim serve --exit-with-parent PID` stops once that process is gone,
and the farm's session environment (farm/template.yaml, LonganimEngine onEnter) points it at
the worker agent, so a killed agent, which never runs onExit, leaves no engine holding a GPU.

Linux only (the agent is found and watched through /proc)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import Engine
from run_helpers import running

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="watches processes through /proc")
TEMPLATE = Path(__file__).resolve().parents[1] / "farm" / "template.yaml"
EXIT_WITHIN_S = 5.0


def _gone_within(pid: int, limit: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if not running(pid):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_serve_stops_when_the_watched_process_exits(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    engine = Engine(tmp_path, "--exit-with-parent", str(parent.pid)).start()
    try:
        time.sleep(1.5)  # a few watch periods: the engine stays while its process lives
        assert engine.proc.poll() is None
        parent.kill()
        parent.wait()
        started = time.monotonic()
        engine.proc.wait(EXIT_WITHIN_S)
        print(f"engine exited {time.monotonic() - started:.2f} s after its watched process")
        assert engine.proc.returncode == 0
        assert f"process {parent.pid} has exited; stopping" in engine.log()
    finally:
        parent.kill()
        engine.kill()


def test_serve_refuses_a_process_that_is_not_running(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    done = subprocess.run([sys.executable, "-m", "longanim", "serve", "--bind", "tcp://127.0.0.1:*",
                           "--no-cache", "--token-file", str(tmp_path / "t"), "--exit-with-parent", str(gone.pid)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"--exit-with-parent {gone.pid}: no such process is running" in done.stderr


def _session_script(tmp_path: Path) -> Path:
    yaml = pytest.importorskip("yaml")  # openjd-cli's own dependency
    template = yaml.safe_load(TEMPLATE.read_text())
    (env,) = template["jobEnvironments"]
    (embedded,) = env["script"]["embeddedFiles"]
    script = tmp_path / "longanim_engine_session.py"
    script.write_text(embedded["data"])
    return script


def test_the_session_engine_exits_when_the_worker_agent_is_killed(tmp_path):
    """The environment's onEnter run by a stand-in worker agent (a process that stays, as an
    agent does for its session); the agent is SIGKILLed, so nothing runs onExit."""
    script = _session_script(tmp_path)
    shots = tmp_path / "shots.json"
    (tmp_path / "in").mkdir()
    shots.write_text(json.dumps({"shots": [{"lineart": "in/", "refs": ["in/key.png"], "output": "out/"}]}))
    session = tmp_path / "session"
    session.mkdir()
    agent_code = (
        "import subprocess, sys, time\n"
        f"done = subprocess.run([sys.executable, {str(script)!r}, 'start', {str(session)!r}, sys.executable, "
        f"'60', '30', 'session', {str(shots)!r}])\n"
        "print('onEnter exited', done.returncode, flush=True)\n"
        "time.sleep(600)\n"
    )
    agent = subprocess.Popen([sys.executable, "-c", agent_code], stdout=subprocess.PIPE, text=True)
    engine_pid = None
    try:
        said = []
        for line in agent.stdout:
            said.append(line)
            if line.startswith("onEnter exited"):
                break
        assert said and said[-1].strip() == "onEnter exited 0", "".join(said)
        state = json.loads((session / "longanim-engine.json").read_text())
        engine_pid = state["pid"]
        assert running(engine_pid)
        cmdline = Path(f"/proc/{engine_pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--exit-with-parent") + 1] == str(agent.pid).encode()
        # its roots are the shot list's folders: the output folder was made for it
        assert str((tmp_path / "out").resolve()).encode() in cmdline and (tmp_path / "out").is_dir()
        time.sleep(1.0)
        assert running(engine_pid)  # the agent lives: so does the engine
        agent.kill()
        agent.wait()
        took = _gone_within(engine_pid, EXIT_WITHIN_S)
        print(f"session engine exited {took} s after the agent was killed")
        assert took is not None, Path(state["log"]).read_text()[-2000:]
        assert "has exited; stopping" in Path(state["log"]).read_text()
    finally:
        agent.kill()
        if engine_pid is not None and running(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)
