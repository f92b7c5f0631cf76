"""The longanimation backend end to end on tiny random checkpoints in the release layout (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from longanimation_fixtures import random_color, random_lineart, tiny_weights_dir  # noqa: E402

from longanim.engine.backends import create_backend  # noqa: E402
from longanim.engine.backends.base import BackendError, Cancelled, Keyframe  # noqa: E402
from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline  # noqa: E402
from longanim.engine.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def backend(weights):
    return create_backend("longanimation", weights=str(weights), tiny=True, device="cpu")


def _shot(n, first=1001, seed=0):
    return [(first + i, f) for i, f in enumerate(random_lineart(n, seed=seed))]


def _denoise_events(events):
    return [e for e in events if isinstance(e, dict) and e.get("stage") == "denoise"]


def test_long_shot_streams_segments_with_fusion(backend, monkeypatch):
    fused = []
    original = LongAnimationPipeline._fuse

    def spy(latents, pad, previous):
        fused.append(previous.shape[1])
        return original(latents, pad, previous)

    monkeypatch.setattr(LongAnimationPipeline, "_fuse", staticmethod(spy))
    log = []
    frames = _shot(100)
    key = Keyframe(1001, random_color(seed=1))
    out = []
    for colored in backend.colorize(frames, [key], progress=log.append):
        log.append("yield")
        out.append(colored)

    assert [c.number for c in out] == [n for n, _ in frames]
    assert all(c.rgb.shape == (16, 16, 3) and c.rgb.dtype == np.uint8 for c in out)
    assert all(c.confidence.shape == (16, 16) for c in out)
    np.testing.assert_array_equal(out[0].rgb, key.color)  # the painted keyframe is kept as painted
    steps = _denoise_events(log)
    segments = steps[-1]["segments"]
    assert segments >= 2
    s = backend.settings
    assert len(steps) == segments * s.steps  # progress per denoising step
    assert len(fused) == (segments - 1) * s.fusion_steps and set(fused) == {s.fusion_latents}
    # Per-segment streaming: frames come out before the last segment is denoised.
    assert log.index("yield") < log.index(steps[-1])
    assert len({c.rgb.tobytes() for c in out[1:]}) > 50  # not one frame repeated


def test_fusion_changes_only_frames_after_the_first_segment(weights):
    frames = _shot(30)
    keys = [Keyframe(1001, random_color(seed=2))]
    runs = {}
    for latents in (0, 2):
        b = create_backend("longanimation", weights=str(weights), tiny=True, device="cpu", fusion_latents=latents)
        runs[latents] = [c.rgb for c in b.colorize(frames, keys)]
    first_segment_kept = 17 - 8 + 4  # positions 0..12 come from segment 1 (17 frames, overlap 8)
    for a, b in zip(runs[0][:first_segment_kept], runs[2][:first_segment_kept]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0][first_segment_kept:], runs[2][first_segment_kept:]))


def test_fusion_weights_follow_the_release():
    latents = torch.zeros(1, 8, 2, 1, 1)
    previous = torch.ones(1, 4, 2, 1, 1)
    fused = LongAnimationPipeline._fuse(latents, 1, previous)
    weights = fused[0, :, 0, 0, 0].tolist()
    assert weights == pytest.approx([0, 0, 0.8, 0.6, 0.4, 0.2, 0, 0])  # index 0: padding, 1: the reference frame


@pytest.mark.parametrize("n", [1, 7])
def test_shot_shorter_than_one_segment(backend, n):
    log = []
    out = list(backend.colorize(_shot(n, first=0), [Keyframe(0, random_color())], progress=log.append))
    assert [c.number for c in out] == list(range(n))
    assert {e["segments"] for e in _denoise_events(log)} == {1}


def test_keyframes_in_the_middle(backend, monkeypatch):
    references = []
    original = LongAnimationPipeline.generate_run

    def spy(self, masks, length, reference_rgb, *args, **kwargs):
        references.append((length, reference_rgb.copy()))
        return original(self, masks, length, reference_rgb, *args, **kwargs)

    monkeypatch.setattr(LongAnimationPipeline, "generate_run", spy)
    k12, k22 = Keyframe(12, random_color(seed=12)), Keyframe(22, random_color(seed=22))
    log = []
    out = list(backend.colorize(_shot(30, first=0), [k22, k12], progress=log.append))
    assert [c.number for c in out] == list(range(30))
    np.testing.assert_array_equal(out[12].rgb, k12.color)
    np.testing.assert_array_equal(out[22].rgb, k22.color)
    assert out[12].info["keyframe"] and not out[13].info["keyframe"]
    # Backward from 12 to 0, forward 12..21, forward 22..29; each run starts from its own keyframe.
    assert [length for length, _ in references] == [13, 10, 8]
    for (_, ref), key in zip(references, [k12, k12, k22]):
        np.testing.assert_array_equal(ref, key.color)
    assert {e["runs"] for e in _denoise_events(log)} == {3}


def test_cancel_between_steps(backend):
    log = []

    def cancelled():
        return len(_denoise_events(log)) >= 3

    with pytest.raises(Cancelled, match="step 4"):
        list(backend.colorize(_shot(20), [Keyframe(1001, random_color())], progress=log.append, cancelled=cancelled))
    assert len(_denoise_events(log)) == 3


def test_bad_inputs_are_named(backend, weights, tmp_path):
    with pytest.raises(InputError, match="keyframe"):
        list(backend.colorize(_shot(3), []))
    frames = _shot(3)
    frames[1] = (frames[1][0], np.zeros((8, 16, 3), np.uint8))
    with pytest.raises(InputError, match="frame 1002"):
        list(backend.colorize(frames, [Keyframe(1001, random_color())]))
    with pytest.raises(BackendError, match="segment length"):
        create_backend("longanimation", weights=str(weights), segment_length=80)
    with pytest.raises(BackendError, match="not found"):
        create_backend("longanimation", weights=str(tmp_path / "nowhere"))
    with pytest.raises(BackendError, match="multiple of 16"):
        create_backend("longanimation", weights=str(weights), height=100)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda_is_an_error(weights):
    b = create_backend("longanimation", weights=str(weights), tiny=True, device="cuda:1")
    with pytest.raises(BackendError, match="CUDA is not available"):
        list(b.colorize(_shot(2), [Keyframe(1001, random_color())]))


def test_offload_mode_and_model_resolution_option(weights):
    b = create_backend("longanimation", weights=str(weights), tiny=True, device="cpu", offload=True,
                       height=32, width=16)
    out = list(b.colorize(_shot(5), [Keyframe(1001, random_color())]))
    assert len(out) == 5 and out[2].rgb.shape == (16, 16, 3)  # back at the input size
    assert b.pipeline().offload and next(b.pipeline().vae.parameters()).device.type == "cpu"


def test_memory_bank_is_incremental_and_bounded():
    from longanim.engine.backends.longanimation.memory_encoder import LightMemoryEncoder, MemoryBank
    from longanimation_fixtures import TINY_MEMORY_ENCODER

    encoder = LightMemoryEncoder(**TINY_MEMORY_ENCODER).eval()
    calls = []
    original = encoder.encode
    encoder.encode = lambda frames: calls.append(len(frames)) or original(frames)
    bank = MemoryBank(encoder, global_frames=8, local_frames=4)
    for start in range(0, 100, 10):
        bank.add([random_color(seed=start + i) for i in range(10)])
    assert calls == [10] * 10  # each frame encoded once, when added
    assert len(bank) == 100 and len(bank._held) <= 16
    global_memory, local_memory = bank.memory("cpu", torch.float32)
    tokens = TINY_MEMORY_ENCODER["tokens_per_frame"]
    assert global_memory.shape == (1, 2, 3, 8 * tokens, TINY_MEMORY_ENCODER["kv_dim"])
    assert local_memory.shape == (1, 2, 3, 4 * tokens, TINY_MEMORY_ENCODER["kv_dim"])
    # Local memory is the latest frames' tokens.
    with torch.no_grad():
        last = original(bank._to_tensor([bank._resize(random_color(seed=99))]))
    torch.testing.assert_close(local_memory[0, :, :, -tokens:], last)
