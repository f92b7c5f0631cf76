"""What a new user meets first: a base install without the model packages, and mistyped
backend options, each answered in one line that says what to do."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.sequences.image_files import read_image, write_image

# Run the CLI as on `pip install longanim` without the [model] extra: the model packages
# cannot be imported.
WITHOUT_MODEL = (
    "import sys\n"
    "for name in ('torch', 'diffusers', 'transformers', 'safetensors', 'accelerate'):\n"
    "    sys.modules[name] = None\n"
    "from longanim.commands import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shot")
    make_shot(num_frames=3, width=64, height=48, seed=1).save(root, kinds=("lineart", "color"))
    return root


def cli_without_model(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_MODEL, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [
    ["colorize", "{shot}/lineart", "--ref", "{shot}/color/shot.1001.png", "-o", "{out}", "--backend", "longanimation",
     "--set", "weights={shot}"],
    ["doctor", "--weights", "{shot}", "--no-gpu-check"],
    ["eval", "{shot}/color", "{shot}/color", "--fid-weights", "{shot}/color/shot.1001.png"],
])
def test_model_paths_on_the_base_install_name_the_extra(shot_dir, tmp_path, command):
    args = [a.format(shot=shot_dir, out=tmp_path / "out") for a in command]
    done = cli_without_model(*args)
    assert done.returncode == 2, done.stderr
    assert "pip install 'longanim[model]'" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_backend_option_lists_the_valid_ones(shot_dir, tmp_path, capsys):
    code = main(["colorize", str(shot_dir / "lineart"), "--ref", str(shot_dir / "color" / "shot.1001.png"),
                 "-o", str(tmp_path / "out"), "--set", "nosuch=1", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "has no option nosuch" in err and "global_memory" in err and "__init__" not in err


def test_a_boolean_option_takes_only_true_or_false(shot_dir, tmp_path, capsys):
    code = main(["colorize", str(shot_dir / "lineart"), "--ref", str(shot_dir / "color" / "shot.1001.png"),
                 "-o", str(tmp_path / "out"), "--set", "global_memory=maybe", "-q"])
    assert code == 2 and "global_memory must be true or false, got 'maybe'" in capsys.readouterr().err


@pytest.mark.parametrize("under", ["", "sub"])
def test_an_output_that_is_a_file_is_a_one_line_error(shot_dir, tmp_path, capsys, under):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    code = main(["colorize", str(shot_dir / "lineart"), "--ref", str(shot_dir / "color" / "shot.1001.png"),
                 "-o", str(existing / under) if under else str(existing), "-q"])
    assert code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert existing.read_text() == "keep me"


def test_eval_shows_progress_unless_quiet(shot_dir, capsys):
    truth = str(shot_dir / "color")
    assert main(["eval", truth, truth]) == 0
    assert "eval 3/3" in capsys.readouterr().err
    assert main(["eval", truth, truth, "-q"]) == 0
    assert "eval" not in capsys.readouterr().err


def _shot_with_gaps(shot_dir, folder, drop):
    """The module's shot, copied with more frames and the ones in `drop` left out."""
    make_shot(num_frames=9, width=64, height=48, seed=1).save(folder, kinds=("lineart",))
    for n in drop:
        (folder / "lineart" / f"shot.{n}.png").unlink()
    return folder / "lineart"


