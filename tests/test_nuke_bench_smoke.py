"""bench/bench_nuke_transfer.py runs end to end on a small frame, so it cannot silently rot.
No timing is asserted: only that every step ran and the file says what is not measured."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_nuke_transfer.py"


def test_the_transfer_bench_writes_its_table_and_its_limits(tmp_path):
    out = tmp_path / "nuke_transfer.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--width", "256", "--height", "135", "--repeats", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "a 256x135 frame" in text and "--width 256" in text
    steps = re.findall(r"^\| (\d[ab]?)\. .* \| ([\d.]+) \|", text, re.M)
    assert [s for s, _ in steps] == ["1", "2a", "2b", "3a", "3b"] and all(float(ms) > 0 for _, ms in steps)
    assert "neither Nuke's Write nor `nuke.sample` has been timed" in text
