"""Our pipeline conditions the model exactly as the reference pipeline does (tiny random weights).

One segment, and two segments with the DGLM reading memory and color consistency fusion:
same weights, same color clip, same seed; the latents of every segment and the frames must agree
to a relative difference of 1e-5. The module parity tests cannot see conditioning (which latent
frame holds the reference, the sketch scaling and polarity, the padding slot, seeding, the prompt
and its length); this one can. See tests/longanimation_reference.py for how the reference is run.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import longanimation_reference as R  # noqa: E402
from longanimation_fixtures import tiny_weights_dir  # noqa: E402

TOLERANCE = 1e-5
SIZE = 32  # 4x4 latents, 2x2 tokens
SEGMENT, OVERLAP = 25, 16  # 7 latent frames + the CogVideoX1.5 padding one, as 81 frames give 21 + 1
STEPS = 33  # the reference fuses from step 31 on (`i > 30`): steps 31 and 32, as ours does in the last 2
SEED, CFG = 42, 6.0
PROMPT = "two girls are talking"


@pytest.fixture(scope="module")
def ref():
    if not R.available():
        pytest.skip(f"reference checkout not found at {R.REFERENCE} (set LONGANIMATION_REFERENCE)")
    return R.import_reference()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights_dir(tmp_path_factory)


def color_clip(frames: int) -> np.ndarray:
    from longanim.engine.evaluation.synthetic import make_shot

    shot = make_shot(frames, SIZE, SIZE, 4)
    return np.stack([shot.color(i) for i in range(frames)])


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return ((a - b).norm() / b.norm()).item()


def pipeline_parity(ref, weights, tmp_path, segments: int, *, segment: int = SEGMENT, memory=None,
                    bank=None) -> dict:
    """Run both pipelines; figures per segment (latents and frames) and the sketch masks' agreement.

    The DGLM reads the stand-in memory on both sides unless `bank(ours)` (our pipeline's memory bank,
    given our pipeline, loaded with its memory encoder) and `memory(generated frames)` (the reference's)
    are given."""
    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory
    from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline, Settings

    ours = LongAnimationPipeline.from_weights(weights, memory=bank is not None)
    inner = ours.transformer.config.num_attention_heads * ours.transformer.config.attention_head_dim
    ours.dglm = R.randomize(DynamicGlobalLocalMemory(dim=inner, memory_dim=R.MEMORY_DIM, heads=2, head_dim=16), 3)
    ours.dglm.eval()
    pipe = R.reference_pipeline(ref, ours, None)
    glm = R.reference_glm(ref, ours.dglm)
    detector = R.reference_detector(ref, ours.lineart.state_dict())

    frames = segment + (segments - 1) * (segment - OVERLAP)
    video = color_clip(frames)
    expected = R.run_reference(ref, pipe, detector, glm, video, PROMPT, seed=SEED, steps=STEPS, guidance_scale=CFG,
                               segment_length=segment, overlap=OVERLAP, work=tmp_path, memory=memory)

    masks = ours.lineart.line_masks(video)
    with torch.no_grad():
        ref_masks = ~(detector(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0)[:, 0] > 0.78).numpy()
    captured, decoded = [], []
    denoise, decode = ours._denoise_segment, ours.decode

    def spy_denoise(*args, **kwargs):
        latents, tails = denoise(*args, **kwargs)
        captured.append(latents.clone())
        return latents, tails

    def spy_decode(latents):
        video = decode(latents)
        decoded.append(video.clone())
        return video

    ours._denoise_segment, ours.decode = spy_denoise, spy_decode
    settings = Settings(steps=STEPS, guidance_scale=CFG, segment_length=segment, overlap=OVERLAP, fusion_steps=2,
                        fusion_latents=4, prompt=PROMPT, seed=SEED)
    our_bank = R.StandInBank() if bank is None else bank(ours)
    out = dict(ours.generate_run(lambda i: masks[i], frames, video[0], masks[0], our_bank, settings))
    figures = {"masks_equal": bool(np.array_equal(masks, ref_masks)), "line_fraction": float(masks.mean()),
               "segments": []}
    from longanim.engine.backends.longanimation.planning import plan_segments

    plan = plan_segments(frames, segment, OVERLAP)
    for seg, latents, video, (ref_latents, ref_video, ref_rgb) in zip(plan, captured, decoded, expected):
        kept = [p - seg.start for p in range(seg.keep_from, seg.keep_to)]
        ours_rgb = np.stack([out[p] for p in range(seg.keep_from, seg.keep_to)]).astype(int)
        figures["segments"].append({
            "latents": rel(latents, ref_latents), "frames": rel(video, ref_video),
            # uint8 output: a value within 1e-6 of a rounding boundary may land one level apart
            "uint8_max_diff": int(np.abs(ours_rgb - ref_rgb[kept]).max()),
            "uint8_differing": float((ours_rgb != ref_rgb[kept]).mean()),
        })
    return figures


def test_one_segment_matches_the_reference(ref, weights, tmp_path):
    figures = pipeline_parity(ref, weights, tmp_path, 1)
    assert figures["masks_equal"] and 0.02 < figures["line_fraction"] < 0.98  # a real sketch, not blank
    (seg,) = figures["segments"]
    assert seg["latents"] <= TOLERANCE and seg["frames"] <= TOLERANCE
    assert seg["uint8_max_diff"] <= 1 and seg["uint8_differing"] < 1e-3


def test_two_segments_with_memory_and_fusion_match_the_reference(ref, weights, tmp_path):
    figures = pipeline_parity(ref, weights, tmp_path, 2)
    assert figures["masks_equal"]
    assert len(figures["segments"]) == 2
    for seg in figures["segments"]:
        assert seg["latents"] <= TOLERANCE and seg["frames"] <= TOLERANCE
        assert seg["uint8_max_diff"] <= 1 and seg["uint8_differing"] < 1e-3


if __name__ == "__main__":  # prints the figures recorded in bench/results/longanimation_parity.md
    import tempfile
    from pathlib import Path

    from longanimation_fixtures import write_tiny_weights

    reference = R.import_reference()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_weights(Path(tmp) / "weights")
        for n in (1, 2):
            f = pipeline_parity(reference, root, Path(tmp) / f"run{n}", n)
            print(f"{n} segment(s): masks equal {f['masks_equal']} (lines {f['line_fraction']:.3f}); " + "; ".join(
                f"segment {i + 1}: latents rel diff {s['latents']:.3e}, frames rel diff {s['frames']:.3e}, "
                f"uint8 max diff {s['uint8_max_diff']} ({s['uint8_differing']:.2e} of values)"
                for i, s in enumerate(f["segments"])))
    sys.exit(0)
