"""The second shot generator (engine/evaluation/synthetic_cases.py), the naive propagation
baseline (engine/evaluation/naive.py) and the bench that sets them against `paint`."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from longanim.engine.backends.paint.colorizer import PaintBackend
from longanim.engine.evaluation.naive import NaivePropagation, carry
from longanim.engine.evaluation.synthetic_cases import (
    CASES,
    INK,
    LIGHT_LINES,
    SHADOW_LINE,
    CaseShot,
    Frame,
    counted_pixels,
    judge,
    keyframes_of,
    score_run,
)

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_paint_cases", ROOT / "bench" / "bench_paint_cases.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("case", CASES)
def test_every_case_renders_truth_that_matches_its_line_art(case):
    shot = CaseShot(case, seed=5, width=160, height=90, num_frames=12)
    f = shot.frame(6)
    channels = 4 if case == "film" else 3
    assert f.lineart.shape == f.color.shape == (90, 160, channels) and f.lineart.dtype == np.uint8
    assert f.film == (case == "film") and (f.vivid is not None) == (case == "shading")
    assert (f.owner > 0).any(), "every case shows a character or prop"
    if case == "film":
        # The ink is the line art's alpha; where there is none, the film is clear.
        assert np.array_equal(f.line, f.lineart[..., 3] > 0)
        return
    # Away from the ink (and the colored lines) the line art is bare paper and the truth a flat fill.
    drawn = f.lineart.min(axis=2) < 255
    paper = ~drawn
    assert (f.lineart[paper] == 255).all()
    # Ink and colored lines are what is drawn, apart: the ink is in the truth, the colored lines are not.
    vivid = f.vivid if f.vivid is not None else np.zeros_like(drawn)
    assert np.array_equal(f.line | vivid, drawn) and not (f.line & vivid).any()


def test_frames_are_a_pure_function_of_case_seed_and_index():
    a, b = CaseShot("bodyplans", 3, 160, 90, 10), CaseShot("bodyplans", 3, 160, 90, 10)
    assert np.array_equal(a.frame(7).color, b.frame(7).color)
    assert np.array_equal(a.frame(7).color, a.frame(7).color)
    assert not np.array_equal(a.frame(7).color, CaseShot("bodyplans", 4, 160, 90, 10).frame(7).color)


@pytest.mark.parametrize("case", ["shading", "film"])
def test_the_new_cases_are_a_pure_function_of_seed_and_index(case):
    a, b = CaseShot(case, 3, 200, 112, 10), CaseShot(case, 3, 200, 112, 10)
    fa, fb = a.frame(7), b.frame(7)
    for name in ("lineart", "color", "owner", "line"):
        assert np.array_equal(getattr(fa, name), getattr(fb, name)), name
    assert (fa.vivid is None and fb.vivid is None) or np.array_equal(fa.vivid, fb.vivid)
    assert not np.array_equal(fa.color, CaseShot(case, 4, 200, 112, 10).frame(7).color)
    assert not np.array_equal(fa.lineart, a.frame(2).lineart), "the characters move"


def test_the_other_cases_do_not_change_with_the_new_ones():
    """The new cases draw their colors after, and apart from, the others: the recorded
    bench's shots stay the same drawings (a checksum of frame 5 of each, taken before)."""
    import hashlib

    got = {}
    for case in ("bodyplans", "pinwheel", "keyframes"):
        f = CaseShot(case, 2, 160, 90, 8).frame(5)
        got[case] = hashlib.sha256(f.lineart.tobytes() + f.color.tobytes() + f.owner.tobytes()).hexdigest()[:16]
    assert got == BEFORE


BEFORE = {"bodyplans": "c567c3e77439f675", "pinwheel": "7e4ecd81e2a32d1d", "keyframes": "6bd9deceba1546be"}


