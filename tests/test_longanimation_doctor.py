"""`longanim doctor --weights DIR`: a per-component report, non-zero exit when something is broken."""

from __future__ import annotations

import re
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
                 "line-art network (sk_model.pth)", "memory encoder", "GPU"):
        assert name in out
    assert "[  ok] DGLM (glm_module.safetensors): 97 tensors" in out
    assert "[  ok] line-art network (sk_model.pth): 24 tensors, 4,290,945 parameters" in out
    assert re.search(r"\[  ok\] CogVideoX1.5-5B-I2V/tokenizer: \w+, 29 tokens", out)  # loaded, not just listed
    # The tiny light encoder goes with a DGLM of its own dims: allowed, but never reported as ok.
    assert "[warn] memory encoder (memory_encoder): a LightMemoryEncoder, not Video-XL" in out


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
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1 and "[FAIL] memory encoder" in out
    assert f"{weights / W.VIDEOXL_FOLDER}: not found (Video-XL" in out
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check", "--no-memory")
    assert code == 0 and "not checked (running without memory)" in out


def test_a_light_encoder_that_does_not_fit_the_dglm_fails(weights, capsys):
    """Release-sized DGLM (no glm_module.json) reads 512-d memory; the tiny encoder makes 8-d."""
    import json

    from longanimation_fixtures import TINY_MEMORY_ENCODER

    (weights / W.GLM_FILE).with_suffix(".json").unlink()
    config = json.loads((weights / W.MEMORY_FOLDER / "config.json").read_text())
    assert config["kv_dim"] == TINY_MEMORY_ENCODER["kv_dim"] != 512
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1
    assert "kv_dim 8 does not match the DGLM's memory_dim 512" in out


def test_light_encoder_with_release_dims_names_video_xl(weights, capsys):
    """Release-sized DGLM: it was trained on Video-XL, so even a fitting light encoder is meaningless."""
    import json

    (weights / W.GLM_FILE).with_suffix(".json").unlink()
    config_path = weights / W.MEMORY_FOLDER / "config.json"
    config = json.loads(config_path.read_text())
    config.update(kv_dim=512)
    config_path.write_text(json.dumps(config))
    # Shapes of the encoder folder follow its config: rewrite its weights at kv_dim 512.
    from longanim.engine.backends.longanimation.memory_encoder import LightMemoryEncoder

    shutil.rmtree(weights / W.MEMORY_FOLDER)
    LightMemoryEncoder(**{k: v for k, v in config.items() if not k.startswith("_")}).save_pretrained(
        weights / W.MEMORY_FOLDER)
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1
    assert "[FAIL] memory encoder (memory_encoder): a LightMemoryEncoder, not Video-XL" in out
    assert "the released DGLM was trained on Video-XL features" in out


def test_video_xl_folder_is_checked_by_its_module(weights, capsys, monkeypatch):
    import types

    (weights / W.VIDEOXL_FOLDER).mkdir(parents=True)
    monkeypatch.setattr(W, "videoxl_module", lambda: None)
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1 and "this build has no Video-XL memory encoder" in out
    seen = []
    fake = types.SimpleNamespace(check_videoxl=lambda root: seen.append(root) or ["vision tower: config.json missing"])
    monkeypatch.setattr(W, "videoxl_module", lambda: fake)
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check")
    assert code == 1 and seen == [weights]
    assert "[FAIL] Video-XL memory encoder (Video_XL/VideoXL_weight_8)" in out and "vision tower" in out


def test_line_art_network_problems_are_named(weights, capsys):
    state = torch.load(str(weights / W.LINEART_FILE), weights_only=True)
    state.pop("model4.1.bias")
    state["model1.0.weight"] = state["model1.0.weight"][:, :32]
    torch.save(state, str(weights / W.LINEART_FILE))
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check", "--no-memory")
    assert code == 1 and "[FAIL] line-art network (sk_model.pth)" in out
    assert "missing key 'model4.1.bias'" in out
    assert "wrong shape for key 'model1.0.weight': file has [128, 32, 3, 3], model expects [128, 64, 3, 3]" in out
    (weights / W.LINEART_FILE).unlink()
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check", "--no-memory")
    assert code == 1 and "sk_model.pth: file not found (the informative-drawings generator" in out


def test_tokenizer_that_cannot_load_is_named(weights, capsys):
    (weights / W.BASE_FOLDER / "tokenizer" / "tokenizer.json").write_text("{not json")
    code, out = _doctor(capsys, "--weights", weights, "--no-gpu-check", "--no-memory")
    assert code == 1 and "[FAIL] CogVideoX1.5-5B-I2V/tokenizer" in out and "cannot load the tokenizer" in out


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
