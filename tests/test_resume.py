"""Checkpoints and resumed runs: a shot killed part way and resumed, or colorized in chunks,
gives the very bytes one uninterrupted run gives.

Real `python -m longanim colorize` subprocesses are killed (SIGKILL) and stopped (SIGTERM) after
a number of frames, then resumed; every output file is compared byte for byte with a full run.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from longanim.commands import main
from longanim.engine import pipeline
from longanim.engine.backends import create_backend
from longanim.engine.backends.base import Backend, Cancelled, ColoredFrame, Keyframe
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.pipeline import checkpoints
from run_helpers import outputs

N = 220  # frames 1001-1220: the chunk 1100-1200 of the README's example fits
W, H = 160, 90
KEYS = (1001, 1150)


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume-shot")
    make_shot(N, W, H, seed=5).save(root, kinds=("lineart", "color"))
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    refs = [a for n in KEYS for a in ("--ref", str(root / "color" / f"shot.{n}.png"))]
    return ["colorize", str(root / "lineart"), *refs, "-o", str(out), "-q", *extra]


@pytest.fixture(scope="module")
def full(shot, tmp_path_factory) -> Path:
    """One uninterrupted run of the whole shot, checkpoints off: the reference."""
    out = tmp_path_factory.mktemp("full") / "out"
    assert main(_args(shot, out, "--checkpoint-every", "0")) == 0
    assert not checkpoints.checkpoint_path(out, "shot").exists()
    return out


def _same_frames(out: Path, full: Path, frames) -> None:
    mine, theirs = outputs(out), outputs(full)
    names = [f"shot.{n}.png" for n in frames] + [f"confidence/shot.{n}.png" for n in frames]
    assert sorted(mine) == sorted(names)
    different = [name for name in names if mine[name] != theirs[name]]
    assert not different, f"{len(different)} files differ from the uninterrupted run, first {different[:3]}"


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if "partial" in p.name]


def _start_then(shot: Path, out: Path, frames_done: int, sig: int, *extra: str) -> subprocess.CompletedProcess:
    """A real CLI process, sent `sig` once it reports `frames_done` frames (openjd progress lines)."""
    cmd = [sys.executable, "-m", "longanim", *_args(shot, out, "--progress", "openjd", *extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("openjd_progress:") and float(line.split(":")[1]) >= 100.0 * frames_done / N - 1e-6:
            proc.send_signal(sig)
            break
    out_rest, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines) + out_rest, err)


def test_sigkilled_run_resumes_byte_identical(shot, full, tmp_path, capsys):
    out = tmp_path / "out"
    killed = _start_then(shot, out, 57, signal.SIGKILL, "--checkpoint-every", "10")
    assert killed.returncode == -signal.SIGKILL
    written = len(list(out.glob("shot.*.png")))
    assert 50 <= written < N and not (out / "report.json").exists()
    assert main(_args(shot, out, "--resume", "--progress", "openjd")) == 0
    said = capsys.readouterr().out
    assert "openjd_status: resumed from the checkpoint after frame 10" in said  # 1050 or later
    report = json.loads((out / "report.json").read_text())
    assert report["start"]["mode"] == "resumed" and 1050 <= report["start"]["checkpoint_frame"] < 1001 + N - 1
    _same_frames(out, full, range(1001, 1001 + N))
    theirs = json.loads((full / "report.json").read_text())
    for key in ("frames", "needs_review", "review_fraction", "review_stretches"):
        assert report[key] == theirs[key]
    assert not _partials(out)


def test_sigterm_saves_a_checkpoint_leaves_no_partial_file_and_resumes(shot, full, tmp_path, capsys):
    out = tmp_path / "out"
    stopped = _start_then(shot, out, 33, signal.SIGTERM, "--checkpoint-every", "1000")
    assert stopped.returncode == 143, stopped.stderr
    assert "openjd_status: cancelled" in stopped.stdout
    assert not _partials(out) and not (out / "report.json").exists()
    last = max(int(p.name.split(".")[1]) for p in out.glob("shot.*.png"))
    saved = checkpoints.load_checkpoint(checkpoints.checkpoint_path(out, "shot"),
                                     json.loads(json.dumps(_identity(shot))))
    # Saved on the way out (every 1000 frames would not have), after the last frame written.
    assert saved.frame == last and sorted(saved.done) == list(range(1001, last + 1))
    assert main(_args(shot, out, "--resume")) == 0
    _same_frames(out, full, range(1001, 1001 + N))


def test_chunk_warms_up_then_next_chunk_resumes_from_its_checkpoint(shot, full, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(shot, out, "--frames", "1100-1200")) == 0
    said = capsys.readouterr().err
    assert "warm-up: frames 1001-1099 are run without writing them" in said
    _same_frames(out, full, range(1100, 1201))
    # The next chunk starts from the checkpoint the first left at its end: no warm-up.
    assert main(_args(shot, out, "--frames", "1201-1220")) == 0
    said = capsys.readouterr().err
    assert "resumed from the checkpoint after frame 1200" in said and "warm-up" not in said
    _same_frames(out, full, range(1100, 1221))


def test_a_cold_chunk_would_differ(shot, full):
    """What the warm-up is for: starting at frame 1100 from the keyframes alone (the old
    behaviour) colors frames differently from the whole-shot run."""
    seq = make_shot(N, W, H, seed=5)
    keys = [Keyframe(n, seq.color(n - 1001), seq.lineart(n - 1001)) for n in KEYS]
    cold = create_backend("paint").colorize(((n, seq.lineart(n - 1001)) for n in range(1100, 1201)), keys)
    theirs = outputs(full)
    from longanim.engine.sequences.image_files import read_image

    differ = sum(not np.array_equal(f.rgb, read_image(full / f"shot.{f.number}.png").pixels[..., :3]) for f in cold)
    assert differ > 10 and len(theirs) == 2 * N


def test_mismatching_checkpoint_is_refused_with_resume(shot, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(shot, out, "--frames", "1001-1020")) == 0
    capsys.readouterr()
    assert main(_args(shot, out, "--resume", "--set", "gap_close=2")) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "gap_close" in err and "delete it to start over" in err
    # A run without --resume starts over and replaces it.
    assert main(_args(shot, out, "--frames", "1001-1005", "--set", "gap_close=2")) == 0


def test_checkpoint_file_is_npz_with_a_header_and_no_pickles(shot, tmp_path):
    out = tmp_path / "out"
    assert main(_args(shot, out, "--frames", "1001-1012", "--checkpoint-every", "5")) == 0
    path = checkpoints.checkpoint_path(out, "shot")
    with np.load(path, allow_pickle=False) as z:  # would raise on any object array
        header = json.loads(z["header"].tobytes().decode())
        assert all(z[name].dtype != object for name in z.files)
    assert header["format"] == "longanim-checkpoint" and header["version"] == checkpoints.CHECKPOINT_VERSION
    assert header["frame"] == 1012 and header["identity"]["options"]["gap_close"] == 1
    assert header["identity"]["code"] and header["identity"]["keyframes"]["frames"] == list(KEYS)
    # Anything else in its place is refused, not read.
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoints.CheckpointMismatch, match="cannot be read"):
        checkpoints.load_checkpoint(path, header["identity"])


@pytest.mark.parametrize("cut", [1, 29, 149, 150])
def test_paint_state_round_trip_gives_the_same_frames(cut):
    """The backend alone: frames after a state saved, written to .npz and read back, equal
    those of one run (the cut at 149/150 straddles a keyframe)."""
    seq = make_shot(170, 120, 68, seed=2)
    frames = [(1001 + i, seq.lineart(i)) for i in range(170)]
    keys = [Keyframe(n, seq.color(n - 1001), seq.lineart(n - 1001)) for n in KEYS]
    paint = create_backend("paint")
    whole = [f.rgb for f in paint.colorize(frames, keys)]
    state = None
    for _, snapshot in paint.colorize_resumable(frames[:cut], keys):
        state = snapshot()
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    state = dict(np.load(buffer, allow_pickle=False))
    rest = [f.rgb for f, _ in paint.colorize_resumable(frames[cut:], keys, state)]
    assert len(rest) == len(whole) - cut
    assert all(np.array_equal(a, b) for a, b in zip(whole[cut:], rest))


def _identity(shot: Path) -> dict:
    from longanim.engine.sequences.reader import open_sequence

    whole = open_sequence(shot / "lineart")
    keys = pipeline.load_keyframes([pipeline.RefSpec(shot / "color" / f"shot.{n}.png", n) for n in KEYS], whole,
                                   default_frame=1001)
    return checkpoints.shot_identity(whole, keys, create_backend("paint"))


class _Segments(Backend):
    """A resumable backend that, like a diffusion model, can stop only at the end of a segment
    (every 4 frames): a running mean of the line art colors each frame, and a state is handed
    out at segment ends only."""

    name = "segments-test"
    resumable = True
    SEGMENT = 4

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        for result, _ in self.colorize_resumable(frames, keyframes):
            yield result

    def colorize_resumable(self, frames, keyframes, state=None, *, progress=None, cancelled=None):
        total = None if state is None else state["total"].copy()
        count = 0 if state is None else int(state["count"])
        for number, rgb in frames:
            total = rgb.astype(np.int64) if total is None else total + rgb
            count += 1
            out = (total // count).astype(np.uint8)
            state = {"total": total.copy(), "count": np.array(count)} if count % self.SEGMENT == 0 else None
            yield ColoredFrame(number, out, np.ones(out.shape[:2], np.float32)), (None if state is None else state.copy)


def test_a_backend_that_stops_only_at_segment_ends_is_checkpointed_there_and_resumes(shot, tmp_path, monkeypatch):
    refs = [pipeline.RefSpec(shot / "color" / "shot.1001.png", 1001)]
    whole = tmp_path / "whole"
    pipeline.colorize_shot(shot / "lineart", refs, whole, backend=_Segments(), frames=(1001, 1030))
    saved = []
    real_save = checkpoints.save_checkpoint

    def spy(path, identity, frame, *args, **kwargs):
        saved.append(frame)
        return real_save(path, identity, frame, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_checkpoint", spy)
    out = tmp_path / "out"
    polls = iter(range(1, 100))
    with pytest.raises(Cancelled):
        # a save every 3 frames is due mid-segment: each waits for its segment's end
        pipeline.colorize_shot(shot / "lineart", refs, out, backend=_Segments(), frames=(1001, 1030),
                               checkpoint_every=3, cancelled=lambda: next(polls) > 14)
    assert saved == [1004, 1008, 1012], saved  # cancelled at 1014-1015: no state there, 1012's stands
    report = pipeline.colorize_shot(shot / "lineart", refs, out, backend=_Segments(), frames=(1001, 1030),
                                    checkpoint_every=3, resume=True)
    assert report.start["mode"] == "resumed" and report.start["checkpoint_frame"] == 1012
    assert outputs(out) == outputs(whole)
