"""The engine as a process: files on shared storage, the CLI against it, kill -9 and
restart, shutdown."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import Engine

from longanim.commands import main as cli
from longanim.engine.evaluation.synthetic import make_shot
from longanim.engine.sequences.image_files import read_image
from longanim.protocol import messages as M
from longanim.protocol.client import EngineError

FIRST = 1001


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A shared-storage root holding an 80-frame line-art shot and its first colored frame."""
    root = tmp_path_factory.mktemp("storage")
    make_shot(num_frames=80, width=320, height=180, seed=5).save(root / "shot", kinds=("lineart",))
    make_shot(num_frames=80, width=320, height=180, seed=5).save(root / "shot", kinds=("color",), frames=[0])
    return root


def _files(folder: Path) -> dict[str, bytes]:
    """Output files by relative path; hidden names are writers' temporary files, which a
    killed process may leave behind and which never match a frame pattern."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "report.json" and not p.name.startswith(".")}


def _colorize_args(root: Path, out: Path, frames: str) -> list[str]:
    return ["colorize", str(root / "shot" / "lineart"), "--ref", str(root / "shot" / "color" / f"shot.{FIRST}.png"),
            "-o", str(out), "--backend", "paint", "--frames", frames, "-q"]


def test_cli_through_the_engine_writes_byte_identical_files(root, tmp_path, capsys):
    local, remote, again = root / "out_local", root / "out_remote", root / "out_again"
    assert cli(_colorize_args(root, local, f"{FIRST}-{FIRST + 11}")) == 0
    with Engine(tmp_path, "--roots", str(root)) as engine:
        assert cli(_colorize_args(root, remote, f"{FIRST}-{FIRST + 11}") + ["--engine", engine.url]) == 0
        assert cli(_colorize_args(root, again, f"{FIRST}-{FIRST + 11}") + ["--engine", engine.url]) == 0
        assert cli(["status", "--engine", engine.url, "--token-file", str(engine.token_file)]) == 0
        listing = capsys.readouterr().out
        with engine.client() as c:
            jobs = c.request(M.STATUS, {"all": True, "token": engine.token()}).content["jobs"]
    expected = _files(local)
    assert len(expected) == 24  # 12 frames + 12 confidence images
    assert _files(remote) == expected
    assert _files(again) == expected
    assert (remote / "report.json").is_file()
    assert [j["frames_cached"] for j in jobs] == [0, 12]  # the re-run came from the cache
    assert all(j["job_id"] in listing and "done" in listing for j in jobs)


def test_cli_reports_engine_errors_as_user_errors(root, tmp_path, capsys):
    with Engine(tmp_path, "--roots", str(root / "shot" / "color")) as engine:
        code = cli(_colorize_args(root, root / "nope", f"{FIRST}-{FIRST + 1}") + ["--engine", engine.url])
    assert code == 2 and "outside the engine's roots" in capsys.readouterr().err


def test_kill_9_mid_job_then_restart_reuses_finished_frames(root, tmp_path):
    cache = tmp_path / "cache"
    out = root / "out_killed"
    lineart, ref = str(root / "shot" / "lineart"), str(root / "shot" / "color" / f"shot.{FIRST}.png")
    engine = Engine(tmp_path, "--roots", str(root), cache=cache).start()
    try:
        with engine.client() as c:
            job = c.submit_paths(lineart, [(ref, FIRST)], str(out), backend="paint")
            finished: list[int] = []
            deadline = time.monotonic() + 60
            while len(finished) < 5 and time.monotonic() < deadline:
                finished += [r.number for r in job.poll(0.1)]
            assert len(finished) >= 5 and not job.final, "the job should still be running"
            engine.kill()  # SIGKILL: no clean-up at all
    finally:
        engine.kill()
    assert engine.proc.returncode == -9
    # Whatever was written is whole: atomic writes leave complete files or none.
    written = sorted(out.glob("shot.*.png"))
    assert len(written) >= len(finished)
    for path in written:
        assert read_image(path).width == 320

    with Engine(tmp_path, "--roots", str(root), cache=cache, port=engine.port) as restarted:
        with restarted.client() as c:
            job = c.submit_paths(lineart, [(ref, FIRST)], str(out), backend="paint")
            results = {r.number: r for r in job.results(timeout=60)}
    assert job.state == "done" and len(results) == 80
    assert all(results[n].cached for n in finished)
    assert not all(r.cached for r in results.values())
    # Same bytes as an uninterrupted in-process run.
    assert cli(["colorize", lineart, "--ref", ref, "-o", str(root / "out_clean"), "--backend", "paint", "-q"]) == 0
    assert _files(out) == _files(root / "out_clean")


def test_shutdown_needs_the_token_and_sigterm_exits_cleanly(tmp_path):
    engine = Engine(tmp_path).start()
    try:
        assert engine.token_file.stat().st_mode & 0o077 == 0  # readable by the user only
        with engine.client() as c:
            with pytest.raises(EngineError) as err:
                c.shutdown(token="guess")
            assert err.value.code == "unauthorized"
            c.shutdown(token=engine.token())
        assert engine.proc.wait(20) == 0
        assert not engine.token_file.exists()
    finally:
        engine.kill()
    second = Engine(tmp_path).start()
    assert second.stop() == 0


def test_serve_refuses_a_port_in_use_and_bad_roots(tmp_path):
    with Engine(tmp_path) as engine:
        out = subprocess.run([sys.executable, "-m", "longanim", "serve", "--bind", engine.url, "--no-cache",
                              "--token-file", str(tmp_path / "t2")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "cannot listen on" in out.stderr
    out = subprocess.run([sys.executable, "-m", "longanim", "serve", "--roots", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a directory" in out.stderr


@pytest.mark.parametrize("flag, value, message", [
    ("--backlog-mb", "-1", "--backlog-mb must be 0 or more"),
    ("--backlog-mb", "nan", "--backlog-mb must be 0 or more"),
    ("--forget-after", "0", "--forget-after must be a positive number of seconds"),
    ("--max-message-mb", "nan", "--max-message-mb must be positive"),
])
def test_serve_refuses_bad_limits_with_a_message(flag, value, message):
    out = subprocess.run([sys.executable, "-m", "longanim", "serve", "--bind", "tcp://127.0.0.1:0", flag, value],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_client_notices_a_restarted_engine_and_fails_the_lost_job(tmp_path):
    import numpy as np

    from longanim.protocol import messages as M

    engine = Engine(tmp_path).start()
    try:
        with engine.client(heartbeat_s=0.2, timeout=5) as c:
            bufs: list = []
            content = {"backend": "passthrough", "input": {"kind": "inline", "more": True, "frames": [
                {"number": 0, "array": M.array_desc(np.zeros((4, 4, 3), np.uint8), bufs)}]}}
            reply = c.request(M.SUBMIT, content, bufs)
            from longanim.protocol.client import Job

            job = Job(c, reply.content["job_id"], reply)
            c._register(job)
            engine.kill()
            with pytest.raises(EngineError) as err:  # silence: heartbeats fail, the client reconnects
                list(job.results(timeout=2))
            assert err.value.code == "timeout" and c.reconnects >= 1 and not job.final
            with Engine(tmp_path, port=engine.port) as restarted:
                with pytest.raises(EngineError) as err:
                    list(job.results(timeout=30))
                assert err.value.code == "lost" and job.state == "failed"
                assert c.ping() > 0 and c.hello()["engine_session"] != ""
                assert restarted.proc.poll() is None
    finally:
        engine.kill()


def test_result_cache_is_atomic_and_damage_reads_as_a_miss(tmp_path):
    import numpy as np

    from longanim.engine.server.result_cache import ResultCache, digest

    cache = ResultCache(tmp_path / "c")
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    key = digest("k", 1)
    cache.put_arrays(key, {"rgb": rgb, "confidence": np.ones((2, 3), np.float32)}, {"regions": 2})
    arrays, info = ResultCache(tmp_path / "c").get_arrays(key)  # a new engine sees it
    assert np.array_equal(arrays["rgb"], rgb) and info == {"regions": 2}
    assert not [p for p in (tmp_path / "c").rglob("*") if p.name.startswith(".tmp-")]
    path = next((tmp_path / "c").rglob("*.lrc"))
    data = path.read_bytes()
    for damaged in (data[:-1], data[:10], b"", b"garbage" + data[7:]):
        path.write_bytes(damaged)
        assert cache.get_arrays(key) is None
    assert ResultCache(None).get_arrays(key) is None and not ResultCache(None).enabled
    assert digest("a", np.zeros(2, np.uint8)) != digest("a", np.zeros(2, np.uint16))


def test_result_cache_evicts_least_recently_used_entries(tmp_path):
    import os

    import numpy as np

    from longanim.engine.server.result_cache import ResultCache

    cache = ResultCache(tmp_path / "c", max_bytes=3500)
    blob = np.zeros(1000, np.uint8)
    for i, key in enumerate(["a" * 64, "b" * 64, "c" * 64]):
        cache.put_arrays(key, {"rgb": blob})
        path = next((tmp_path / "c").rglob(f"{key}.lrc"))
        os.utime(path, (1000 + i, 1000 + i))  # a before b before c
    assert cache.get_arrays("a" * 64) is not None  # a is now the most recently used
    cache.put_arrays("d" * 64, {"rgb": blob})  # over the limit: b goes, then c
    kept = {p.stem[0] for p in (tmp_path / "c").rglob("*.lrc")}
    assert kept == {"a", "d"} and cache.size_bytes <= 3500 * 0.9
    assert ResultCache(tmp_path / "c", max_bytes=3500).size_bytes == cache.size_bytes
