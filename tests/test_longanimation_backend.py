"""The longanimation backend end to end on tiny random checkpoints in the release layout (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from longanimation_fixtures import random_color, tiny_weights_dir  # noqa: E402

from longanim.engine.backends import create_backend  # noqa: E402
from longanim.engine.backends.base import BackendError, Cancelled, Keyframe  # noqa: E402
from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline  # noqa: E402
from longanim.engine.errors import InputError  # noqa: E402
from longanim.engine.evaluation.synthetic import make_shot  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def backend(weights):
    return create_backend("longanimation", weights=str(weights), tiny=True, device="cpu")


def _shot(n, first=1001, seed=0):
    shot = make_shot(n, 16, 16, seed)
    return [(first + i, shot.lineart(i)) for i in range(n)]


def _key(index, n=100, first=1001, seed=0):
    """The synthetic shot's ground-truth colors at `index`, as an artist's keyframe."""
    return Keyframe(first + index, make_shot(n, 16, 16, seed).color(index))


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
    key = _key(0)
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
    keys = [_key(0, 30)]
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
    out = list(backend.colorize(_shot(n, first=0), [_key(0, n, first=0)], progress=log.append))
    assert [c.number for c in out] == list(range(n))
    assert {e["segments"] for e in _denoise_events(log)} == {1}


def test_keyframes_in_the_middle(backend, monkeypatch):
    references = []
    original = LongAnimationPipeline.generate_run

    def spy(self, masks, length, reference_rgb, *args, **kwargs):
        references.append((length, reference_rgb.copy()))
        return original(self, masks, length, reference_rgb, *args, **kwargs)

    monkeypatch.setattr(LongAnimationPipeline, "generate_run", spy)
    k12, k22 = _key(12, 30, first=0), _key(22, 30, first=0)
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


def test_colorize_through_the_cli(weights, tmp_path):
    from longanim.commands import main

    make_shot(40, 16, 16, 3).save(tmp_path / "shot", kinds=("lineart", "color"), frames=range(40))
    out = tmp_path / "out"
    code = main([
        "colorize", str(tmp_path / "shot" / "lineart"), "--ref", str(tmp_path / "shot" / "color" / "shot.1001.png"),
        "-o", str(out), "--backend", "longanimation", "--set", f"weights={weights}", "--set", "tiny=true",
        "--set", "device=cpu", "-q",
    ])
    assert code == 0
    assert len(list(out.glob("shot.*.png"))) == 40


def test_without_memory_no_encoder_is_needed(weights, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "weights"
    shutil.copytree(weights, root)
    shutil.rmtree(root / "memory_encoder")
    calls = []
    monkeypatch.setattr(LongAnimationPipeline, "_denoise_segment", _spy_memory(calls))
    b = create_backend("longanimation", weights=str(root), tiny=True, device="cpu", memory=False)
    out = list(b.colorize(_shot(30), [_key(0, 30)]))
    assert len(out) == 30 and len(calls) >= 2 and not any(calls)
    with pytest.raises(BackendError, match="memory_encoder"):
        list(create_backend("longanimation", weights=str(root), tiny=True).colorize(_shot(3), [_key(0, 3)]))


def test_memory_is_used_from_the_second_segment(backend, monkeypatch):
    calls = []
    monkeypatch.setattr(LongAnimationPipeline, "_denoise_segment", _spy_memory(calls))
    list(backend.colorize(_shot(30), [_key(0, 30)]))
    assert calls[0] is False and all(calls[1:]) and len(calls) >= 3


def _spy_memory(calls):
    original = LongAnimationPipeline._denoise_segment

    def spy(self, frames, ref_latent, ref_sketch, bank, *args):
        calls.append(bank is not None and len(bank) > 0)
        return original(self, frames, ref_latent, ref_sketch, bank, *args)

    return spy


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_weights_on_gpu_in_bf16(weights):
    b = create_backend("longanimation", weights=str(weights), tiny=True, device="cuda", dtype="bf16")
    out = list(b.colorize(_shot(30), [_key(0, 30)]))
    assert len(out) == 30 and next(b.pipeline().transformer.parameters()).dtype == torch.bfloat16


@pytest.mark.weights
@pytest.mark.gpu
def test_release_weights_short_shot():
    """Set LONGANIMATION_WEIGHTS to a downloaded release folder (runs without memory until Video-XL lands)."""
    import os

    root = os.environ.get("LONGANIMATION_WEIGHTS")
    if not root or not torch.cuda.is_available():
        pytest.skip("needs LONGANIMATION_WEIGHTS and a CUDA device")
    shot = make_shot(20, 1024, 576, 0)
    b = create_backend("longanimation", weights=root, memory=False, offload=True, steps=10)
    out = list(b.colorize([(i, shot.lineart(i)) for i in range(20)], [Keyframe(0, shot.color(0))]))
    assert len(out) == 20 and out[10].rgb.shape == (576, 1024, 3)


def test_keyframe_outside_the_shot_nearest_leads(backend, monkeypatch):
    references = []
    original = LongAnimationPipeline.generate_run

    def spy(self, masks, length, reference_rgb, reference_mask, *args, **kwargs):
        references.append((reference_rgb.copy(), reference_mask.copy()))
        return original(self, masks, length, reference_rgb, reference_mask, *args, **kwargs)

    monkeypatch.setattr(LongAnimationPipeline, "generate_run", spy)
    near, far = Keyframe(990, random_color(seed=5)), Keyframe(2000, random_color(seed=6))
    lines = np.full((16, 16, 3), 255, np.uint8)
    lines[8] = 0
    near = Keyframe(990, near.color, lineart=lines)
    out = list(backend.colorize(_shot(6), [far, near]))
    assert [c.number for c in out] == list(range(1001, 1007))
    ((ref_rgb, ref_mask),) = references
    np.testing.assert_array_equal(ref_rgb, near.color)
    # As the release does, the reference's sketch is the line-art network's reading of its colors.
    pipe = backend.pipeline()
    np.testing.assert_array_equal(ref_mask, pipe.line_masks(near.color[None])[0])
    assert not np.array_equal(ref_mask, pipe.line_masks(lines[None])[0])


def test_streams_through_a_real_engine(weights, tmp_path):
    """Per-segment results and per-step progress through `longanim serve` (a real process)."""
    from engine_helpers import Engine

    shot = make_shot(30, 16, 16, 0)
    frames = [(1001 + i, shot.lineart(i)) for i in range(30)]
    # The engine assigns the device (its one cpu worker) and confines weights to --weights-roots.
    with Engine(tmp_path, "--weights-roots", str(Path(weights).parent)) as engine, engine.client() as client:
        job = client.submit_frames(
            frames, [(1001, shot.color(0))], backend="longanimation", cache=False,
            options={"weights": str(weights), "tiny": True},
        )
        results = list(job.results(timeout=120))
    assert job.state == "done", job.summary
    assert [r.number for r in results] == [n for n, _ in frames]
    assert results[5].rgb.shape == (16, 16, 3)
    local = create_backend("longanimation", weights=str(weights), tiny=True, device="cpu")
    expected = {c.number: c.rgb for c in local.colorize(frames, [Keyframe(1001, shot.color(0))])}
    for r in results:  # same seed, same weights: the engine's frames are the in-process ones
        np.testing.assert_array_equal(r.rgb, expected[r.number])


def test_trained_resolution_by_default(weights):
    assert create_backend("longanimation", weights=str(weights), device="cpu").resolution == (576, 1024)
    assert create_backend("longanimation", weights=str(weights), resolution="768x1360").resolution == (768, 1360)
    assert create_backend("longanimation", weights=str(weights), resolution="input").resolution == (None, None)
    with pytest.raises(BackendError, match="HEIGHTxWIDTH"):
        create_backend("longanimation", weights=str(weights), resolution="720p")


def test_the_crop_maps_back_to_the_input_size_and_numbers(weights):
    shot = make_shot(6, 48, 32, 0)  # 3:2 into a square model size: columns cropped
    frames = [(2001 + 2 * i, shot.lineart(i)) for i in range(6)]
    b = create_backend("longanimation", weights=str(weights), tiny=True, device="cpu", resolution="32x32")
    log = []
    out = list(b.colorize(frames, [Keyframe(2001, shot.color(0))], progress=log.append))
    assert [c.number for c in out] == [n for n, _ in frames]
    assert all(c.rgb.shape == (32, 48, 3) for c in out)
    assert next(e for e in log if isinstance(e, dict) and e.get("stage") == "plan")["model_size"] == [32, 32]
    confidence = out[3].confidence
    assert confidence[:, 8:40].all() and not confidence[:, :8].any() and not confidence[:, 40:].any()
    np.testing.assert_array_equal(out[3].rgb[:, 0], out[3].rgb[:, 7])  # the cut-off margin repeats the edge
    assert out[0].confidence.all()  # the painted keyframe, as painted


def test_a_color_clip_is_sketched_by_the_line_art_network(backend, monkeypatch):
    """The reference's own input: color frames go through the same network as line art does."""
    seen = []
    original = LongAnimationPipeline.generate_run

    def spy(self, masks, length, *args, **kwargs):
        seen.extend(masks(i).copy() for i in range(length))
        return original(self, masks, length, *args, **kwargs)

    monkeypatch.setattr(LongAnimationPipeline, "generate_run", spy)
    shot = make_shot(5, 16, 16, 2)
    colors = [shot.color(i) for i in range(5)]
    out = list(backend.colorize(list(enumerate(colors)), [Keyframe(0, colors[0])]))
    assert len(out) == 5
    expected = backend.pipeline().line_masks(np.stack(colors))
    np.testing.assert_array_equal(np.stack(seen), expected)
    assert 0 < expected.mean() < 1


