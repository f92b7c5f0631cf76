"""The longanimation backend checkpoints its shot at segment ends and resumes byte-identical.

Real files through engine/pipeline's public entry point: a tiny random model colorizes a
40-frame PNG shot with two keyframes (a backward run, a two-segment run, a one-segment
run), once uninterrupted and once cancelled after a checkpoint, then resumed.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from longanim.engine import pipeline  # noqa: E402
from longanim.engine.backends.base import Cancelled  # noqa: E402
from longanim.engine.evaluation.synthetic import make_shot  # noqa: E402
from longanim.engine.pipeline import checkpoints  # noqa: E402
from longanimation_fixtures import TINY_DGLM, _randomize, tiny_weights_dir  # noqa: E402
from run_helpers import outputs  # noqa: E402

N = 40
KEYS = (1004, 1030)  # positions 3 and 29: backward 3..0, forward 3..28 (two segments), forward 29..39


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("la-ckpt-shot")
    make_shot(N, 16, 16, 4).save(root, kinds=("lineart", "color"), frames=range(N))
    return root


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> Path:
    return tiny_weights_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def whole(shot, light, tmp_path_factory) -> Path:
    """One uninterrupted run, checkpoints off: the frames every resumed run must give."""
    out = tmp_path_factory.mktemp("la-ckpt-whole") / "out"
    _run(shot, out, light)
    assert len(outputs(out)) == 2 * N and not checkpoints.checkpoint_path(out, "shot").exists()
    return out


@pytest.fixture(scope="module")
def videoxl_weights(light, tmp_path_factory) -> Path:
    """The tiny weights with a tiny Video-XL instead of the light memory encoder."""
    from longanim.engine.backends.longanimation import weights as W
    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory
    from safetensors.torch import save_file
    from test_longanimation_videoxl import write_tiny_release

    root = tmp_path_factory.mktemp("la-ckpt-videoxl") / "weights"
    shutil.copytree(light, root)
    shutil.rmtree(root / W.MEMORY_FOLDER)
    write_tiny_release(root)
    glm_config = dict(TINY_DGLM, memory_dim=16)  # the tiny Video-XL's 2 KV heads x 8
    glm = _randomize(DynamicGlobalLocalMemory(**glm_config), 5)
    save_file({k: v.contiguous() for k, v in glm.state_dict().items()}, str(root / W.GLM_FILE))
    (root / W.GLM_FILE).with_suffix(".json").write_text(json.dumps(glm_config))
    return root


@pytest.fixture
def tiny_videoxl(monkeypatch):
    """The tiny Video-XL compresses 4:1; the release's ratio is the module's default."""
    from longanim.engine.backends.longanimation import videoxl
    from longanim.engine.backends.longanimation import weights as W
    from test_longanimation_videoxl import TINY_RATIO

    monkeypatch.setattr(W, "videoxl_module", lambda: types.SimpleNamespace(
        check_videoxl=lambda r: videoxl.check_videoxl(r, compression_ratio=TINY_RATIO),
        load_videoxl_encoder=lambda r, dtype: videoxl.load_videoxl_encoder(r, dtype, compression_ratio=TINY_RATIO),
    ))


def _refs(shot: Path) -> list:
    return [pipeline.RefSpec(shot / "color" / f"shot.{n}.png", n) for n in KEYS]


def _run(shot, out, weights, **kwargs) -> pipeline.ShotReport:
    options = dict(weights=str(weights), tiny=True, device="cpu", dtype="fp32")
    options.update(kwargs.pop("options", {}))
    return pipeline.colorize_shot(shot / "lineart", _refs(shot), out, backend="longanimation",
                                  backend_options=options, **kwargs)


def _spy_saves(monkeypatch) -> list[int]:
    saved: list[int] = []
    real = checkpoints.save_checkpoint

    def spy(path, identity, frame, *args, **kwargs):
        saved.append(frame)
        return real(path, identity, frame, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_checkpoint", spy)
    return saved


def _cancel_after(frame: int, monkeypatch):
    """Cancelled once the pipeline has handed out `frame` (the backend reads the flag too, inside
    a segment's denoising steps, so a count of polls would not say where the run is)."""
    handed_out: list[int] = [0]
    real = checkpoints.CheckpointSaver.frame_computed

    def spy(self, n, snapshot, last):
        handed_out[0] = n
        return real(self, n, snapshot, last)

    monkeypatch.setattr(checkpoints.CheckpointSaver, "frame_computed", spy)
    return lambda: handed_out[0] >= frame


@pytest.mark.parametrize("cut, checkpoint", [(1020, 1016), (1031, 1029)])
def test_a_cancelled_shot_resumes_byte_identical(shot, light, whole, tmp_path, monkeypatch, cut, checkpoint):
    saved = _spy_saves(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        _run(shot, out, light, checkpoint_every=1, cancelled=_cancel_after(cut, monkeypatch))
    # States exist only where a segment's frames have all come out: after the backward run
    # (1001-1003), the first forward segment (to 1016) and the second (to 1029).
    assert saved == [f for f in (1003, 1016, 1029) if f <= cut], saved
    assert outputs(out) != outputs(whole)
    report = _run(shot, out, light, checkpoint_every=1, resume=True)
    assert report.start["mode"] == "resumed" and report.start["checkpoint_frame"] == checkpoint
    assert outputs(out) == outputs(whole)


def test_a_checkpoint_from_other_options_is_refused(shot, light, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        _run(shot, out, light, checkpoint_every=1, cancelled=_cancel_after(1020, monkeypatch))
    with pytest.raises(checkpoints.CheckpointMismatch, match="cannot resume.*seed"):
        _run(shot, out, light, checkpoint_every=1, resume=True, options={"seed": 7})


def test_video_xl_memory_resumes_byte_identical(shot, videoxl_weights, tiny_videoxl, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    _run(shot, whole, videoxl_weights)
    out = tmp_path / "out"
    saved = _spy_saves(monkeypatch)
    with pytest.raises(Cancelled):
        _run(shot, out, videoxl_weights, checkpoint_every=1, cancelled=_cancel_after(1020, monkeypatch))
    assert saved[-1] == 1016
    with np.load(checkpoints.checkpoint_path(out, "shot"), allow_pickle=False) as z:
        assert "state/bank/frames" in z.files and z["state/bank/count"] > 0  # the frame store's squares
    report = _run(shot, out, videoxl_weights, checkpoint_every=1, resume=True)
    assert report.start["checkpoint_frame"] == 1016
    assert outputs(out) == outputs(whole)


def test_bf16_state_travels_as_its_bits():
    from longanim.engine.backends.longanimation.memory_encoder import (
        pack_tensor,
        unpack_tensor,
    )

    t = torch.randn(3, 5).to(torch.bfloat16)
    bits, name = pack_tensor(t)
    assert bits.dtype == np.uint16 and str(name) == "bfloat16"
    back = unpack_tensor(bits, name)
    assert back.dtype == torch.bfloat16 and torch.equal(back.view(torch.int16), t.view(torch.int16))
    with pytest.raises(ValueError, match="uint16"):
        unpack_tensor(bits.astype(np.float32), name)


def test_memory_bank_state_round_trip_serves_the_same_memory():
    from longanim.engine.backends.longanimation.memory_encoder import (
        LightMemoryEncoder,
        MemoryBank,
    )
    from longanimation_fixtures import TINY_MEMORY_ENCODER

    encoder = LightMemoryEncoder(**TINY_MEMORY_ENCODER).eval()
    bank = MemoryBank(encoder, global_frames=3, local_frames=2)
    rng = np.random.default_rng(0)
    bank.add([rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(9)])
    state = bank.state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    again = MemoryBank(encoder, global_frames=3, local_frames=2)
    again.restore(state)
    for a, b in zip(bank.memory("cpu", torch.float32), again.memory("cpu", torch.float32)):
        assert torch.equal(a, b)
    more = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(4)]
    bank.add(more)
    again.add(more)
    assert len(again) == len(bank) == 13
    for a, b in zip(bank.memory("cpu", torch.float32), again.memory("cpu", torch.float32)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="global and local"):
        MemoryBank(encoder, global_frames=1, local_frames=1).restore(state)


def test_a_chunk_to_the_shot_end_warms_up_or_resumes_and_equals_the_whole_run(shot, light, whole, tmp_path, monkeypatch):
    """A chunk that ends where the shot ends: without a checkpoint its frames before A are run
    and not written; with one (here, of a cancelled whole-shot run) it goes on from it."""
    chunk = {f"shot.{n}.png" for n in range(1018, 1041)} | {f"confidence/shot.{n}.png" for n in range(1018, 1041)}
    expected = {k: v for k, v in outputs(whole).items() if k in chunk}
    cold = tmp_path / "cold"
    report = _run(shot, cold, light, frames=(1018, 1040))
    assert report.start["mode"] == "warm-up" and outputs(cold) == expected
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        _run(shot, out, light, checkpoint_every=1, cancelled=_cancel_after(1008, monkeypatch))
    for stale in out.rglob("shot.*.png"):
        stale.unlink()  # a chunk folder of its own would hold only its frames
    report = _run(shot, out, light, frames=(1018, 1040), checkpoint_every=1)
    assert report.start["mode"] == "resumed" and report.start["checkpoint_frame"] == 1003
    assert outputs(out) == expected


def test_chunks_that_stop_before_the_shot_end_equal_the_whole_run(shot, light, whole, tmp_path):
    """A segment reads the frames after it and segments are planned from the shot's end: a
    chunk is fed the frames through the shot's end (writing only its own), so it equals the
    whole run, and the next chunk goes on from its checkpoint."""
    expected = outputs(whole)
    out = tmp_path / "out"
    first = _run(shot, out, light, frames=(1010, 1025), checkpoint_every=1)
    assert first.start["mode"] == "warm-up" and first.frames == list(range(1010, 1026))
    second = _run(shot, out, light, frames=(1026, 1040), checkpoint_every=1)
    assert second.start["mode"] == "resumed" and second.start["checkpoint_frame"] <= 1025
    got = outputs(out)
    assert set(got) == {k for k in expected if int(k.split(".")[-2]) >= 1010}
    assert all(got[k] == expected[k] for k in got), [k for k in got if got[k] != expected[k]]

def test_a_cancel_inside_a_segment_stops_there_and_keeps_the_last_checkpoint(shot, light, whole, tmp_path,
                                                                           monkeypatch):
    """The flag turns on while segment 2 (1017-1029) is being denoised: the backend stops at its
    next step, not at the segment's end; frames through 1016 are whole on disk, and the shot
    resumes from the checkpoint there."""
    saved = _spy_saves(monkeypatch)
    handed_out = _cancel_after(1016, monkeypatch)  # True from the pipeline's poll after 1016
    polls_after = []

    def cancelled() -> bool:
        if not handed_out():
            return False
        polls_after.append(1)
        return len(polls_after) > 1  # the pipeline's own poll passes; the backend's next one stops it

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        _run(shot, out, light, checkpoint_every=1, cancelled=cancelled)
    assert saved == [1003, 1016]
    assert sorted(p.name for p in out.glob("shot.*.png")) == [f"shot.{n}.png" for n in range(1001, 1017)]
    report = _run(shot, out, light, checkpoint_every=1, resume=True)
    assert report.start["checkpoint_frame"] == 1016 and outputs(out) == outputs(whole)