def test_shading_draws_vivid_colored_lines_that_the_truth_fills():
    """The colored lines are vivid by paint's rule (their cores), lie inside the characters,
    and the truth shows, at every one of their pixels, a fill of the character it lies in:
    a base color, its shadow or its highlight, never a line's color."""
    shot = CaseShot("shading", 5, 480, 270, 12)
    f = shot.frame(4)
    assert f.vivid.sum() > 600
    la = f.lineart[f.vivid].astype(int)
    core = (la.max(axis=1) - la.min(axis=1) > 96) & (la.max(axis=1) > 150)
    assert core.sum() > 0.4 * len(la)
    assert (f.owner[f.vivid] > 0).all(), "colored lines are drawn inside characters only"
    truth = f.color[f.vivid]
    owners = f.owner[f.vivid]
    for actor in shot.actors:
        fills = {tuple(c) for c in actor.colors.values()}
        mine = truth[owners == actor.owner]
        assert {tuple(c) for c in mine} <= fills, actor.kind
    lines = {SHADOW_LINE, *LIGHT_LINES.values(), INK}
    assert not {tuple(c) for c in truth} & lines
    # Both sides of a shadow line are in the truth: the lit fill and its darker shadow.
    body = shot.actors[0].colors
    seen = {tuple(c) for c in f.color[f.owner == 1]}
    assert body["body"] in seen and body["body/shadow"] in seen and body["hair/light"] in seen
    assert all(s < b for s, b in zip(body["body/shadow"], body["body"]) if b)


