"""farm/longanimation/template.yaml, the GPU bundle. What can run without a GPU runs here:
`openjd check`, its host requirements as a farm reads them, its scripts against template.yaml's,
the unchanged template under `openjd run` stopping at the GPU check, and the whole session (weights
check, one engine with --weights-roots, two tasks through it, the engine stopped) on tiny random
weights on CPU with only the GPU check turned off. Real weights on a real GPU were not run.

Needs `openjd` (pip install openjd-cli); skipped without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from longanimation_fixtures import tiny_weights_dir
from run_helpers import running

FARM = Path(__file__).resolve().parents[1] / "farm"
GPU_TEMPLATE = FARM / "longanimation" / "template.yaml"
CPU_TEMPLATE = FARM / "template.yaml"
OPENJD = shutil.which("openjd")
pytestmark = pytest.mark.skipif(OPENJD is None, reason="openjd-cli is not installed (pip install openjd-cli)")
ENGINE_STARTED = re.compile(r"openjd_status: engine pid (\d+) on (tcp://\S+)")


def _load(path: Path) -> dict:
    import yaml  # openjd-cli's own dependency

    return yaml.safe_load(path.read_text())


def _embedded(template: dict) -> dict[str, str]:
    files = {}
    for env in template.get("jobEnvironments", []):
        for f in env.get("script", {}).get("embeddedFiles", []):
            files[f["filename"]] = f["data"]
    for step in template["steps"]:
        for f in step["script"].get("embeddedFiles", []):
            files[f["filename"]] = f["data"]
    return files


def test_gpu_template_passes_openjd_check():
    done = subprocess.run([OPENJD, "check", str(GPU_TEMPLATE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "passes validation" in done.stdout, done.stdout + done.stderr


def test_the_job_asks_for_a_gpu_with_the_memory_the_model_needs(tmp_path):
    """Host requirements as a farm sees them once the job is made from the template."""
    from openjd.model import create_job, decode_job_template, preprocess_job_parameters

    template = decode_job_template(template=_load(GPU_TEMPLATE), supported_extensions=[])
    (tmp_path / "shots.json").write_text('{"shots": []}')
    (tmp_path / "weights").mkdir()
    params = preprocess_job_parameters(
        job_template=template,
        job_parameter_values={"Shots": str(tmp_path / "shots.json"), "ShotCount": "1",
                              "Weights": str(tmp_path / "weights")},
        job_template_dir=tmp_path, current_working_dir=tmp_path)
    job = create_job(job_template=template, job_parameter_values=params)
    (step,) = job.steps
    amounts = {a.name: a for a in step.hostRequirements.amounts}
    assert amounts["amount.worker.gpu"].min >= 1
    # MiB; 70 GiB is where `longanim doctor` stops asking for offload mode (engine/backends/longanimation/doctor.py)
    assert amounts["amount.worker.gpu.memory"].min == 70 * 1024
    assert [(a.name, a.anyOf) for a in step.hostRequirements.attributes] == [("attr.worker.os.family", ["linux"])]
    # template.yaml (paint, CPU) asks for nothing of the kind
    (cpu_step,) = _load(CPU_TEMPLATE)["steps"]
    assert "hostRequirements" not in cpu_step


def test_gpu_template_runs_the_same_task_and_engine_scripts_as_template_yaml():
    assert _embedded(_load(GPU_TEMPLATE)) == _embedded(_load(CPU_TEMPLATE))
    assert sorted(_embedded(_load(GPU_TEMPLATE))) == ["longanim_engine_session.py", "longanim_shot_task.py"]
    for name, source in _embedded(_load(CPU_TEMPLATE)).items():
        compile(source, name, "exec")  # `openjd check` does not look inside embedded files


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpu-shots")
    for name, seed in (("a", 1), ("b", 2)):
        make_shot(12, 16, 16, seed).save(root / name, kinds=("lineart", "color"))
    return root


def _shot_list(root: Path, out: Path) -> Path:
    path = root / "shots.json"
    path.write_text(json.dumps({"shots": [
        {"name": n, "lineart": f"{n}/lineart", "refs": [f"{n}/color/shot.1001.png:1001"], "output": str(out / n)}
        for n in ("a", "b")]}))
    return path


def _run(template: Path, shot_list: Path, weights: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [OPENJD, "run", str(template), "-p", f"Shots={shot_list}", "-p", "ShotCount=2",
         "-p", f"Python={sys.executable}", "-p", f"Weights={weights}", "-p", "Devices=cpu",
         "-p", "Options=tiny=true"], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is there: the check would pass")
def test_without_a_gpu_the_session_stops_at_the_weights_and_gpu_check(shots, tmp_path_factory, tmp_path):
    weights = tiny_weights_dir(tmp_path_factory)
    done = _run(GPU_TEMPLATE, _shot_list(shots, tmp_path), weights, 300)
    assert done.returncode != 0
    assert "[FAIL] GPU: no CUDA device visible to PyTorch" in done.stdout
    assert "[  ok] SketchDiT (control_module.safetensors)" in done.stdout  # the weights were checked too
    assert not ENGINE_STARTED.search(done.stdout) and not list(tmp_path.rglob("shot.*.png"))


def test_a_session_on_tiny_weights_on_cpu_colorizes_both_shots_through_one_engine(shots, tmp_path_factory, tmp_path):
    """The template with one change, the GPU check off (`--require-gpu` -> `--no-gpu-check`)."""
    weights = tiny_weights_dir(tmp_path_factory)
    text = GPU_TEMPLATE.read_text()
    assert text.count('"--require-gpu"]') == 1
    template = tmp_path / "template_cpu_check.yaml"
    template.write_text(text.replace('"--require-gpu"]', '"--no-gpu-check"]'))
    out = tmp_path / "out"
    done = _run(template, _shot_list(shots, out), weights, 600)
    log = done.stdout
    assert done.returncode == 0 and "Chunks run: 2" in log, log[-4000:] + done.stderr[-2000:]
    assert "all components ok" in log
    (started,) = ENGINE_STARTED.findall(log)
    pid, url = started
    assert f"--devices cpu --weights-roots {weights}" in log
    assert log.count(f"colorized via {url} (job ") == 2
    assert f"engine pid {pid} shut down" in log and not running(int(pid))
    for name in ("a", "b"):
        ref = tmp_path / "ref" / name
        assert main(["colorize", str(shots / name / "lineart"), "--ref", str(shots / name / "color" / "shot.1001.png"),
                     "-o", str(ref), "-q", "--backend", "longanimation", "--set", f"weights={weights}",
                     "--set", "tiny=true", "--set", "device=cpu"]) == 0
        mine = {p.name: p.read_bytes() for p in (out / name).glob("shot.*.png")}
        theirs = {p.name: p.read_bytes() for p in ref.glob("shot.*.png")}
        assert len(mine) == 12 and mine == theirs, name
