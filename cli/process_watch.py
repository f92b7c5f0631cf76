"""Is a given process still there? For `longanim serve --exit-with-parent PID`.

A render farm's session environment starts the engine in a process group of its own (so a
cancel aimed at one task does not reach it) and stops it when the session ends. If the
worker agent itself is killed, nothing stops it, and a GPU stays held by an engine nobody
talks to. Watching the agent's pid closes that gap without asking anything of the farm.

A pid is reused once its process is gone, so the process is known by its pid and its start
time (`/proc/PID/stat`, field 22): another process under the same number later is not it.
Where there is no /proc (macOS), `kill(pid, 0)` says whether the number is in use at all;
a process owned by another user (a farm agent running jobs as the job's user) answers
EPERM there, which still means it is running.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from longanim.engine.errors import InputError


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, None when it is gone (or a zombie),
    "" when there is no /proc to ask."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        return ""
    try:
        text = stat.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited, waiting for its parent to reap it
        return None
    return fields[19]


def _pid_in_use(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class WatchedProcess:
    def __init__(self, pid: int):
        if pid <= 0:
            raise InputError(f"--exit-with-parent {pid}: not a process id")
        self.pid = pid
        self._started = _start_time(pid)
        if self._started is None or not _pid_in_use(pid):
            raise InputError(f"--exit-with-parent {pid}: no such process is running")

    def alive(self) -> bool:
        if self._started == "":
            return _pid_in_use(self.pid)
        return _start_time(self.pid) == self._started

    def on_exit(self, callback: Callable[[], None], every_s: float, message: str = "") -> threading.Thread:
        """Calls `callback` once, from a daemon thread, within `every_s` of the process's end."""
        pause = threading.Event()  # never set: a sleep

        def watch() -> None:
            while not pause.wait(every_s):
                if not self.alive():
                    if message:
                        print(message, file=sys.stderr, flush=True)
                    callback()
                    return

        thread = threading.Thread(target=watch, name=f"longanim-watch-{self.pid}", daemon=True)
        thread.start()
        return thread
