"""bench/bench_longanimation_gpu.py runs end to end (--smoke, toy sizes on CPU), so it cannot rot unseen
while no GPU is at hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_longanimation_gpu.py"


def test_smoke_run_writes_a_report(tmp_path):
    out = tmp_path / "report.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--timed-steps", "1", "--warmup", "0",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "| 32x48 | stock |" in text and "| 32x48 | ours |" in text
    assert "SketchDiT+DGLM overhead" in text
    assert not list(tmp_path.glob("*.tmp"))
