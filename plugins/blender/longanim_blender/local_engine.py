"""A `longanim serve` started from the add-on's preferences on this machine.

One process at most, owned by this Blender: its output goes to a log file the preferences
show, and it is stopped (SIGTERM, then a kill) by Stop, when the add-on is disabled, and
when Blender quits (atexit). On Linux the kernel also stops it if Blender dies without
quitting (PR_SET_PDEATHSIG), so no orphaned engine keeps the port. No bpy here: the
operators pass the settings in, and plain pytest can drive it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_WAIT_S = 10.0

_proc: subprocess.Popen | None = None
_log_path: Path | None = None
_log_file = None


def command(python: str, url: str, roots: list[str], token_file: Path) -> list[str]:
    """The engine's command line: `python -m longanim serve` from the configured
    environment, or `longanim serve` from PATH when no Python is configured."""
    if python:
        if not os.path.isfile(python):
            raise ValueError(f"the engine's Python {python} does not exist; point the preferences at the "
                             "python of the environment longanim is installed in")
        head = [python, "-m", "longanim"]
    else:
        found = shutil.which("longanim")
        if found is None:
            raise ValueError("no `longanim` on PATH; set the engine's Python in the preferences "
                             "(the python of the environment longanim is installed in)")
        head = [found]
    cmd = [*head, "serve", "--bind", url, "--token-file", str(token_file)]
    if roots:
        cmd += ["--roots", *roots]
    return cmd


def _die_with_parent() -> None:  # runs in the child, before exec (Linux only)
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(python: str, url: str, roots: list[str], folder: Path) -> subprocess.Popen:
    """Start the engine, its output appended to folder/engine.log; refuses a second one."""
    global _proc, _log_path, _log_file
    if running():
        raise RuntimeError(f"a local engine is running already (pid {_proc.pid}); stop it first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = command(python, url, roots, folder / "engine.token")
    _close_log()
    _log_path = folder / "engine.log"
    _log_file = open(_log_path, "ab")
    _log_file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} started: {' '.join(cmd)}\n".encode())
    _log_file.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # Blender's own modules must not shadow the engine's environment
    env.pop("PYTHONHOME", None)
    kwargs: dict = {}
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = _die_with_parent
    elif os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
    _proc = subprocess.Popen(cmd, stdout=_log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, **kwargs)
    return _proc


def running() -> bool:
    return _proc is not None and _proc.poll() is None


def pid() -> int | None:
    return _proc.pid if _proc is not None else None


def state() -> str:
    if _proc is None:
        return "not started"
    code = _proc.poll()
    return f"running (pid {_proc.pid})" if code is None else f"exited with status {code}"


def stop(wait_s: float = STOP_WAIT_S) -> int | None:
    """SIGTERM (the engine finishes the frame in hand and exits), a kill after `wait_s`;
    returns the exit status, None when nothing was started."""
    proc = _proc
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait_s)
    _close_log()
    return proc.returncode


def log_path() -> Path | None:
    return _log_path


def log_tail(lines: int = 8) -> list[str]:
    if _log_path is None:
        return []
    try:
        with open(_log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def _close_log() -> None:
    global _log_file
    if _log_file is not None:
        _log_file.close()
        _log_file = None


atexit.register(stop)