def test_film_line_art_is_ink_over_clear_film_and_the_truth_opaque_characters():
    shot = CaseShot("film", 5, 320, 180, 12)
    f = shot.frame(6)
    alpha, truth_alpha = f.lineart[..., 3], f.color[..., 3]
    near_ink = cv2.dilate(f.line.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (alpha[~near_ink] == 0).all() and (f.lineart[..., :3][~f.line] == 0).all()
    assert alpha.max() == 255 and 0 < (alpha > 0).mean() < 0.3
    # The truth: characters opaque, lines included; clear film (alpha 0) everywhere else.
    assert (truth_alpha[(f.owner > 0) & ~f.line] == 255).all()
    assert (truth_alpha[(f.owner == 0) & ~f.line] == 0).all()
    assert (truth_alpha[f.line] > 0).all(), "a silhouette's soft edge is as opaque as its ink"
    assert (truth_alpha[f.line] == 255).mean() > 0.6
    # A keyframe reads as the pipeline reads it: colored on white, with the truth's alpha.
    key = keyframes_of(shot, {0: shot.frame(0)})[0]
    assert key.alpha is not None and np.array_equal(key.alpha, shot.frame(0).color[..., 3])
    assert key.color.shape == key.lineart.shape == (180, 320, 3)
    assert (key.lineart[shot.frame(0).lineart[..., 3] == 0] == 255).all(), "film reads as white paper"


def test_judge_counts_colored_lines_and_film_alpha():
    """The scoring rules beside the pictures: on a colored line the fill of either side is
    right a pixel from where they meet, the line's color never; on film alpha must be right
    everywhere and color only where the truth is opaque."""
    h, w = 6, 8
    a, b = (200, 40, 40), (140, 28, 28)
    truth = np.zeros((h, w, 3), np.uint8)
    truth[:, :4], truth[:, 4:] = a, b
    vivid = np.zeros((h, w), bool)
    vivid[:, 2:6] = True
    f = Frame(truth.copy(), truth, np.ones((h, w), np.int16), np.zeros((h, w), bool), vivid)
    out = truth.copy()
    out[:, 3] = b  # the side across, a pixel off the middle: right
    out[:, 2] = b  # two pixels off: wrong
    out[0, 5] = SHADOW_LINE  # the line left drawn: wrong
    ok = judge(f, out)
    assert ok[:, 3].all() and not ok[:, 2].any() and not ok[0, 5] and ok[1:, 5].all()
    assert counted_pixels(f).all(), "colored lines are counted"

    rgba = np.dstack([truth, np.zeros((h, w), np.uint8)])
    rgba[:3, :, 3] = 255  # the top half is opaque character, the bottom clear film
    film = Frame(rgba.copy(), rgba, np.ones((h, w), np.int16), np.zeros((h, w), bool))
    out = rgba.copy()
    out[4, :, :3] = 0  # any color under alpha 0 is right
    out[0, 0, 3] = 0  # an opaque pixel left clear: wrong
    out[1, 0, :3] = 0  # an opaque pixel in the wrong color: wrong
    out[5, 0, 3] = 255  # a clear pixel made opaque: wrong
    ok = judge(film, out)
    assert ok[4].all() and not ok[0, 0] and not ok[1, 0] and not ok[5, 0]
    assert ok.sum() == h * w - 3
    with pytest.raises(ValueError, match="must be RGBA"):
        judge(film, out[..., :3])


def test_paint_colors_a_short_shaded_shot_with_its_colored_lines_filled():
    """Paint's colored-line rule (vivid_lines=fill) is what the case is there to measure:
    measured 0.90 of the colored lines' pixels show a fill (0.83-0.92 over seeds 5-8), and
    0.06 with the lines kept drawn (vivid_lines=keep: 0.06-0.08), so the test can fail."""
    shot = CaseShot("shading", 5, 320, 180, 12)
    frames = {i: shot.frame(i) for i in range(12)}
    filled = score_run(shot, PaintBackend(), frames)
    kept = score_run(shot, PaintBackend(vivid_lines="keep"), frames)
    assert filled.vivid_counted > 3000
    assert filled.vivid_accuracy >= 0.75
    assert kept.vivid_accuracy <= 0.2
    assert filled.figure_accuracy >= kept.figure_accuracy + 0.1  # measured 0.92 against 0.67


def test_paint_on_film_gives_opaque_characters_on_clear_film():
    """Measured on seed 5 (320x180, 12 frames): 92.5% of the characters' pixels right (color
    and alpha; 92.5-99.9% over seeds 5-8), the last frame's characters all opaque and its film
    all clear, 99.1% of the lines' alpha right; keeping the line art's alpha
    (output_alpha=lineart) leaves every fill transparent: 0% of the characters right."""
    shot = CaseShot("film", 5, 320, 180, 12)
    frames = {i: shot.frame(i) for i in range(12)}
    paint = score_run(shot, PaintBackend(), frames, keep=[11])
    out, f = paint.kept[11][0], frames[11]
    assert out.shape == (180, 320, 4)
    counted = counted_pixels(f)
    assert (out[..., 3][counted & (f.owner > 0)] == 255).mean() >= 0.99
    assert (out[..., 3][counted & (f.owner == 0)] == 0).mean() >= 0.999
    assert paint.figure_accuracy >= 0.85 and paint.accuracy >= 0.995
    assert paint.line_alpha_accuracy >= 0.95
    old = score_run(shot, PaintBackend(output_alpha="lineart"), frames)
    assert old.figure_accuracy <= 0.05


def test_naive_on_film_is_given_paints_alpha_rule():
    """Naive has no alpha of its own: as it is, every fill on film is transparent (the line
    art's alpha); with `CarriedOpacity` it is exact on the keyframe, alpha included."""
    bench = load_bench()
    shot = CaseShot("film", 5, 320, 180, 2)
    frames = {i: shot.frame(i) for i in range(2)}
    carried = score_run(shot, bench.CarriedOpacity(NaivePropagation), frames, keep=[0, 1])
    plain = score_run(shot, NaivePropagation(), frames)
    assert plain.figure_accuracy <= 0.05
    assert carried.per_frame[0] >= 0.99
    # A frame on, the opacity goes where the colors go (naive's colors are right on only
    # 29% of the characters' pixels here: it is naive).
    out, f = carried.kept[1][0], frames[1]
    figure = counted_pixels(f) & (f.owner > 0)
    color_ok = (np.abs(out[..., :3].astype(int) - f.color[..., :3]).max(axis=2) <= 6)[figure]
    alpha_ok = (out[..., 3] == f.color[..., 3])[figure]
    assert abs(color_ok.mean() - alpha_ok.mean()) < 0.05 and (alpha_ok | ~color_ok).all()
    # Off film it is the colorizer as it is.
    opaque = CaseShot("pinwheel", 5, 160, 90, 3)
    same = {i: opaque.frame(i) for i in range(3)}
    a = score_run(opaque, bench.CarriedOpacity(NaivePropagation), same)
    b = score_run(opaque, NaivePropagation(), same)
    assert (a.right, a.counted) == (b.right, b.counted)


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
    assert "| shading | 2 |" in text and "| film | 2 |" in text
    assert "colored lines (shading)" in text and "transparent film (film)" in text
    assert "naive" in text and "frames flagged" in text and "tuned on seeds 0,1" in text


def test_the_bench_counts_clean_frames_flagged_and_the_fewest_frames_that_hold_the_mistakes():
    """The review figures beside the table: which frames paint got right (at most CLEAN_WRONG of
    their pixels wrong), how many of those the mask flags, and the fewest frames that hold 90%
    of the wrong pixels (the least any frame-level mask could flag to hold that much)."""
    from longanim.engine.evaluation.synthetic_cases import Score

    bench = load_bench()
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
