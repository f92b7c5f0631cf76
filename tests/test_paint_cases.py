"""The second shot generator (engine/evaluation/synthetic_cases.py), the naive propagation
baseline (engine/evaluation/naive.py) and the bench that sets them against `paint`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from longanim.engine.backends.paint.colorizer import PaintBackend
from longanim.engine.evaluation.naive import NaivePropagation, carry
from longanim.engine.evaluation.synthetic_cases import (
    CASES,
    CaseShot,
    keyframes_of,
    score_run,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("case", CASES)
def test_every_case_renders_truth_that_matches_its_line_art(case):
    shot = CaseShot(case, seed=5, width=160, height=90, num_frames=12)
    f = shot.frame(6)
    assert f.lineart.shape == f.color.shape == (90, 160, 3) and f.lineart.dtype == np.uint8
    # Away from the ink the line art is bare paper and the truth is a flat fill.
    paper = ~f.line
    assert (f.lineart[paper] == 255).all()
    assert (f.owner > 0).any(), "every case shows a character or prop"
    # The same outlines in both images: wherever the line art has ink, so does the truth.
    assert np.array_equal(f.line, f.lineart.min(axis=2) < 255)


def test_frames_are_a_pure_function_of_case_seed_and_index():
    a, b = CaseShot("bodyplans", 3, 160, 90, 10), CaseShot("bodyplans", 3, 160, 90, 10)
    assert np.array_equal(a.frame(7).color, b.frame(7).color)
    assert np.array_equal(a.frame(7).color, a.frame(7).color)
    assert not np.array_equal(a.frame(7).color, CaseShot("bodyplans", 4, 160, 90, 10).frame(7).color)


def test_pinwheel_blades_turn_twelve_degrees_a_frame():
    shot = CaseShot("pinwheel", 0, 320, 180, 31)
    colors = shot.actors[1].colors
    blade = np.array(colors["b0"])

    def angle(i):
        f = shot.frame(i)
        ys, xs = np.nonzero((f.color == blade).all(axis=2))
        zoom, cx, cy = shot.camera(i)
        hub = ((0.25 - cx) * zoom * 180 + 160, (0.0 - cy) * zoom * 180 + 90)
        return math.degrees(math.atan2(ys.mean() - hub[1], xs.mean() - hub[0]))

    turned = (angle(30) - angle(0)) % 360  # 30 frames of 12 degrees: once round
    assert min(turned, 360 - turned) < 3.0
    step = (angle(1) - angle(0)) % 360
    assert abs(step - 12.0) < 3.0


def test_zoom_case_goes_from_half_to_twice():
    shot = CaseShot("zoom", 0, 160, 90, 100)
    zooms = [shot.camera(i)[0] for i in range(100)]
    assert zooms[0] == pytest.approx(1.0)
    assert min(zooms) == pytest.approx(0.5, abs=0.02) and max(zooms) == pytest.approx(2.0, abs=0.02)


def test_keyframes_case_shows_characters_before_the_keyframe_that_first_shows_them():
    shot = CaseShot("keyframes", 0, 240, 135, 60)
    assert shot.keyframes == [0, 30, 59]
    first_seen = {}
    for i in range(60):
        for owner in np.unique(shot.frame(i).owner):
            first_seen.setdefault(int(owner), i)
    # The dog is not in keyframe 0 but walks in before keyframe 30; the bird before keyframe 59.
    assert 0 < first_seen[2] < 30 and 30 < first_seen[3] < 59


def test_buttons_case_has_about_fifty_small_regions():
    shot = CaseShot("buttons", 0, 480, 270, 4)
    assert sum(a.extra.get("buttons", 0) + a.extra.get("spots", 0) for a in shot.actors) == 48


def test_gaps_case_breaks_outlines():
    from longanim.engine.backends.paint.segment import segment

    whole = CaseShot("bodyplans", 1, 320, 180, 4).frame(0)
    broken = CaseShot("gaps", 1, 320, 180, 4).frame(0)
    # The same drawing; the broken one has less ink and, sealed with no gap closing, fewer regions.
    assert broken.line.sum() < whole.line.sum()
    assert segment(broken.lineart, gap_close=0).count < segment(whole.lineart, gap_close=0).count


def test_bad_case_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown case 'nope'"):
        CaseShot("nope")
    with pytest.raises(ValueError, match="at least 32x32"):
        CaseShot("zoom", width=16, height=16)
    with pytest.raises(ValueError, match="outside 0..9"):
        CaseShot("zoom", num_frames=10).frame(10)


def test_carry_takes_the_most_overlapped_region_and_leaves_unseen_ones_white():
    last = np.array([[1, 1, 2, 2], [1, 1, 2, 2]], np.int32)
    last_colors = np.array([[255, 255, 255], [10, 20, 30], [40, 50, 60]], np.uint8)
    now = np.array([[1, 1, 1, 2], [0, 3, 3, 2]], np.int32)
    colors = carry(now, 3, np.where(np.array([[1, 1, 1, 1], [1, 0, 0, 1]], bool), last, 0), last_colors)
    assert colors[1].tolist() == [10, 20, 30]  # two pixels over region 1, one over region 2
    assert colors[2].tolist() == [40, 50, 60]
    assert colors[3].tolist() == [255, 255, 255]  # only over the last frame's lines


def test_naive_is_exact_on_keyframes_and_when_nothing_moves():
    shot = CaseShot("pinwheel", 2, 160, 90, 3)
    frames = {i: shot.frame(i) for i in range(3)}
    still = {i: frames[0] for i in range(3)}  # three copies of the keyframe: nothing moves
    score = score_run(shot, NaivePropagation(), still)
    assert score.frames == 3 and score.accuracy == pytest.approx(1.0, abs=0.002)


def test_naive_loses_what_passes_in_front_that_paint_keeps():
    """The baseline is a floor, not a straw man: it is what plain following gives, and a
    character walking in front of another is where it fails."""
    shot = CaseShot("bodyplans", 0, 240, 135, 40)
    frames = {i: shot.frame(i) for i in range(40)}
    naive = score_run(shot, NaivePropagation(), frames)
    paint = score_run(shot, PaintBackend(), frames)
    assert naive.figure_accuracy < 0.97
    assert paint.figure_accuracy >= naive.figure_accuracy


def test_score_counts_a_wrong_fill_and_the_review_mask():
    shot = CaseShot("pinwheel", 0, 160, 90, 2)
    frames = {i: shot.frame(i) for i in range(2)}

    class Wrong:  # paints every figure pixel black and is unsure of all of frame 1
        def colorize(self, stream, keys):
            from longanim.engine.backends.base import ColoredFrame

            for n, _ in stream:
                rgb = frames[n].color.copy()
                rgb[frames[n].owner > 0] = 0
                conf = np.full(rgb.shape[:2], 1.0 if n == 0 else 0.0, np.float32)
                yield ColoredFrame(n, rgb, conf)

    score = score_run(shot, Wrong(), frames)
    assert score.figure_accuracy == 0.0 and 0.0 < score.accuracy < 1.0
    assert score.flagged_frames == 1
    assert 0 < score.wrong_in_flagged < score.wrong  # frame 0's wrong pixels were not flagged
    assert keyframes_of(shot, frames)[0].number == 0


def test_bench_quick_run_writes_its_table(tmp_path):
    out = tmp_path / "cases.md"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_paint_cases.py"), "--quick", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "| pinwheel | 2 |" in text and "| keyframes | 2 |" in text
    assert "naive" in text and "frames flagged" in text and "tuned on seeds 0,1" in text


def test_the_bench_counts_clean_frames_flagged_and_the_fewest_frames_that_hold_the_mistakes():
    """The review figures beside the table: which frames paint got right (at most CLEAN_WRONG of
    their pixels wrong), how many of those the mask flags, and the fewest frames that hold 90%
    of the wrong pixels (the least any frame-level mask could flag to hold that much)."""
    import importlib.util

    from longanim.engine.evaluation.synthetic_cases import Frame, Score

    spec = importlib.util.spec_from_file_location("bench_paint_cases", ROOT / "bench" / "bench_paint_cases.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    h = w = 100
    truth = np.full((h, w, 3), 200, np.uint8)
    frames = {i: Frame(truth, truth, np.zeros((h, w), np.int16), np.zeros((h, w), bool)) for i in range(4)}
    score = Score()
    sure, unsure = np.ones((h, w), np.float32), np.zeros((h, w), np.float32)
    for i, (wrong_px, confidence) in enumerate([(0, sure), (100, unsure), (20, sure), (5, unsure)]):
        rgb = truth.copy()
        rgb.reshape(-1, 3)[:wrong_px] = 0
        score.kept[i] = (rgb, confidence)
    got = bench.review_figures(frames, score, threshold=0.7, fraction=0.01)
    # Frames 0 and 3 are clean (5 of 10,000 pixels wrong is under 0.1%); frame 3 is flagged.
    # Of 125 wrong pixels, 90% (112.5) need frames 1 and 2.
    assert got == {"frames": 4, "clean": 2, "clean_flagged": 1, "least": 2}
