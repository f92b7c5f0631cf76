"""Released-format weights load strictly: a missing, unexpected or wrongly shaped key is an error naming it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from longanimation_fixtures import tiny_weights_dir  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from longanim.engine.backends.longanimation import weights as W  # noqa: E402
from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline  # noqa: E402

RELEASE_KEYS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "longanimation_release_keys.json"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_weights_dir(tmp_path_factory)


@pytest.fixture
def weights(tiny, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(tiny, root)
    return root


def _release_shapes():
    from accelerate import init_empty_weights

    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory
    from longanim.engine.backends.longanimation.sketch_dit import SketchDiT

    with init_empty_weights():
        return W.model_shapes(SketchDiT()), W.model_shapes(DynamicGlobalLocalMemory())


def test_default_configs_have_the_release_tensors():
    control, glm = _release_shapes()
    assert (len(control), sum(math.prod(s) for s in control.values())) == (157, 818_359_808)
    assert (len(glm), sum(math.prod(s) for s in glm.values())) == (97, 402_782_208)
    assert control["zero_conv.weight"] == (3072, 3072) and "zero_conv.bias" not in control
    assert control["patch_embed.proj.weight"] == (3072, 256)
    assert glm["proj_out"] == (3072, 3072) and glm["key_mapping_2.0.weight"] == (1024, 512)
    assert glm["layers.0.0.to_q.weight"] == (3072, 3072) and glm["layers.2.1.1.weight"] == (12288, 3072)


@pytest.mark.skipif(not RELEASE_KEYS.is_file(), reason="release key list not present")
def test_default_configs_match_the_release_key_list_exactly():
    release = json.loads(RELEASE_KEYS.read_text())
    control, glm = _release_shapes()
    assert W.compare_shapes(control, {k: tuple(v) for k, v in release["control_module"].items()}) == []
    assert W.compare_shapes(glm, {k: tuple(v) for k, v in release["glm_module"].items()}) == []


def test_tiny_weights_load(weights):
    pipe = LongAnimationPipeline.from_weights(weights)
    assert len(pipe.sketch_dit.transformer_blocks) == 2
    stored = load_file(str(weights / W.GLM_FILE))
    torch.testing.assert_close(pipe.dglm.proj_out.detach(), stored["proj_out"])


def _edit(path: Path, change) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize(
    "target,change,message",
    [
        (W.CONTROL_FILE, lambda t: t.pop("zero_conv.weight"), "missing key 'zero_conv.weight'"),
        (W.CONTROL_FILE, lambda t: t.update({"zero_conv.bias": torch.zeros(32)}), "unexpected key 'zero_conv.bias'"),
        (W.GLM_FILE, lambda t: t.update({"proj_out": torch.zeros(32, 16)}),
         "wrong shape for key 'proj_out': file has [32, 16], model expects [32, 32]"),
        (W.GLM_FILE, lambda t: t.update({"module.proj_out": t.pop("proj_out")}), "unexpected key 'module.proj_out'"),
    ],
)
def test_release_files_load_strictly(weights, target, change, message):
    _edit(weights / target, change)
    with pytest.raises(W.WeightsError) as err:
        LongAnimationPipeline.from_weights(weights)
    assert message in str(err.value) and target in str(err.value)


def test_base_transformer_is_checked_strictly(weights):
    folder = weights / W.BASE_FOLDER / "transformer"
    (shard,) = W.weight_files(folder)
    _edit(shard, lambda t: t.pop("proj_out.weight"))
    with pytest.raises(W.WeightsError, match="missing key 'proj_out.weight'"):
        LongAnimationPipeline.from_weights(weights)


def test_release_dims_without_overrides_are_named(weights):
    (weights / W.GLM_FILE).with_suffix(".json").unlink()  # tiny file, release-sized model
    with pytest.raises(W.WeightsError) as err:
        LongAnimationPipeline.from_weights(weights)
    assert "wrong shape for key 'key_mapping_0.0.weight': file has [8, 8], model expects [1024, 512]" in str(err.value)
    assert "more wrongly shaped keys" in str(err.value)  # long lists are cut, not dumped


def test_unreadable_file_is_named(weights):
    (weights / W.CONTROL_FILE).write_bytes(b"not safetensors")
    with pytest.raises(W.WeightsError, match="control_module.safetensors: not a readable safetensors file"):
        LongAnimationPipeline.from_weights(weights)
