"""`longanim colorize` from the command line: in-process through `main`, and once as a real
`python -m longanim` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longanim.commands import main
from longanim.engine import pipeline
from longanim.engine.sequences.image_files import read_image, write_image
from longanim.engine.evaluation.synthetic import make_shot

N = 12


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shot")
    make_shot(N, 160, 90, seed=5).save(root, kinds=("lineart", "color"))
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["colorize", str(root / "lineart"), "--ref", str(root / "color" / "shot.1001.png"), "-o", str(out), *extra]


def test_colorize_writes_frames_report_and_progress(shot_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(shot_dir, out)) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("shot.*.png")) == [f"shot.{n}.png" for n in range(1001, 1001 + N)]
    assert len(list((out / "confidence").glob("shot.*.png"))) == N
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == list(range(1001, 1001 + N)) and report["backend"] == "paint"
    assert f"colorize {N}/{N}" in captured.err
    assert f"{N} frames -> {out}" in captured.out
    assert _big_colors(read_image(out / "shot.1001.png").pixels) == \
        _big_colors(read_image(shot_dir / "color" / "shot.1001.png").pixels)


def _big_colors(img: np.ndarray) -> set:
    """Colors covering more than 1% of the frame: the reference's fills on its own frame."""
    colors, counts = np.unique(img[..., :3].reshape(-1, 3), axis=0, return_counts=True)
    return {tuple(c) for c, k in zip(colors.tolist(), counts) if k > 0.01 * img.shape[0] * img.shape[1]}


def test_quiet_prints_nothing(shot_dir, tmp_path, capsys):
    assert main(_args(shot_dir, tmp_path / "out", "-q")) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_real_subprocess(shot_dir, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "longanim", *_args(shot_dir, out)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("colorize ")]
    assert progress and progress[-1].startswith(f"colorize {N}/{N}")
    assert (out / "report.json").is_file()
    assert len(list(out.glob("shot.*.png"))) == N


@pytest.mark.parametrize("extra, words", [
    (["--frames", "2000-2010"], ["no frames in the requested range"]),
    (["--frames", "10-5"], ["end 5 is before start 10"]),
    (["--set", "global_memory"], ["not KEY=VALUE"]),
    (["--set", "no_such_option=3"], ["no_such_option"]),
    (["--backend", "nope"], ["unknown backend 'nope'"]),
    (["--ext", "gif"], ["gif"]),
])
def test_bad_options_exit_2_with_a_message(shot_dir, tmp_path, capsys, extra, words):
    out = tmp_path / "out"
    assert main(_args(shot_dir, out, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("longanim colorize: error: ")
    for word in words:
        assert word in err, err
    assert not (out / "report.json").exists()


def test_bad_files_exit_2_with_a_message(shot_dir, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["colorize", str(missing), "--ref", str(shot_dir / "color" / "shot.1001.png"),
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("longanim colorize: error: ") and str(missing) in err

    assert main(["colorize", str(shot_dir / "lineart"), "--ref", str(shot_dir / "color" / "shot.1001.png:5000"),
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "frame 5000" in err and "outside" in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_missing_ref_is_an_argparse_error(shot_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["colorize", str(shot_dir / "lineart"), "-o", str(tmp_path / "out")])
    assert info.value.code == 2
    assert "--ref" in capsys.readouterr().err


def test_set_reaches_the_backend(shot_dir, tmp_path, monkeypatch):
    made = []
    real = pipeline.create_backend

    def spy(name, **options):
        made.append((name, options, real(name, **options)))
        return made[-1][2]

    monkeypatch.setattr(pipeline, "create_backend", spy)
    assert main(_args(shot_dir, tmp_path / "out", "-q", "--set", "global_memory=false",
                      "--set", "memory_capacity=64")) == 0
    (name, options, backend), = made
    assert name == "paint" and options == {"global_memory": False, "memory_capacity": 64}
    assert backend.use_global is False and backend.memory_capacity == 64


def test_set_changes_what_the_backend_does(shot_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(shot_dir, out, "--set", "review_threshold=1.01")) == 0
    assert f"{N} frames need review, in 1 stretch: 1001-{1000 + N}" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["needs_review"] == list(range(1001, 1001 + N))
    assert report["review_stretches"] == [[1001, 1000 + N]]


def test_ext_exr(shot_dir, tmp_path):
    out = tmp_path / "out"
    assert main(_args(shot_dir, out, "-q", "--ext", "exr")) == 0
    files = sorted(p.name for p in out.glob("shot.*.exr"))
    assert files == [f"shot.{n}.exr" for n in range(1001, 1001 + N)]
    img = read_image(out / "shot.1005.exr")
    assert img.colorspace == "linear" and img.pixels.dtype == np.float16
    assert not list(out.glob("shot.*.png"))


def test_frames_subrange(shot_dir, tmp_path):
    out = tmp_path / "out"
    assert main(_args(shot_dir, out, "-q", "--frames", "1005-1010")) == 0
    assert sorted(p.name for p in out.glob("shot.*.png")) == [f"shot.{n}.png" for n in range(1005, 1011)]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == list(range(1005, 1011)) and report["keyframes"] == [1001]


def test_ref_with_frame_suffix(shot_dir, tmp_path):
    ref = tmp_path / "paint.png"
    write_image(ref, read_image(shot_dir / "color" / "shot.1004.png").pixels)
    out = tmp_path / "out"
    assert main(["colorize", str(shot_dir / "lineart"), "--ref", f"{ref}:1004", "-o", str(out), "-q"]) == 0
    assert json.loads((out / "report.json").read_text())["keyframes"] == [1004]
