"""A checkpoint and the line art it was made from. A farm re-queues a task hours later, after
someone may have re-rendered part of the shot: a resumed run must then refuse the checkpoint and
name the frames that changed (its memory holds the old drawings), but not when only frames after
the checkpoint changed (they are read afresh) or when the files were merely copied or touched.

Real `longanim colorize` runs on real PNG sequences; each accepted resume is compared byte for
byte with one uninterrupted run over the line art as it is now.

The checkpoint records each frame's name, size, time and sha256 up to the checkpoint
(engine/pipeline/checkpoints.py `lineart_records` / `changed_lineart`, checkpoint version 2); a resume
stats each file and reads only those whose time differs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.pipeline import checkpoints
from run_helpers import outputs

N, W, H = 40, 160, 90
CHECKPOINT_AT = 1020


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("identity")
    make_shot(N, W, H, seed=5).save(root / "shot", kinds=("lineart", "color"))
    make_shot(N, W, H, seed=11).save(root / "other", kinds=("lineart",))  # other drawings, same size
    return root


@pytest.fixture
def shot(originals, tmp_path) -> Path:
    """A copy of the shot this test may change, with the checkpoint after CHECKPOINT_AT in out/."""
    root = tmp_path / "shot"
    shutil.copytree(originals / "shot", root, copy_function=shutil.copy2)  # copy2: times kept
    _uncompressed(root / "lineart" / "shot.1012.png")  # the same pixels, in a file whose size is fixed
    assert main(_args(root, tmp_path / "out", "--frames", f"1001-{CHECKPOINT_AT}", "--checkpoint-every", "10")) == 0
    assert checkpoints.checkpoint_path(tmp_path / "out", "shot").is_file()
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["colorize", str(root / "lineart"), "--ref", str(root / "color" / "shot.1001.png"), "-o", str(out),
            "-q", *extra]


def _uncompressed(path: Path, rgb: np.ndarray | None = None) -> None:
    """An uncompressed PNG: its size depends on the frame size only, so new pixels keep the size."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if rgb is None else rgb
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 0])


def _redraw(shot: Path, originals: Path, *frames: int) -> None:
    for n in frames:
        shutil.copyfile(originals / "other" / "lineart" / f"shot.{n}.png", shot / "lineart" / f"shot.{n}.png")


def _same_as_one_run(shot: Path, out: Path, tmp_path: Path, *extra: str) -> None:
    """`out` holds what one uninterrupted run over the line art as it is now writes."""
    reference = tmp_path / "reference"
    assert main(_args(shot, reference, "--checkpoint-every", "0", *extra)) == 0
    mine, theirs = outputs(out), outputs(reference)
    assert sorted(mine) == sorted(theirs)
    assert [name for name in mine if mine[name] != theirs[name]] == []


def test_resume_refuses_a_checkpoint_made_from_other_line_art(shot, originals, tmp_path, capsys):
    _redraw(shot, originals, 1005)
    capsys.readouterr()
    assert main(_args(shot, tmp_path / "out", "--resume")) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "delete it to start over" in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_the_refusal_names_the_frames_that_changed(shot, originals, tmp_path, capsys):
    _redraw(shot, originals, 1005, 1013, 1014)
    capsys.readouterr()
    assert main(_args(shot, tmp_path / "out", "--resume")) == 2
    assert "frames 1005, 1013-1014 changed" in capsys.readouterr().err


def test_a_change_that_keeps_the_file_size_is_caught(shot, originals, tmp_path, capsys):
    path = shot / "lineart" / "shot.1012.png"
    size = path.stat().st_size
    other = cv2.imread(str(originals / "other" / "lineart" / "shot.1012.png"), cv2.IMREAD_UNCHANGED)
    _uncompressed(path, other)
    assert path.stat().st_size == size  # same name, same size: only the bytes tell
    capsys.readouterr()
    assert main(_args(shot, tmp_path / "out", "--resume")) == 2
    assert "frame 1012 changed" in capsys.readouterr().err


def test_copied_or_touched_line_art_still_resumes(shot, tmp_path, capsys):
    for path in (shot / "lineart").iterdir():
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # as `cp` without -p leaves it
    capsys.readouterr()
    assert main(_args(shot, tmp_path / "out", "--resume")) == 0
    assert f"resumed from the checkpoint after frame {CHECKPOINT_AT}" in capsys.readouterr().err
    _same_as_one_run(shot, tmp_path / "out", tmp_path)


def test_a_change_after_the_checkpoint_does_not_refuse_it(shot, originals, tmp_path, capsys):
    _redraw(shot, originals, 1030, N + 1000)  # re-rendered frames the checkpoint's memory never saw
    capsys.readouterr()
    assert main(_args(shot, tmp_path / "out", "--resume")) == 0
    assert f"resumed from the checkpoint after frame {CHECKPOINT_AT}" in capsys.readouterr().err
    _same_as_one_run(shot, tmp_path / "out", tmp_path)


def test_a_chunk_after_changed_line_art_warms_up_instead(shot, originals, tmp_path, capsys):
    """Without --resume a later chunk may not fail: it leaves the checkpoint and runs the frames before it."""
    _redraw(shot, originals, 1012)
    chunk = ("--frames", f"{CHECKPOINT_AT + 1}-{N + 1000}")
    capsys.readouterr()
    assert main(_args(shot, tmp_path / "out", *chunk)) == 0
    err = capsys.readouterr().err
    assert "warm-up: frames 1001-1020 are run without writing them" in err and "ignored" in err
    chunk_out = tmp_path / "chunk"
    chunk_out.mkdir()
    for path in (tmp_path / "out").rglob("*.png"):
        n = int(path.name.split(".")[1])
        if n > CHECKPOINT_AT:
            target = chunk_out / path.relative_to(tmp_path / "out")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    _same_as_one_run(shot, chunk_out, tmp_path, *chunk)
