"""bench/bench_farm.py runs to the end on tiny sizes (--quick) and writes its table; measures nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_farm.py"


def test_bench_farm_quick_writes_both_tables(tmp_path):
    out = tmp_path / "farm.md"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| fresh | process start -> first frame |" in text and "| resumed |" in text
    assert "| engine, resumed |" in text
    assert "| 0 (never) | 0 |" in text and "| 25 | 1 |" in text and "One save timed directly:" in text
