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


def test_smoke_run_with_offload_runs_every_phase_of_the_plan(tmp_path):
    out = tmp_path / "report.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--timed-steps", "1", "--warmup", "0",
                           "--offload", "model", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "## GPU memory plan, offload=model" in text
    for phase, on_device in (("prompt", "text_encoder"), ("memory", "memory_encoder"),
                             ("denoise", "dglm, sketch_dit, transformer"), ("decode", "vae")):
        assert f"| 32x48 | {phase} | {on_device} |" in text


def test_plan_only_counts_the_real_sizes_on_meta(tmp_path):
    out = tmp_path / "plan.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--plan-only", "--resolutions", "576x1024", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "an estimate, not a GPU measurement" in text
    assert "| memory_encoder | 14.63 |" in text and "| transformer | 10.38 |" in text  # Video-XL 7.85B, base 5.57B
    assert "576x1024: largest phase with offload=model" in text
