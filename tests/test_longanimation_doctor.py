"""`longanim doctor --weights DIR`: a per-component report, non-zero exit when something is broken."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from longanimation_fixtures import tiny_weights_dir  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from longanim.commands import main  # noqa: E402
from longanim.engine.backends.longanimation import weights as W  # noqa: E402


@pytest.fixture
def weights(tmp_path_factory, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir(tmp_path_factory), root)
    return root


def _doctor(capsys, *args):
    code = main(["doctor", *map(str, args)])
    return code, capsys.readouterr().out


def test_good_folder(weights, capsys):
    code, out = _doctor(capsys, "--weights", weights)
    assert code == 0
    assert "all components ok" in out
    for name in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer", "SketchDiT", "DGLM",
                 "memory encoder", "GPU"):
        assert name in out
    assert "[  ok] DGLM (glm_module.safetensors): 97 tensors" in out


def test_broken_folder_names_each_problem(weights, capsys):
    (weights / W.GLM_FILE).unlink()
    tensors = load_file(str(weights / W.CONTROL_FILE))
    tensors["zero_conv.weight"] = tensors["zero_conv.weight"][:, :8].contiguous()
    save_file(tensors, str(weights / W.CONTROL_FILE))
    shutil.rmtree(weights / W.BASE_FOLDER / "vae")
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1
    assert "[FAIL] DGLM (glm_module.safetensors)" in out and "glm_module.safetensors: file not found" in out
    assert "wrong shape for key 'zero_conv.weight': file has [32, 8], model expects [32, 32]" in out
    assert "[FAIL] CogVideoX1.5-5B-I2V/vae" in out and "vae: folder not found" in out
    assert "[  ok] CogVideoX1.5-5B-I2V/transformer" in out
    assert "3 component(s) broken" in out
    assert "GPU" not in out


def test_text_encoder_missing_tensor(weights, capsys):
    (shard,) = W.weight_files(weights / W.BASE_FOLDER / "text_encoder")
    tensors = load_file(str(shard))
    tensors.pop("encoder.final_layer_norm.weight")
    save_file(tensors, str(shard))
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1 and "missing key 'encoder.final_layer_norm.weight'" in out


def test_memory_encoder_only_required_with_memory(weights, capsys):
    shutil.rmtree(weights / W.MEMORY_FOLDER)
    (weights / "Video_XL").mkdir()
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1 and "[FAIL] memory encoder" in out and "Video-XL memory encoder is not implemented yet" in out
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check", "--no-memory")
    assert code == 0 and "not checked (running without memory)" in out


def test_not_a_folder(tmp_path, capsys):
    code, out = _doctor(capsys, "--weights", tmp_path / "nope", "--no-gpu-check")
    assert code == 1 and "not a folder" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report on a machine without CUDA")
def test_gpu_missing_is_a_warning_unless_required(weights, capsys):
    code, out = _doctor(capsys, "--weights", weights)
    assert code == 0 and "[warn] GPU" in out
    code, out = _doctor(capsys, "--weights", weights, "--require-gpu")
    assert code == 1 and "[FAIL] GPU" in out


@pytest.mark.weights
def test_real_release_folder(capsys):
    """Set LONGANIMATION_WEIGHTS to a downloaded release folder."""
    import os

    root = os.environ.get("LONGANIMATION_WEIGHTS")
    if not root:
        pytest.skip("LONGANIMATION_WEIGHTS not set")
    code, out = _doctor(capsys, "--weights", root, "--no-gpu-check")
    assert "818,359,808 parameters" in out and "402,782,208 parameters" in out