def test_a_gap_in_the_sequence_is_an_error_naming_the_missing_frames(shot_dir, tmp_path, capsys):
    lineart = _shot_with_gaps(shot_dir, tmp_path / "in", drop=(1003, 1006, 1007))
    out = tmp_path / "out"
    code = main(["colorize", str(lineart), "--ref", str(shot_dir / "color" / "shot.1001.png"), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "3 frames missing" in err and "1003, 1006-1007" in err and "--allow-gaps" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_allow_gaps_skips_them_and_reports_them(shot_dir, tmp_path, capsys):
    lineart = _shot_with_gaps(shot_dir, tmp_path / "in", drop=(1003, 1006, 1007))
    out = tmp_path / "out"
    code = main(["colorize", str(lineart), "--ref", str(shot_dir / "color" / "shot.1001.png"), "-o", str(out), "-q",
                 "--allow-gaps"])
    err = capsys.readouterr().err
    assert code == 0 and "skipping 3 missing frames: 1003, 1006-1007" in err
    report = json.loads((out / "report.json").read_text())
    assert report["missing_frames"] == [1003, 1006, 1007]
    assert report["frames"] == [1001, 1002, 1004, 1005, 1008, 1009]
    assert sorted(p.name for p in out.glob("shot.*.png")) == [f"shot.{n}.png" for n in report["frames"]]


def test_a_sequence_without_gaps_reports_none(shot_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["colorize", str(shot_dir / "lineart"), "--ref", str(shot_dir / "color" / "shot.1001.png"),
                 "-o", str(out), "-q"]) == 0
    assert json.loads((out / "report.json").read_text())["missing_frames"] == []


def test_float_tiff_in_float_tiff_out(shot_dir, tmp_path):
    folder = tmp_path / "float"
    for path in sorted((shot_dir / "lineart").glob("shot.*.png")):
        pixels = read_image(path).pixels.astype(np.float32) / 255.0
        write_image(folder / path.name.replace(".png", ".tif"), pixels)
    out = tmp_path / "out"
    assert main(["colorize", str(folder), "--ref", str(shot_dir / "color" / "shot.1001.png"), "-o", str(out), "-q"]) == 0
    key = read_image(out / "shot.1001.tif")
    assert key.depth == "float" and key.pixels.dtype == np.float32
    # The same colors as from the 8-bit line art, in float.
    assert main(["colorize", str(shot_dir / "lineart"), "--ref", str(shot_dir / "color" / "shot.1001.png"), "-o",
                 str(tmp_path / "png8"), "-q"]) == 0
    for n in (1001, 1003):
        eight = read_image(tmp_path / "png8" / f"shot.{n}.png").pixels
        np.testing.assert_allclose(read_image(out / f"shot.{n}.tif").pixels, eight / np.float32(255.0), atol=1e-6)
    # A format that cannot hold float keeps what it can: float to PNG is 16-bit.
    assert main(["colorize", str(folder), "--ref", str(shot_dir / "color" / "shot.1001.png"), "-o",
                 str(tmp_path / "png"), "--ext", "png", "-q"]) == 0
    assert read_image(tmp_path / "png" / "shot.1001.png").depth == "16"


@pytest.mark.parametrize("roots", [True, False], ids=["path-job", "pixels-streamed"])
def test_gaps_through_an_engine_fail_or_skip_as_in_process(shot_dir, tmp_path, capsys, roots):
    """`colorize --engine`: the engine's path job (files inside its --roots) and the streamed
    form give the in-process answers: an error naming the frames, or with --allow-gaps the
    same frames skipped and listed in report.json."""
    from engine_helpers import Engine

    lineart = _shot_with_gaps(shot_dir, tmp_path / "in", drop=(1003, 1006, 1007))
    ref = str(shot_dir / "color" / "shot.1001.png")
    extra = ("--roots", str(tmp_path), str(shot_dir)) if roots else ()
    (tmp_path / "engine").mkdir()
    with Engine(tmp_path / "engine", *extra) as eng:
        remote = ["--engine", eng.url, "--engine-timeout", "30"]
        code = main(["colorize", str(lineart), "--ref", ref, "-o", str(tmp_path / "out"), "-q", *remote])
        err = capsys.readouterr().err
        assert code == 2 and "1003, 1006-1007" in err and "--allow-gaps" in err, err
        assert not (tmp_path / "out" / "shot.1001.png").exists()
        out = tmp_path / "out2"
        assert main(["colorize", str(lineart), "--ref", ref, "-o", str(out), "-q", "--allow-gaps", *remote]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["missing_frames"] == [1003, 1006, 1007]
    assert sorted(p.name for p in out.glob("shot.*.png")) == [f"shot.{n}.png" for n in (1001, 1002, 1004, 1005, 1008, 1009)]
