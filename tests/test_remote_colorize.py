"""`longanim colorize --engine URL` against a real engine started without --roots (the
README's `longanim serve &`): the pixels travel, the files are written here, byte for byte
the same as an in-process run; and with no engine at all it says so within its timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import Engine, free_port
from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.sequences.colorspace import from_display_float
from longanim.engine.sequences.image_files import write_image

N = 12


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("engine")) as eng:  # no --roots: it accepts no file paths
        yield eng


def _write_shot(root: Path, kind: str, frames: int = N) -> Path:
    """Line art as 8-bit RGB PNG, 16-bit RGBA PNG (paper transparent) or half EXR, plus the
    colored first frame as an 8-bit PNG; returns the shot folder."""
    shot = make_shot(frames, 160, 90, seed=5)
    (root / "lineart").mkdir(parents=True)
    (root / "color").mkdir()
    write_image(root / "color" / "shot.1001.png", shot.color(0))
    for i in range(frames):
        rgb = shot.lineart(i)
        path = root / "lineart" / f"shot.{1001 + i}.{'exr' if kind == 'exr' else 'png'}"
        if kind == "png8":
            write_image(path, rgb)
        elif kind == "png16":
            paper = np.all(rgb == 255, axis=2)
            rgba = np.concatenate([rgb.astype(np.uint16) * 257, np.where(paper, 0, 65535)[..., None]], axis=2)
            write_image(path, rgba.astype(np.uint16))
        else:
            write_image(path, from_display_float(rgb.astype(np.float32) / 255, "half", "linear"))
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["colorize", str(root / "lineart"), "--ref", str(root / "color" / "shot.1001.png"), "-o", str(out), *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "report.json" and not p.name.endswith(".longanim-checkpoint.npz")}


def _report(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    return {k: v for k, v in report.items() if k not in ("seconds", "fps")}


@pytest.mark.parametrize("kind", ["png8", "png16", "exr"])
def test_engine_without_roots_writes_the_same_files_as_an_in_process_run(engine, tmp_path, kind):
    root = _write_shot(tmp_path / "shot", kind)
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(_args(root, local, "-q")) == 0
    assert main(_args(root, remote, "-q", "--engine", engine.url)) == 0
    expected = _files(local)
    assert len(expected) == 2 * N  # frames and confidence images
    assert _files(remote) == expected
    assert _report(remote) == _report(local)


def test_readme_example_serve_then_colorize_through_it(engine, tmp_path):
    """`longanim serve &` then `longanim colorize ... --engine URL`, both real processes,
    with the progress output the in-process run has."""
    root = _write_shot(tmp_path / "shot", "png8")
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(_args(root, local, "-q", "--frames", "1003-1010", "--set", "global_memory=false")) == 0
    proc = subprocess.run([sys.executable, "-m", "longanim",
                           *_args(root, remote, "--frames", "1003-1010", "--set", "global_memory=false",
                                  "--engine", engine.url)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _files(remote) == _files(local) and len(_files(local)) == 16
    progress = [line for line in proc.stderr.splitlines() if line.startswith("colorize (engine) ")]
    assert progress and progress[-1].startswith("colorize (engine) 8/8")
    assert f"8 frames -> {remote} in " in proc.stderr and f"via {engine.url}" in proc.stderr


def test_frames_are_streamed_not_read_whole(engine, tmp_path, monkeypatch):
    """Reading runs a bounded stretch ahead of the written results, not the whole shot."""
    from longanim.engine.sequences.reader import Sequence
    from longanim.engine.sequences.writer import SequenceWriter

    root = _write_shot(tmp_path / "shot", "png8", frames=100)
    counts = {"read": 0, "written": 0, "lead": 0}
    real_read, real_write = Sequence.read, SequenceWriter.write_display

    def read(self, n):
        counts["read"] += 1
        counts["lead"] = max(counts["lead"], counts["read"] - counts["written"])
        return real_read(self, n)

    def write_display(self, n, rgb, alpha=None):
        counts["written"] += 1
        return real_write(self, n, rgb, alpha)

    monkeypatch.setattr(Sequence, "read", read)
    monkeypatch.setattr(SequenceWriter, "write_display", write_display)
    assert main(_args(root, tmp_path / "out", "-q", "--engine", engine.url)) == 0
    assert counts["written"] == 100
    # 16 sent ahead of the results taken, 16 read and waiting to be sent (+1 in the reader's
    # hand), the pipeline's prefetch (4 + 1) and writes in flight (4 + 1), and the two reads
    # before streaming starts (the first frame, the keyframe's line art): never the shot.
    assert counts["lead"] <= 16 + 17 + 5 + 5 + 2, counts


def test_engine_errors_are_one_line_user_errors(engine, tmp_path, capsys):
    root = _write_shot(tmp_path / "shot", "png8", frames=3)
    assert main(_args(root, tmp_path / "out", "-q", "--engine", engine.url, "--backend", "nope")) == 2
    err = capsys.readouterr().err
    assert err.startswith("longanim colorize: error: engine ") and "unknown backend 'nope'" in err
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.parametrize("progress", ["bar", "openjd"])
def test_no_engine_fails_within_the_engine_timeout_with_the_retry_exit_code(tmp_path, capsys, progress):
    """No engine is a failure worth retrying (1), not bad input (2), whatever --progress says:
    a farm retries 1 and gives up on 2 (farm/README.md, exit codes)."""
    root = _write_shot(tmp_path / "shot", "png8", frames=2)
    url = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    code = main(_args(root, tmp_path / "out", "-q", "--engine", url, "--engine-timeout", "2", "--progress", progress))
    elapsed = time.monotonic() - t0
    captured = capsys.readouterr()
    print(f"no engine: `longanim colorize --engine-timeout 2 --progress {progress}` failed after {elapsed:.2f} s")
    assert code == 1
    assert elapsed < 2.0 + 0.5, elapsed
    err = captured.err
    assert f"no reply from the engine at {url}" in err and "within 2.0 s" in err
    assert "is `longanim serve` running there?" in err
    assert ("openjd_fail: " in captured.out) == (progress == "openjd")


def test_an_engine_killed_mid_shot_exits_1_whatever_the_progress(tmp_path):
    """The engine dies under a running job (OOM, a driver fault): exit 1 with bars or openjd lines."""
    root = _write_shot(tmp_path / "shot", "png8", frames=400)
    codes = {}
    for progress in ("bar", "openjd"):
        (tmp_path / progress).mkdir()
        engine = Engine(tmp_path / progress).start()
        out = tmp_path / progress / "out"
        proc = subprocess.Popen([sys.executable, "-m", "longanim", *_args(root, out, "--engine", engine.url,
                                 "--engine-timeout", "3", "--progress", progress)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while len(list(out.glob("shot.*.png"))) < 5:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
                time.sleep(0.05)
        finally:
            engine.kill()
        _, err = proc.communicate(timeout=60)
        codes[progress] = proc.returncode
        assert "longanim colorize: error: engine " in err, err[-2000:]
    assert codes == {"bar": 1, "openjd": 1}
