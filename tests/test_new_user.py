"""What a new user meets first: a base install without the model packages, and mistyped
backend options, each answered in one line that says what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot

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
