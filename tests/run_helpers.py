"""What the farm, resume and checkpoint tests compare and watch: a run's output files, and
processes seen through /proc."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def outputs(folder: Path) -> dict[str, bytes]:
    """Every frame and confidence file (report.json holds timings, and hidden files are not output)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name != "report.json"}


def running(pid: int) -> bool:
    """Alive: neither gone nor a zombie (an exited process whose parent has not reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def colorize_pids(marker: str) -> list[int]:
    """Live `longanim colorize` processes (a task's, or the engine's client) writing to `marker`,
    found by their command line in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"colorize" in cmdline and marker.encode() in cmdline and running(int(entry.name)):
                found.append(int(entry.name))
    return found


def wait_for_frames(folder: Path, count: int, proc: subprocess.Popen, limit: float = 120.0) -> None:
    """Until `count` frames of `proc`'s run are in `folder` (the moment to interrupt it)."""
    deadline = time.monotonic() + limit
    while len(list(folder.glob("shot.*.png"))) < count:
        assert proc.poll() is None, "the run ended before it was interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
