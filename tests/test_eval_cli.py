"""`longanim eval` end to end on a tiny synthetic shot written to disk."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from longanim.commands import main
from longanim.engine.evaluation import pixel_metrics as M
from longanim.engine.evaluation.synthetic import BODY, make_shot, region_id

FRAMES = 8


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shot")
    shot = make_shot(FRAMES, 320, 180, seed=7)
    shot.save(root, kinds=("lineart", "color", "mask"))
    return shot, root


def _write(folder, shot, recolor=None, frames=range(FRAMES), size=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i in frames:
        img = shot.color(i)
        if recolor is not None:
            img = img.copy()
            img[shot.region_map(i) == recolor] = (255, 0, 255)
        if size is not None:
            img = cv2.resize(img, size)
        cv2.imwrite(str(folder / f"pred.{i + 1001:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


def test_perfect_prediction_scores_perfectly(shot_dir, tmp_path, capsys):
    shot, root = shot_dir
    out = tmp_path / "report"
    rc = main(["eval", str(root / "color"), str(root / "color" / "shot.####.png"), "-o", str(out),
               "--masks", str(root / "mask")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "flat-region accuracy" in printed and "100.00%" in printed
    data = json.loads((out / "metrics.json").read_text())
    s = data["summary"]
    assert s["frames"] == FRAMES and s["first_frame"] == 1001 and s["last_frame"] == 1001 + FRAMES - 1
    assert s["accuracy"] == 1.0 and s["accuracy_characters"] == 1.0
    assert s["psnr_mean"] == M.PSNR_CAP_DB and s["ssim_mean"] == pytest.approx(1.0)
    assert s["delta_e_mean"] == 0.0 and s["flicker_mae_mean"] >= 0
    assert len((out / "per_frame.csv").read_text().splitlines()) == FRAMES + 1
    assert cv2.imread(str(out / "drift.png")) is not None


def test_recolored_region_lowers_accuracy_by_its_share(shot_dir, tmp_path):
    shot, root = shot_dir
    target = region_id(3, BODY)
    pred = _write(tmp_path / "pred", shot, recolor=target)
    out = tmp_path / "report"
    assert main(["eval", str(pred), str(root / "color"), "-o", str(out), "--lineart", str(root / "lineart"),
                 "--masks", str(root / "mask")]) == 0
    data = json.loads((out / "metrics.json").read_text())
    wrong = counted = wrong_c = counted_c = 0
    for i in range(FRAMES):
        keep = M.countable_mask(shot.color(i), shot.line_mask(i))
        kc = M.countable_mask(shot.color(i), shot.line_mask(i), shot.character_mask(i))
        body = shot.region_map(i) == target
        wrong += (keep & body).sum()
        counted += keep.sum()
        wrong_c += (kc & body).sum()
        counted_c += kc.sum()
        row = data["frames"][i]
        assert row["frame"] == 1001 + i
        assert row["accuracy"] == pytest.approx(1 - (keep & body).sum() / keep.sum())
    assert wrong > 0
    assert data["summary"]["accuracy"] == pytest.approx(1 - wrong / counted)
    assert data["summary"]["accuracy_characters"] == pytest.approx(1 - wrong_c / counted_c)
    assert data["summary"]["accuracy_characters"] < data["summary"]["accuracy"] < 1


def test_frames_pair_by_number_and_one_sided_frames_are_skipped(shot_dir, tmp_path, capsys):
    shot, root = shot_dir
    pred = _write(tmp_path / "pred", shot, frames=range(2, 5))
    assert main(["eval", str(pred), str(root / "color")]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err
    assert "frames                     3" in captured.out


def test_user_errors_exit_2_with_a_clear_message(shot_dir, tmp_path, capsys):
    shot, root = shot_dir
    small = _write(tmp_path / "small", shot, size=(160, 90))
    assert main(["eval", str(small), str(root / "color")]) == 2
    assert "frame 1001: prediction is 160x90, ground truth is 320x180" in capsys.readouterr().err

    late = tmp_path / "late"
    late.mkdir()
    cv2.imwrite(str(late / "x.2001.png"), np.zeros((180, 320, 3), np.uint8))
    assert main(["eval", str(late), str(root / "color")]) == 2
    assert "no common frame numbers" in capsys.readouterr().err

    assert main(["eval", str(root / "color"), str(root / "color"), "--fid-weights", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "inception-2015-12-05.pt" in err and "--fid-weights" in err

    assert main(["eval", str(tmp_path / "missing"), str(root / "color")]) == 2
    assert "no such file or folder" in capsys.readouterr().err

    both = tmp_path / "both"
    _write(both, shot, frames=[0])
    cv2.imwrite(str(both / "other.1001.png"), np.zeros((180, 320, 3), np.uint8))
    assert main(["eval", str(both), str(root / "color")]) == 2
    assert "several image sequences" in capsys.readouterr().err
    assert main(["eval", str(both / "other.%04d.png"), str(root / "color")]) == 0


def test_without_line_art_lines_are_guessed_from_the_truth(shot_dir, tmp_path):
    shot, root = shot_dir
    target = region_id(3, BODY)
    pred = _write(tmp_path / "pred", shot, recolor=target, frames=range(3))
    out = tmp_path / "report"
    assert main(["eval", str(pred), str(root / "color"), "-o", str(out)]) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["summary"]["frames"] == 3 and "accuracy_characters" not in data["summary"]
    wrong = 0
    for i in range(3):
        gt = shot.color(i)
        keep = M.countable_mask(gt)  # no line art: edges and near-black ink are excluded
        body = shot.region_map(i) == target
        assert data["frames"][i]["accuracy"] == pytest.approx(1 - (keep & body).sum() / keep.sum())
        wrong += (keep & body).sum()
    assert wrong > 0
