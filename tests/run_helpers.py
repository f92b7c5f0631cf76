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


def wait_for_frames(folder: Path, count: int, proc: subprocess.Popen, limit: float = 120.0) -> None:
    """Until `count` frames of `proc`'s run are in `folder` (the moment to interrupt it)."""
    deadline = time.monotonic() + limit
    while len(list(folder.glob("shot.*.png"))) < count:
        assert proc.poll() is None, "the run ended before it was interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
