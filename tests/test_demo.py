"""`longanim demo` end to end on a small shot, and the pieces it is made of."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from longanim.commands import main
from longanim.engine.evaluation import demo
from longanim.engine.evaluation.contact_sheet import BACKGROUND, HEADER, LABEL_WIDTH, contact_sheet, pick_frames, sheet_size
from longanim.engine.sequences.image_files import read_image, write_image
from longanim.engine.evaluation.synthetic import make_shot


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    rc = main(["demo", "--frames", "60", "--size", "160x90", "-o", str(out), "-q"])
    return rc, out


def test_demo_writes_sheet_metrics_and_frames(demo_run):
    rc, out = demo_run
    assert rc == 0
    sheet = cv2.imread(str(out / "contact_sheet.png"), cv2.IMREAD_UNCHANGED)
    assert sheet is not None and sheet.dtype == np.uint8
    assert (sheet.shape[1], sheet.shape[0]) == sheet_size(160, 90, columns=8, rows=4)
    metrics = json.loads((out / "metrics" / "metrics.json").read_text())
    s = metrics["summary"]
    assert s["frames"] == 60 and s["first_frame"] == 1001 and s["last_frame"] == 1060
    assert 0 <= s["accuracy"] <= 1 and 0 <= s["accuracy_characters"] <= 1
    assert "accuracy_after_reentry" in s  # None: a 60-frame shot has no long absence
    numbers = range(1001, 1061)
    for folder in ("lineart", "truth", "masks", "colorized", "colorized/confidence"):
        assert sorted(p.name for p in (out / folder).glob("shot.*.png")) == [f"shot.{n}.png" for n in numbers]
    assert (out / "colorized" / "report.json").is_file()
    np.testing.assert_array_equal(read_image(out / "refs" / "shot.1001.png").pixels,
                                  read_image(out / "truth" / "shot.1001.png").pixels)
    figures = json.loads((out / "demo.json").read_text())
    assert figures["frames"] == 60 and figures["keyframes"] == [1001] and figures["backend"] == "paint"
    assert figures["accuracy"] == pytest.approx(s["accuracy"]) and figures["fps"] > 0


def test_demo_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["demo", "--frames", "8", "--size", "96x54", "-o", str(out), "--seed", "4"]) == 0
    captured = capsys.readouterr()
    for label in ("flat-region accuracy", "on characters", "after re-entry", "PSNR", "SSIM",
                  "CIEDE2000", "flicker", "fps", str(out / "contact_sheet.png")):
        assert label in captured.out, label
    assert "colorize 8/8" in captured.err


def test_rerun_replaces_a_previous_demo(demo_run, tmp_path):
    _, out = demo_run
    assert main(["demo", "--frames", "6", "--size", "96x54", "-o", str(out), "-q"]) == 0
    assert len(list((out / "lineart").glob("shot.*.png"))) == 6
    assert json.loads((out / "colorized" / "report.json").read_text())["frames"] == list(range(1001, 1007))


def test_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--frames", "4", "--size", "64x36", "-o", str(tmp_path), "-q"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("args, words", [
    (["--size", "160by90"], "bad --size"),
    (["--size", "8x8"], "at least 16x16"),
    (["--frames", "0"], "at least 1"),
    (["--backend", "nope"], "unknown backend"),
])
def test_bad_options_exit_2(tmp_path, capsys, args, words):
    assert main(["demo", "-o", str(tmp_path / "d"), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("longanim demo: error: ") and words in err


def test_reentry_accuracy_counts_the_returning_characters_pixels(tmp_path):
    shot = make_shot(420, 96, 54, seed=0)
    long = [r for r in shot.reentries() if r[2] >= demo.REENTRY_MIN_AWAY]
    assert len(long) == 1, "in a 420-frame synthetic shot character 1 is away for 150+ frames"
    character, back, _ = long[0]
    demo.write_shot(shot, tmp_path, indices=range(back, back + demo.REENTRY_WINDOW))
    perfect = demo.reentry_accuracy(shot, tmp_path, colorized="truth")
    assert perfect["accuracy"] == 1.0
    assert [(r["character"], r["back"] - 1001) for r in perfect["reentries"]] == [(c, b) for c, b, _ in long]
    assert all(r["pixels"] > 0 for r in perfect["reentries"])

    for i in range(back, back + demo.REENTRY_WINDOW):
        n = i + 1001
        img = read_image(tmp_path / "truth" / f"shot.{n}.png").pixels.copy()
        mask = read_image(tmp_path / "masks" / f"shot.{n}.png").pixels[..., 0]
        img[(mask == character) & (np.arange(img.shape[1])[None, :] % 2 == 0)] = (255, 0, 255)
        write_image(tmp_path / "half" / f"shot.{n}.png", img)
    half = demo.reentry_accuracy(shot, tmp_path, colorized="half", min_away=10**6)
    assert half["reentries"] == [] and math.isnan(half["accuracy"])
    half = demo.reentry_accuracy(shot, tmp_path, colorized="half")
    assert 0.3 < half["accuracy"] < 0.7


def test_error_split_tells_characters_known_scenery_and_new_scenery_apart(tmp_path):
    shot = make_shot(200, 160, 90, seed=1)
    demo.write_shot(shot, tmp_path)
    shown = set(np.unique(shot.scenery_map(0))) - {0}
    late = 199
    unseen = sorted(set(np.unique(shot.scenery_map(late))) - shown - {0})
    assert unseen, "a 200-frame pan brings scenery into view that the keyframe does not show"
    ones = np.full((90, 160, 1), 255, np.uint8)
    for i in range(shot.num_frames):
        n = i + 1001
        img = read_image(tmp_path / "truth" / f"shot.{n}.png").pixels.copy()
        confidence = ones.copy()
        if i == 0:  # a character painted wrong, and flagged
            mask = read_image(tmp_path / "masks" / f"shot.{n}.png").pixels[..., 0] > 0
            img[mask] = (255, 0, 255)
            confidence[mask] = 0
        if i == late:  # new scenery painted wrong with full confidence
            img[np.isin(shot.scenery_map(i), unseen)] = (255, 0, 255)
        if i == 100:  # scenery the keyframe shows (the sky) painted wrong
            img[shot.scenery_map(i) == 1] = (255, 0, 255)
        write_image(tmp_path / "pred" / f"shot.{n}.png", img)
        write_image(tmp_path / "pred" / "confidence" / f"shot.{n}.png", confidence)
    split = demo.error_split(shot, tmp_path, colorized="pred")
    assert 0 < split["wrong_characters"] < 0.001  # one frame's characters, small at this size
    assert 0 < split["wrong_scenery_unseen"] < 0.001  # what came into view by the last frame
    assert 0.001 < split["wrong_scenery_shown"] < 0.005  # one frame's sky, of 200 frames
    assert split["wrong_scenery_shown"] > 10 * split["wrong_scenery_unseen"]
    wrong = split["wrong_characters"] + split["wrong_scenery_unseen"] + split["wrong_scenery_shown"]
    assert split["wrong_flagged"] == pytest.approx(split["wrong_characters"] / wrong)
    assert 0 < split["flagged"] < 0.001  # only the one frame's characters were marked unsure


def test_pick_frames_spreads_evenly():
    assert pick_frames(range(1001, 1501), 8)[0] == 1001 and pick_frames(range(1001, 1501), 8)[-1] == 1500
    assert len(pick_frames(range(500), 8)) == 8
    assert pick_frames([3, 4, 5], 8) == [3, 4, 5]


def test_contact_sheet_layout_and_labels():
    frame = np.zeros((90, 160, 3), np.uint8)
    rows = [("a", lambda n: frame), ("b", lambda n: frame + 200)]
    sheet = contact_sheet(rows, [1, 2, 3])
    assert (sheet.shape[1], sheet.shape[0]) == sheet_size(160, 90, 3, 2)
    thumb = sheet[sheet.shape[0] - 4 - 45:sheet.shape[0] - 4, -4 - 160:-4]
    assert np.all(thumb == 200)
    header = sheet[:HEADER, LABEL_WIDTH:]
    assert np.any(header != BACKGROUND), "frame numbers are drawn above the columns"
    labels = sheet[HEADER:, :LABEL_WIDTH]
    assert np.any(labels != BACKGROUND), "row names are drawn on the left"
    big = contact_sheet([("a", lambda n: np.zeros((540, 960, 3), np.uint8))], [1], thumb_width=240)
    assert big.shape[:2] == (sheet_size(960, 540, 1, 1)[1], sheet_size(960, 540, 1, 1)[0])
    assert sheet_size(960, 540, 1, 1)[1] == 26 + 135 + 8
