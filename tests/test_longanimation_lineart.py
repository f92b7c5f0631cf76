"""The line-art network: the checkpoint's keys, strict loading, the release's cut and polarity."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import longanimation_reference as R  # noqa: E402
from longanimation_fixtures import write_lineart_network  # noqa: E402

from longanim.engine.backends.longanimation import lineart_network as L  # noqa: E402
from longanim.engine.backends.longanimation.pipeline import sketch_pixels  # noqa: E402
from longanim.engine.backends.longanimation.weights import WeightsError  # noqa: E402

# sk_model.pth as published (informative-drawings Generator(3, 1, n_residual_blocks=3)).
CHECKPOINT_KEYS = {
    "model0.1.weight": (64, 3, 7, 7), "model0.1.bias": (64,),
    "model1.0.weight": (128, 64, 3, 3), "model1.0.bias": (128,),
    "model1.3.weight": (256, 128, 3, 3), "model1.3.bias": (256,),
    **{f"model2.{b}.conv_block.{i}.{p}": (256, 256, 3, 3) if p == "weight" else (256,)
       for b in range(3) for i in (1, 5) for p in ("weight", "bias")},
    "model3.0.weight": (256, 128, 3, 3), "model3.0.bias": (128,),
    "model3.3.weight": (128, 64, 3, 3), "model3.3.bias": (64,),
    "model4.1.weight": (1, 64, 7, 7), "model4.1.bias": (1,),
}


@pytest.fixture
def checkpoint(tmp_path):
    return write_lineart_network(tmp_path / "sk_model.pth")


def test_keys_and_shapes_are_the_checkpoints():
    assert L.expected_shapes() == CHECKPOINT_KEYS
    assert sum(math.prod(s) for s in CHECKPOINT_KEYS.values()) == 4_290_945


def test_loads_strictly(checkpoint):
    net = L.load_lineart_network(checkpoint)
    stored = torch.load(str(checkpoint), weights_only=True)
    torch.testing.assert_close(net.model4[1].bias, stored["model4.1.bias"])


@pytest.mark.parametrize("change,message", [
    (lambda s: s.pop("model2.1.conv_block.5.weight"), "missing key 'model2.1.conv_block.5.weight'"),
    (lambda s: s.update({"model2.3.conv_block.1.bias": torch.zeros(256)}),
     "unexpected key 'model2.3.conv_block.1.bias'"),
    (lambda s: s.update({"model4.1.weight": torch.zeros(3, 64, 7, 7)}),
     "wrong shape for key 'model4.1.weight': file has [3, 64, 7, 7], model expects [1, 64, 7, 7]"),
    (lambda s: s.update({f"module.{k}": s.pop(k) for k in list(s)}), "unexpected key 'module.model0.1.bias'"),
])
def test_wrong_files_are_named(checkpoint, change, message):
    state = torch.load(str(checkpoint), weights_only=True)
    change(state)
    torch.save(state, str(checkpoint))
    with pytest.raises(WeightsError) as err:
        L.load_lineart_network(checkpoint)
    assert message in str(err.value) and "sk_model.pth" in str(err.value)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(WeightsError, match="sk_model.pth: file not found"):
        L.load_lineart_network(tmp_path / "sk_model.pth")
    (tmp_path / "sk_model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch state dict"):
        L.load_lineart_network(tmp_path / "sk_model.pth")
    torch.save([torch.zeros(1)], str(tmp_path / "sk_model.pth"))
    with pytest.raises(WeightsError, match="expected a state dict of tensors, got list"):
        L.load_lineart_network(tmp_path / "sk_model.pth")


def _constant(output: float) -> L.LineartNetwork:
    """A network whose drawing is `output` everywhere: zero weights, the sigmoid's bias set."""
    net = L.LineartNetwork().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.model4[1].bias.fill_(math.log(output / (1 - output)))
    return net


def test_strokes_are_where_the_drawing_is_not_above_the_cut():
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert not _constant(0.79).line_masks(frames).any()  # above 0.78: paper
    assert _constant(0.77).line_masks(frames).all()  # at or under: stroke
    pixels = sketch_pixels([np.array([[True, False]])])
    assert pixels.shape == (1, 3, 1, 2) and pixels[0, :, 0].tolist() == [[1.0, -1.0]] * 3  # strokes +1 on -1


def test_bad_frames_are_named():
    net = _constant(0.5)
    with pytest.raises(ValueError, match="uint8"):
        net.line_masks(np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="multiples of 4"):
        net.line_masks(np.zeros((1, 18, 16, 3), np.uint8))


def test_matches_the_reference_generator(checkpoint):
    if not R.available():
        pytest.skip(f"reference checkout not found at {R.REFERENCE} (set LONGANIMATION_REFERENCE)")
    ref = R.import_reference()
    ours = L.load_lineart_network(checkpoint)
    theirs = R.reference_detector(ref, torch.load(str(checkpoint), weights_only=True))
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
