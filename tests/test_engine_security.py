"""Security: loopback by default, CurveZMQ beyond it, file access confined to roots.

No test sends traffic to a non-loopback address: the refusal to bind one happens
before any socket is opened, and CurveZMQ is exercised on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import Engine, free_port
from longanim.engine.errors import InputError
from longanim.engine.server.confinement import Roots
from longanim.engine.server.control_loop import ServeConfig, check_bind, is_loopback
from longanim.protocol.client import CurveKeys, EngineClient, EngineError
from longanim.protocol.messages import ProtocolError


def test_binding_all_interfaces_without_keys_is_refused(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "longanim", "serve", "--bind", f"tcp://0.0.0.0:{free_port()}",
         "--token-file", str(tmp_path / "t")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "refusing to listen on" in out.stderr and "longanim keys" in out.stderr and "--insecure" in out.stderr
    assert not (tmp_path / "t").exists()  # it stopped before starting anything


@pytest.mark.parametrize("bind, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/engine", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://192.168.1.10:5555", False), ("tcp://gpu-box:5555", False),
])
def test_loopback_detection(bind, loopback):
    assert is_loopback(bind) is loopback
    if not loopback:
        with pytest.raises(InputError):
            check_bind(ServeConfig(bind=bind))
        check_bind(ServeConfig(bind=bind, insecure=True))
        check_bind(ServeConfig(bind=bind, curve_keys="/keys"))


def test_keys_command_writes_private_secrets(tmp_path):
    from longanim.commands import main

    keys = tmp_path / "keys"
    assert main(["keys", str(keys)]) == 0
    assert {p.name for p in keys.iterdir()} == {"server.key", "server.key_secret", "client.key", "client.key_secret"}
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    assert main(["keys", str(keys)]) == 2  # never overwrites existing keys


def test_curve_engine_admits_only_listed_clients(tmp_path):
    from longanim.engine.server.curve_keys import write_keys

    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    write_keys(keys)
    write_keys(stranger)
    good = CurveKeys.from_dir(keys)
    engine = Engine(tmp_path, "--curve-keys", str(keys))
    engine.start(curve=good)
    try:
        with EngineClient(engine.url, curve=good, timeout=5) as c:
            assert c.hello()["protocol_version"]
            job = c.submit_frames([(1, np.full((4, 4, 3), 9, np.uint8))], backend="passthrough")
            assert next(job.results(30)).rgb[0, 0, 0] == 9
        # Right server key, but a client key the engine does not list: no answer at all.
        unlisted = CurveKeys.from_dir(stranger)
        unlisted.server_public = good.server_public
        for curve in (unlisted, None):
            with EngineClient(engine.url, curve=curve, timeout=0.5) as c:
                with pytest.raises(EngineError) as err:
                    c.ping()
                assert err.value.code == "timeout"
        with EngineClient(engine.url, curve=good, timeout=5) as c:
            assert c.ping() > 0
    finally:
        engine.kill()


def test_curve_without_allowed_client_keys_refuses_to_start(tmp_path):
    from longanim.engine.server.curve_keys import write_keys

    write_keys(tmp_path / "keys")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-m", "longanim", "serve", "--bind", f"tcp://127.0.0.1:{free_port()}",
                          "--curve-keys", str(tmp_path / "keys"), "--allowed-clients", str(empty), "--no-cache",
                          "--token-file", str(tmp_path / "t")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "holds no *.key" in out.stderr


@pytest.fixture
def storage(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "shots").mkdir(parents=True)
    (root / "shots" / "a.png").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"s")
    os.symlink(outside, root / "link_out")
    os.symlink(outside / "secret.png", root / "shots" / "b.png")
    os.symlink(root / "shots", root / "link_in")
    return root, outside


def test_roots_confine_inputs_and_outputs(storage):
    root, outside = storage
    roots = Roots([root])
    assert roots.resolve_input(str(root / "shots" / "a.png")) == (root / "shots" / "a.png").resolve()
    assert roots.resolve_input(str(root / "link_in" / "a.png")).parent == (root / "shots").resolve()
    assert roots.resolve_output(str(root / "new" / "out")) == (root / "new" / "out").resolve()
    for bad, code in [
        (str(root / "shots" / ".." / ".." / "outside" / "secret.png"), "'..'"),
        ("shots/a.png", "absolute"),
        (str(root / "link_out" / "secret.png"), "outside the engine's roots"),
        (str(root / "shots" / "b.png"), "outside the engine's roots"),
        (str(outside / "secret.png"), "outside the engine's roots"),
        (str(root) + "\x00/x", "NUL"),
    ]:
        with pytest.raises(ProtocolError, match=code) as err:
            roots.resolve_input(bad)
        assert err.value.code == "forbidden"
    with pytest.raises(ProtocolError, match="outside"):
        roots.resolve_output(str(root / "link_out" / "results"))
    with pytest.raises(ProtocolError, match="outside"):
        roots.check_file(root / "shots" / "b.png")
    with pytest.raises(ProtocolError, match="without --roots"):
        Roots([]).resolve_input(str(root / "shots" / "a.png"))
    # A root that is a prefix of another name is not its parent.
    (root.parent / "root2").mkdir()
    with pytest.raises(ProtocolError, match="outside"):
        roots.resolve_output(str(root.parent / "root2" / "x"))


def test_engine_refuses_paths_outside_its_roots(storage, tmp_path):
    root, outside = storage
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        assert c.capabilities()["input_kinds"] == ["inline", "path"]
        attempts = [
            (str(outside / "secret.png"), str(root / "out")),
            (str(root / "link_out" / "secret.png"), str(root / "out")),
            (str(root / "shots" / "a.png"), str(root / "link_out" / "stolen")),
            (str(root / "shots" / ".." / "shots" / "a.png"), str(root / "out")),
        ]
        for lineart, output in attempts:
            with pytest.raises(EngineError) as err:
                c.submit_paths(lineart, [(str(root / "shots" / "a.png"), 1)], output)
            assert err.value.code == "forbidden", (lineart, output)
        with pytest.raises(EngineError) as err:  # a reference outside the roots
            c.submit_paths(str(root / "shots" / "a.png"), [(str(outside / "secret.png"), 1)], str(root / "out"))
        assert err.value.code == "forbidden"
        assert not (outside / "stolen").exists()
        assert c.ping() > 0


def test_a_symlinked_frame_inside_an_input_folder_fails_the_job(tmp_path):
    from longanim.engine.evaluation.synthetic import make_shot

    root, outside = tmp_path / "root", tmp_path / "outside"
    shot = make_shot(num_frames=4, width=64, height=48, seed=2)
    shot.save(root, frames=range(3))
    shot.save(outside, kinds=("lineart",), frames=[3])
    os.symlink(outside / "lineart" / "shot.1004.png", root / "lineart" / "shot.1004.png")
    with Engine(tmp_path, "--roots", str(root)) as engine, engine.client() as c:
        job = c.submit_paths(str(root / "lineart"), [(str(root / "color" / "shot.1001.png"), 1001)],
                             str(root / "out"), backend="paint")
        with pytest.raises(EngineError, match="outside the engine's roots"):
            list(job.results(timeout=30))
        assert job.error["code"] == "forbidden"
    assert not (root / "out").exists() or not any((root / "out").iterdir())
