"""The whole long-video loop at parity with the reference, the DGLM fed by Video-XL on both sides.

test_longanimation_pipeline_parity.py feeds both DGLMs one stand-in memory; this test joins it with
the Video-XL parity test. The reference side is the script's own path: its Video-XL code (the
reference LlavaQwenForCausalLM holding the same tiny random weights), its prompt read from the
script and tokenized by its `tokenizer_image_token`, its sampling (650 frames evenly over the
frames generated so far, the local memory the last 20 of those, through the CLIP image processor).
Ours is what the backend runs: the Video-XL encoder loaded from the weights folder by
`LongAnimationPipeline.from_weights`, `memory_bank` (a FrameStore) seeing each kept frame once.

Segments of 33 frames (9 latent frames + the padding one): segment 1 leaves 24 frames behind it, so
segment 2's local memory (the last 20 picks) is not its global memory (24). The memory both DGLMs
read is compared too, not only the frames it steers.
"""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import longanimation_reference as R  # noqa: E402
from longanimation_fixtures import tiny_weights_dir  # noqa: E402
from test_longanimation_pipeline_parity import TOLERANCE, pipeline_parity, rel  # noqa: E402
from test_longanimation_videoxl import (  # noqa: E402
    DGLM_CLIP,
    DGLM_RATIO,
    DGLM_SCALE,
    DGLM_VIDEOXL,
    write_tiny_release,
)

SEGMENT = 33  # 24 frames generated before segment 2: more than the local memory's 20
LEFT_BEHIND = SEGMENT - 1 - 8  # segment 1 keeps frames 1..24 (the script's autoreg_video_save)


@pytest.fixture(scope="module")
def ref():
    if not R.available() or not (R.REFERENCE / "videoxl" / "mm_utils.py").is_file():
        pytest.skip(f"reference checkout not found at {R.REFERENCE} (set LONGANIMATION_REFERENCE)")
    return R.import_reference()


@pytest.fixture(scope="module")
def videoxl_reference(ref):
    from test_longanimation_videoxl_parity import import_reference

    return import_reference()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The tiny weights folder plus a Video-XL release (kv 4 x 128 = the reference DGLM's 512) in it."""
    root = tmp_path_factory.mktemp("videoxl_pipeline") / "weights"
    shutil.copytree(tiny_weights_dir(tmp_path_factory), root)
    write_tiny_release(root, lm=DGLM_VIDEOXL, clip_config=DGLM_CLIP, ratio=DGLM_RATIO, scale=DGLM_SCALE)
    return root


class Recorded:
    """The (global, local) memories each side handed its DGLM, in order."""

    def __init__(self):
        self.ours: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.reference: list[tuple[torch.Tensor, torch.Tensor]] = []


def run_joined(ref, videoxl_reference, weights, tmp_path, segments: int):
    from test_longanimation_videoxl_parity import build_reference, generate_memory
    from transformers import AutoTokenizer

    from longanim.engine.backends.longanimation.memory_encoder import memory_bank
    from longanim.engine.backends.longanimation.videoxl import VideoXLMemory, resolve_videoxl_dir

    llava_qwen, Memory = videoxl_reference
    videoxl_dir = resolve_videoxl_dir(weights)
    loaded = VideoXLMemory.from_pretrained(videoxl_dir, dtype=torch.float32)  # only its weights go to the reference
    video_model = build_reference(llava_qwen, Memory, tmp_path / "videoxl", loaded, lm=DGLM_VIDEOXL,
                                  clip_config=DGLM_CLIP, ratio=DGLM_RATIO)
    input_ids = R.script_input_ids(AutoTokenizer.from_pretrained(str(videoxl_dir)))
    recorded = Recorded()

    def reference_memory(generated):
        memory = R.script_videoxl_memory(video_model, input_ids, generated, generate_memory)
        recorded.reference.append(memory)
        return memory

    def our_bank(pipe):
        bank = memory_bank(pipe.memory_encoder)  # the backend's bank, the release's 650 / 20
        read = bank.memory

        def memory(device, dtype):
            got = read(device, dtype)
            recorded.ours.append(got)
            return got

        bank.memory = memory
        return bank

    figures = pipeline_parity(ref, weights, tmp_path / "run", segments, segment=SEGMENT, memory=reference_memory,
                              bank=our_bank)
    return figures, recorded


def test_one_segment_with_the_video_xl_encoder_loaded(ref, videoxl_reference, weights, tmp_path):
    figures, recorded = run_joined(ref, videoxl_reference, weights, tmp_path, 1)
    assert recorded.ours == recorded.reference == []  # the first segment reads no memory, on either side
    assert figures["masks_equal"] and 0.02 < figures["line_fraction"] < 0.98
    (seg,) = figures["segments"]
    assert seg["latents"] <= TOLERANCE and seg["frames"] <= TOLERANCE
    assert seg["uint8_max_diff"] <= 1 and seg["uint8_differing"] < 1e-3


def test_two_segments_with_video_xl_memory_and_fusion(ref, videoxl_reference, weights, tmp_path):
    figures, recorded = run_joined(ref, videoxl_reference, weights, tmp_path, 2)
    # the memory segment 2's DGLM reads: the same Video-XL cache on both sides, over 24 frames and their last 20
    ((ours_global, ours_local),) = recorded.ours
    ((ref_global, ref_local),) = recorded.reference
    prompt = ours_global.shape[3] - LEFT_BEHIND * 16 // DGLM_RATIO
    assert ours_global.shape == ref_global.shape == (1, 2, 3, prompt + LEFT_BEHIND * 2, 512)
    assert ours_local.shape == ref_local.shape == (1, 2, 3, prompt + 20 * 2, 512)
    assert rel(ours_global, ref_global) <= TOLERANCE and rel(ours_local, ref_local) <= TOLERANCE
    assert 0.1 < ref_global.std().item() < 10  # real features, not vanishing or exploding ones
    assert figures["masks_equal"] and len(figures["segments"]) == 2
    for seg in figures["segments"]:
        assert seg["latents"] <= TOLERANCE and seg["frames"] <= TOLERANCE
        assert seg["uint8_max_diff"] <= 1 and seg["uint8_differing"] < 1e-3


if __name__ == "__main__":  # prints the figures recorded in bench/results/longanimation_parity.md
    import sys
    import tempfile
    from pathlib import Path

    from longanimation_fixtures import write_tiny_weights
    from test_longanimation_videoxl_parity import import_reference

    reference, videoxl = R.import_reference(), import_reference()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_weights(Path(tmp) / "weights")
        write_tiny_release(root, lm=DGLM_VIDEOXL, clip_config=DGLM_CLIP, ratio=DGLM_RATIO, scale=DGLM_SCALE)
        for n in (1, 2):
            f, rec = run_joined(reference, videoxl, root, Path(tmp) / f"run{n}", n)
            memory = "".join(f"; segment 2 memory rel diff: global {rel(o[0], r[0]):.3e} {tuple(o[0].shape)}, "
                             f"local {rel(o[1], r[1]):.3e} {tuple(o[1].shape)}"
                             for o, r in zip(rec.ours, rec.reference))
            print(f"{n} segment(s): " + "; ".join(
                f"segment {i + 1}: latents rel diff {s['latents']:.3e}, frames rel diff {s['frames']:.3e}, "
                f"uint8 max diff {s['uint8_max_diff']} ({s['uint8_differing']:.2e} of values)"
                for i, s in enumerate(f["segments"])) + memory, flush=True)
    sys.exit(0)
