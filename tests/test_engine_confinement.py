"""What a client's paths and options may reach, against a real engine process.

Each test plants what a hostile or careless client could (a symlinked folder, an output
folder that is the keyframes' folder, a weights folder or a device of its choosing, a
FIFO) and checks that the engine refuses it, writes nothing it should not, and goes on
serving. Where the engine must check again while the job runs, the trap is planted
after submit, while a first job holds the only worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import Engine
from longanim.engine.errors import InputError
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.pipeline import RefSpec, colorize_shot
from longanim.protocol import messages as M
from longanim.protocol.client import EngineError

FIRST = 1001
TIMEOUT = 20.0


@pytest.fixture
def storage(tmp_path) -> tuple[Path, Path]:
    """root/ (the engine's --roots) holding lineart/ and color/ of a 4-frame shot, and an
    outside/ folder beside it that no job may touch."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_shot(num_frames=4, width=64, height=48, seed=2).save(root)
    outside.mkdir()
    return root, outside


def _ref(root: Path) -> list[tuple[str, int]]:
    return [(str(root / "color" / f"shot.{FIRST}.png"), FIRST)]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hold_the_worker(client) -> str:
    """A job whose streamed input never completes: it holds the engine's one CPU worker
    until cancelled, so a job submitted next waits in the queue."""
    bufs: list = []
    content = {"backend": "passthrough", "cache": False, "input": {"kind": "inline", "more": True, "frames": [
        {"number": 0, "array": M.array_desc(np.zeros((8, 8, 3), np.uint8), bufs)}]}}
    job_id = client.request(M.SUBMIT, content, bufs).content["job_id"]
    deadline = time.monotonic() + TIMEOUT
    while client.status(job_id)[0]["state"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    return job_id


def _serves_a_later_job(client) -> bool:
    job = client.submit_frames([(0, np.full((4, 4, 3), 7, np.uint8))], backend="passthrough", cache=False)
    return job.wait(TIMEOUT) == "done"


def _inline_submit(client, backend: str, options: dict):
    frame = np.full((16, 16, 3), 255, np.uint8)
    return client.submit_frames([(1, frame)], keyframes=[(1, frame)], backend=backend, options=options,
                                cache=False)


# --------------------------------------------------------------------------- 1. folders made on the way


def test_a_confidence_folder_planted_as_a_symlink_out_of_the_roots_after_submit_fails_the_job(storage, tmp_path):
    root, outside = storage
    out = root / "out"
    out.mkdir()
    stale = outside / f".shot.{FIRST}.png.partial-keep"  # what the stale-temporary sweep would delete
    stale.write_bytes(b"not the engine's")
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        blocker = _hold_the_worker(c)
        job = c.submit_paths(str(root / "lineart"), _ref(root), str(out), backend="paint")
        os.symlink(outside, out / "confidence")  # planted while the job waits
        c.cancel(blocker)
        with pytest.raises(EngineError, match="outside the engine's roots"):
            list(job.results(timeout=TIMEOUT))
        assert job.error["code"] == "forbidden"
        assert _serves_a_later_job(c)
    assert _snapshot(outside) == {stale.name: b"not the engine's"}


# Each line-art frame is checked where it resolves as it is opened (`roots.check_input_file`,
# passed through colorize_shot to the sequence reader), not only when the job was accepted.
def test_a_frame_swapped_for_a_symlink_out_of_the_roots_mid_job_fails_the_job_naming_it(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_shot(num_frames=60, width=160, height=96, seed=2).save(root)
    outside.mkdir()
    secret = outside / "secret.png"
    secret.write_bytes((root / "lineart" / f"shot.{FIRST + 30}.png").read_bytes())  # valid, outside the roots
    victim = root / "lineart" / f"shot.{FIRST + 59}.png"
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        job = c.submit_paths(str(root / "lineart"), _ref(root), str(root / "out"), backend="paint")
        deadline = time.monotonic() + TIMEOUT
        while job.frames_done < 2 and not job.final and time.monotonic() < deadline:
            c.poll(0.02)
            job.poll()
        assert not job.final and job.frames_done >= 2, "the job was not running when the frame was swapped"
        victim.unlink()
        os.symlink(secret, victim)  # swapped after the job's start-up checks
        with pytest.raises(EngineError, match=f"shot.{FIRST + 59}.png"):
            list(job.results(timeout=TIMEOUT))
        assert job.error["code"] == "forbidden", job.error
        assert _serves_a_later_job(c)
    assert not (root / "out" / f"shot.{FIRST + 59}.png").exists(), "the frame outside the roots was colorized"


def test_an_input_file_is_checked_where_it_resolves_when_it_is_opened(storage):
    from longanim.engine.sequences.image_files import read_image
    from longanim.engine.server.confinement import Roots

    root, outside = storage
    roots = Roots([root])
    frame = root / "lineart" / f"shot.{FIRST}.png"
    assert roots.check_input_file(frame) == frame.resolve()
    (outside / "secret.png").write_bytes(frame.read_bytes())
    link = root / "lineart" / f"shot.{FIRST + 1}.png"
    link.unlink()
    os.symlink(outside / "secret.png", link)
    with pytest.raises(M.ProtocolError, match="outside the engine's roots") as refused:
        roots.check_input_file(link)
    assert refused.value.code == "forbidden" and link.name in str(refused.value)
    os.symlink(root / "lineart", root / "inside-link")
    assert roots.check_input_file(root / "inside-link" / frame.name) == frame.resolve()  # a link within the roots
    fifo = root / "lineart" / f"shot.{FIRST + 2}.png"
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):  # the reader refuses what it opened
        read_image(roots.check_input_file(fifo))


def test_a_confidence_symlink_out_of_the_roots_is_refused_at_submit(storage, tmp_path):
    root, outside = storage
    out = root / "out"
    out.mkdir()
    os.symlink(outside, out / "confidence")
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        with pytest.raises(EngineError, match="outside the engine's roots") as err:
            c.submit_paths(str(root / "lineart"), _ref(root), str(out), backend="paint")
        assert err.value.code == "forbidden"
    assert _snapshot(outside) == {}


# --------------------------------------------------------------------------- 2. outputs over inputs


@pytest.mark.parametrize("folder", ["color", "lineart"])
def test_an_output_folder_holding_inputs_is_refused_at_submit(storage, tmp_path, folder):
    root, _ = storage
    before = _snapshot(root)
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        with pytest.raises(EngineError) as err:
            c.submit_paths(str(root / "lineart"), _ref(root), str(root / folder), backend="paint")
        assert err.value.code == "forbidden"
        assert str(root / folder) in str(err.value)
        input_named = str(root / "color" / f"shot.{FIRST}.png") if folder == "color" else str(root / "lineart")
        assert input_named in str(err.value)
    assert _snapshot(root) == before


def test_an_output_folder_turned_into_the_keyframes_folder_after_submit_overwrites_nothing(storage, tmp_path):
    root, _ = storage
    (root / "out").mkdir()
    before = _snapshot(root / "color")
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        blocker = _hold_the_worker(c)
        job = c.submit_paths(str(root / "lineart"), _ref(root), str(root / "out"), backend="paint")
        (root / "out").rmdir()
        os.symlink(root / "color", root / "out")  # inside the roots, but the keyframes' folder
        c.cancel(blocker)
        with pytest.raises(EngineError, match="keyframe"):
            list(job.results(timeout=TIMEOUT))
        assert _serves_a_later_job(c)
    assert _snapshot(root / "color") == before


def test_the_cli_refuses_an_output_folder_that_holds_the_keyframes(storage):
    root, _ = storage
    ref = root / "color" / f"shot.{FIRST}.png"
    before = _snapshot(root / "color")
    with pytest.raises(InputError, match="keyframe") as err:
        colorize_shot(root / "lineart", [RefSpec(ref, FIRST)], root / "color")
    assert str(root / "color") in str(err.value) and str(ref) in str(err.value)
    assert _snapshot(root / "color") == before


# --------------------------------------------------------------------------- 3. weights


def test_weights_must_lie_inside_the_weights_roots(storage, tmp_path):
    root, outside = storage
    weights_root = tmp_path / "models"
    (weights_root / "release").mkdir(parents=True)
    os.symlink(outside, weights_root / "link_out")
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        with pytest.raises(EngineError, match="--weights-roots") as err:
            _inline_submit(c, "longanimation", {"weights": str(weights_root / "release")})
        assert err.value.code == "forbidden"
    with Engine(tmp_path, "--roots", str(root), "--weights-roots", str(weights_root)) as engine, \
            engine.client() as c:
        for bad in (str(outside), str(weights_root / "link_out"), "release", str(root)):
            with pytest.raises(EngineError) as err:
                _inline_submit(c, "longanimation", {"weights": bad})
            assert err.value.code == "forbidden", bad
            assert "weights" in str(err.value)
        with pytest.raises(EngineError) as err:
            _inline_submit(c, "longanimation", {"weights": 7})
        assert err.value.code == "invalid_content"
        job = _inline_submit(c, "longanimation", {"weights": str(weights_root / "release")})
        assert job.id  # accepted; the empty folder fails the job later, which is not this test's concern
        c.cancel(job.id)
        assert _serves_a_later_job(c)


# --------------------------------------------------------------------------- 4. devices


@pytest.mark.parametrize("backend", ["passthrough", "paint"])
def test_a_client_may_not_choose_the_device(storage, tmp_path, backend):
    root, _ = storage
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        with pytest.raises(EngineError, match="device") as err:
            _inline_submit(c, backend, {"device": "cuda:0"})
        assert err.value.code == "invalid_content"
        with pytest.raises(EngineError, match="device") as err:
            c.submit_paths(str(root / "lineart"), _ref(root), str(root / "out"), backend=backend,
                           options={"device": "cpu"})
        assert err.value.code == "invalid_content"
        assert _serves_a_later_job(c)


# --------------------------------------------------------------------------- 5. special files


def test_a_fifo_as_keyframe_or_line_art_is_refused_at_submit(storage, tmp_path):
    root, _ = storage
    os.mkfifo(root / "key.1001.png")
    os.mkfifo(root / "line.0001.png")
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        for lineart, ref in [(str(root / "lineart"), str(root / "key.1001.png")),
                             (str(root / "line.0001.png"), str(root / "color" / f"shot.{FIRST}.png"))]:
            with pytest.raises(EngineError, match="FIFO") as err:
                c.submit_paths(lineart, [(ref, FIRST)], str(root / "out"), backend="paint")
            assert err.value.code == "invalid_content"
        assert _serves_a_later_job(c)


def test_a_keyframe_swapped_for_a_fifo_after_submit_fails_the_job_and_the_worker_goes_on(storage, tmp_path):
    root, _ = storage
    ref = root / "color" / f"shot.{FIRST}.png"
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        blocker = _hold_the_worker(c)
        job = c.submit_paths(str(root / "lineart"), [(str(ref), FIRST)], str(root / "out"), backend="paint")
        ref.unlink()
        os.mkfifo(ref)  # a regular file at submit, a FIFO when the worker reads it
        c.cancel(blocker)
        with pytest.raises(EngineError, match="FIFO"):
            list(job.results(timeout=TIMEOUT))
        assert job.error["code"] == "input_error"
        assert _serves_a_later_job(c)


def test_the_cli_refuses_a_fifo_keyframe_instead_of_hanging(storage):
    root, _ = storage
    os.mkfifo(root / "key.png")
    try:
        out = subprocess.run([sys.executable, "-m", "longanim", "colorize", str(root / "lineart"),
                              "--ref", f"{root / 'key.png'}:{FIRST}", "-o", str(root / "out"), "-q"],
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("longanim colorize hung reading a FIFO keyframe")
    assert out.returncode == 2, out.stderr
    assert "FIFO" in out.stderr and str(root / "key.png") in out.stderr


def test_opening_a_fifo_as_a_line_art_sequence_names_the_problem(tmp_path):
    from longanim.engine.sequences.reader import open_sequence

    os.mkfifo(tmp_path / "line.0001.png")
    with pytest.raises(InputError, match="FIFO"):
        open_sequence(tmp_path / "line.0001.png")


# --------------------------------------------------------------------------- the pieces underneath


def test_the_pipeline_checks_every_folder_and_file_it_writes(storage):
    root, _ = storage
    out = root / "out"
    seen: list[Path] = []
    colorize_shot(root / "lineart", [RefSpec(root / "color" / f"shot.{FIRST}.png", FIRST)], out,
                  confine=lambda path: seen.append(Path(path)))
    written = {p for p in out.rglob("*") if p.is_file()}
    assert len(written) == 4 + 4 + 1  # frames, confidence maps, report.json
    assert written <= set(seen)
    assert {out, out / "confidence"} <= set(seen)
    temporaries = [p for p in seen if ".partial-" in p.name]
    assert len(temporaries) == len(written) and not any(p.exists() for p in temporaries)


def test_exr_is_decoded_from_the_checked_bytes_without_stream_support(tmp_path, monkeypatch):
    import OpenEXR
    from longanim.engine.sequences.image_files import read_image, write_image

    pixels = np.random.default_rng(0).random((6, 5, 4)).astype(np.float16)
    write_image(tmp_path / "a.exr", pixels)
    expected = read_image(tmp_path / "a.exr").pixels
    by_name = OpenEXR.File

    def names_only(source, *args, **kwargs):  # OpenEXR before 3.5: no stream constructor
        if not isinstance(source, str):
            raise TypeError("incompatible constructor arguments")
        return by_name(source, *args, **kwargs)

    monkeypatch.setattr(OpenEXR, "File", names_only)
    np.testing.assert_array_equal(read_image(tmp_path / "a.exr").pixels, expected)
    np.testing.assert_array_equal(expected, pixels)
