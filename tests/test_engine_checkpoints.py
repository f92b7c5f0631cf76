"""Checkpoints of path jobs (protocol 1.2): a real `longanim serve` with --roots keeps a shot's
checkpoint in its output folder as `longanim colorize` does, a job submitted again with
`resume` goes on from it after the engine was SIGKILLed, and the frames equal an
uninterrupted in-process run byte for byte. Bad values are refused at submit; a 1.1 client
that sends none of the fields gets what 1.1 gave."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zmq
from engine_helpers import Engine, job_done, reply_to
from longanim.commands import main
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.pipeline import checkpoints
from longanim.protocol import messages as M
from longanim.protocol.wire import make_message, serialize
from run_helpers import outputs

W, H, N = 160, 90, 160


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoint-roots")
    make_shot(N, W, H, seed=7).save(root / "shot", kinds=("lineart", "color"))
    return root


@pytest.fixture(scope="module")
def reference(root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(["colorize", str(root / "shot" / "lineart"), "--ref", str(root / "shot" / "color" / "shot.1001.png"),
                 "-o", str(out), "-q", "--checkpoint-every", "0"]) == 0
    return out


def _submit(client, root: Path, out: Path, **extra):
    return client.submit_paths(str(root / "shot" / "lineart"), [(str(root / "shot" / "color" / "shot.1001.png"), 1001)],
                               str(out), backend="paint", label="checkpoints", **extra)


def _content(root: Path, out: Path, **output) -> dict:
    return {"backend": "paint", "input": {"kind": "path", "lineart": str(root / "shot" / "lineart")},
            "refs": [{"path": str(root / "shot" / "color" / "shot.1001.png"), "frame": 1001}],
            "output": {"kind": "path", "path": str(out), **output}}


def _ask(sock, msg):
    sock.send_multipart(serialize(msg))
    return reply_to(sock, msg)

@pytest.fixture()
def sock(root, tmp_path):
    with Engine(tmp_path, "--roots", str(root), str(tmp_path)) as engine:
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(engine.url)
        try:
            yield s
        finally:
            s.close()


@pytest.mark.parametrize("output, named", [
    ({"checkpoint_every": -1}, "checkpoint_every must be 0"),
    ({"checkpoint_every": 10**7}, "checkpoint_every must be 0"),
    ({"checkpoint_every": "5"}, "'checkpoint_every' must be int"),
    ({"checkpoint_every": True}, "'checkpoint_every' must be int"),
    ({"checkpoint_every": 2.5}, "'checkpoint_every' must be int"),
    ({"resume": "yes"}, "'resume' must be bool"),
    ({"resume": 1}, "'resume' must be bool"),
])
def test_bad_checkpoint_values_are_refused_at_submit(sock, root, tmp_path, output, named):
    reply = _ask(sock, make_message(M.SUBMIT, "bad-values", _content(root, tmp_path / "out", **output)))
    assert reply.content["status"] == "error" and reply.content["error"]["code"] == "invalid_content", reply.content
    assert named in reply.content["error"]["message"]
    assert not (tmp_path / "out").exists()


def test_checkpoint_fields_need_a_path_output(sock):
    bufs: list = []
    frames = [{"number": 1, "array": M.array_desc(np.zeros((8, 8, 3), np.uint8), bufs)}]
    content = {"backend": "passthrough", "input": {"kind": "inline", "frames": frames},
               "output": {"kind": "inline", "resume": True}}
    reply = _ask(sock, make_message(M.SUBMIT, "inline-resume", content, buffers=bufs))
    assert reply.content["error"]["code"] == "invalid_content"
    assert "need a path output" in reply.content["error"]["message"]


def test_a_1_1_client_sending_no_checkpoint_fields_gets_no_checkpoint(sock, root, tmp_path, reference):
    msg = make_message(M.SUBMIT, "old-client", _content(root, tmp_path / "out"))
    msg.header["version"] = "1.1"
    reply = _ask(sock, msg)
    assert reply.content["status"] == "ok", reply.content
    done = job_done(sock, reply.content["job_id"], timeout_s=120.0)
    assert done["state"] == "done" and done["start"]["mode"] == "fresh", done
    assert not list((tmp_path / "out").glob(".*checkpoint*"))
    assert outputs(tmp_path / "out") == outputs(reference)


def test_engine_killed_mid_shot_then_a_resumed_job_gives_the_uninterrupted_frames(root, reference, tmp_path):
    out = tmp_path / "out"
    cache = tmp_path / "cache"  # the result cache on: a resumed job still needs the backend's state
    engine = Engine(tmp_path, "--roots", str(root), str(tmp_path), cache=cache).start()
    try:
        with engine.client() as client:
            job = _submit(client, root, out, checkpoint_every=10)
            for _ in job.results(timeout=60):
                if job.frames_done >= 45:
                    break
        engine.kill()  # SIGKILL: no word, no last checkpoint
    finally:
        engine.kill()
    saved = _checkpoint_frame(out)
    assert 1010 <= saved < 1001 + N - 1, saved
    assert not (out / "report.json").exists()

    again = Engine(tmp_path, "--roots", str(root), str(tmp_path), cache=cache).start()
    try:
        with again.client() as client:
            job = _submit(client, root, out, checkpoint_every=10, resume=True)
            assert job.wait(timeout=120) == "done", job.error
    finally:
        again.kill()
    assert job.start["mode"] == "resumed" and job.start["checkpoint_frame"] >= saved, job.start
    assert f"resumed from the checkpoint after frame {job.start['checkpoint_frame']}" in job.start["message"]
    assert job.summary["start"] == job.start
    report = json.loads((out / "report.json").read_text())
    assert report["start"]["mode"] == "resumed" and report["frames"] == list(range(1001, 1001 + N))
    assert outputs(out) == outputs(reference)


def test_cli_through_the_engine_resumes_an_in_process_checkpoint_and_refuses_another_shots(
        root, reference, tmp_path, capsys):
    """The checkpoint file is the CLI's: half a shot in-process, the rest through the engine."""
    out = tmp_path / "out"
    lineart, ref = str(root / "shot" / "lineart"), str(root / "shot" / "color" / "shot.1001.png")
    assert main(["colorize", lineart, "--ref", ref, "-o", str(out), "-q", "--frames", "1001-1070",
                 "--checkpoint-every", "10"]) == 0
    with Engine(tmp_path, "--roots", str(root), str(tmp_path), "--no-cache") as engine:
        refused = main(["colorize", lineart, "--ref", ref, "-o", str(out), "-q", "--resume", "--engine", engine.url,
                        "--set", "global_memory=false"])
        err = capsys.readouterr().err
        assert refused == 2 and "cannot resume" in err, err
        assert main(["colorize", lineart, "--ref", ref, "-o", str(out), "--resume", "--engine", engine.url,
                     "--progress", "openjd"]) == 0
    said = capsys.readouterr().out
    assert "openjd_status: resumed from the checkpoint after frame 1070: 70 frames were already written" in said
    assert "openjd_progress: 100.0" in said
    assert outputs(out) == outputs(reference)


def _checkpoint_frame(out: Path) -> int:
    with np.load(checkpoints.checkpoint_path(out, "shot"), allow_pickle=False) as z:
        return json.loads(z["header"].tobytes().decode())["frame"]