def test_video_xl_feeds_the_dglm_end_to_end(weights, tmp_path, monkeypatch):
    """A weights folder with a (tiny) Video-XL instead of memory_encoder/: the DGLM reads its cache."""
    import json
    import shutil
    import types

    from longanimation_fixtures import TINY_DGLM, _randomize
    from safetensors.torch import save_file
    from test_longanimation_videoxl import TINY_RATIO, write_tiny_release

    from longanim.engine.backends.longanimation import videoxl
    from longanim.engine.backends.longanimation import weights as W
    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory
    from longanim.engine.backends.longanimation.memory_encoder import FrameStoreBank

    root = tmp_path / "weights"
    shutil.copytree(weights, root)
    shutil.rmtree(root / W.MEMORY_FOLDER)
    write_tiny_release(root)
    kv_dim = 16  # the tiny Video-XL's 2 KV heads x 8
    glm_config = dict(TINY_DGLM, memory_dim=kv_dim)
    glm = _randomize(DynamicGlobalLocalMemory(**glm_config), 5)
    save_file({k: v.contiguous() for k, v in glm.state_dict().items()}, str(root / W.GLM_FILE))
    (root / W.GLM_FILE).with_suffix(".json").write_text(json.dumps(glm_config))
    # The tiny Video-XL compresses 4:1 (4 tokens a frame); the release's ratio 8 is the module's default.
    monkeypatch.setattr(W, "videoxl_module", lambda: types.SimpleNamespace(
        check_videoxl=lambda r: videoxl.check_videoxl(r, compression_ratio=TINY_RATIO),
        load_videoxl_encoder=lambda r, dtype: videoxl.load_videoxl_encoder(r, dtype, compression_ratio=TINY_RATIO),
    ))
    memories = []
    original = LongAnimationPipeline._denoise_segment

    def spy(self, sketch, first, ref_latent, bank, *args):
        assert isinstance(bank, FrameStoreBank)
        if len(bank):
            memories.append(bank.memory("cpu", torch.float32))
        return original(self, sketch, first, ref_latent, bank, *args)

    monkeypatch.setattr(LongAnimationPipeline, "_denoise_segment", spy)
    b = create_backend("longanimation", weights=str(root), tiny=True, device="cpu", dtype="fp32")
    out = list(b.colorize(_shot(30), [_key(0, 30)]))
    assert len(out) == 30 and len(memories) >= 2
    for global_memory, local_memory in memories:
        assert global_memory.shape[:3] == (1, 2, 3) and global_memory.shape[-1] == kv_dim
        assert local_memory.shape[:3] == (1, 2, 3) and local_memory.shape[-1] == kv_dim
    assert memories[1][0].shape[3] > memories[0][0].shape[3]  # more frames read as the shot goes on

    from longanim.engine.backends.longanimation.doctor import check_weights

    checks = {c.name: c for c in check_weights(root)}
    assert checks["Video-XL memory encoder (Video_XL/VideoXL_weight_8)"].status == "ok"
