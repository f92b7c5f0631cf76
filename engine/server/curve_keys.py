"""CurveZMQ keys: ZeroMQ's own encryption and client authentication, used when the
engine listens beyond loopback (a GPU box shared by a team).

`longanim keys DIR` writes DIR/server.key (public, give to clients),
DIR/server.key_secret (engine only), DIR/client.key and DIR/client.key_secret.
The engine accepts a client only if that client's public key file is in the
--allowed-clients directory (by default DIR itself, which holds client.key).
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from longanim.engine.errors import InputError


def write_keys(directory: Path | str) -> dict[str, Path]:
    directory = Path(directory)
    if not zmq.has("curve"):
        raise InputError("this pyzmq/libzmq build has no CURVE support")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name in ("server", "client"):
        if (directory / f"{name}.key_secret").exists():
            raise InputError(f"{directory / (name + '.key_secret')} exists; refusing to overwrite keys")
    paths = {}
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(str(directory), name)
        os.chmod(secret, 0o600)
        paths[name] = Path(public)
        paths[name + "_secret"] = Path(secret)
    return paths


def load_server_secret(directory: Path | str) -> tuple[bytes, bytes]:
    path = Path(directory) / "server.key_secret"
    if not path.is_file():
        raise InputError(f"{path} not found; create keys with `longanim keys {directory}`")
    public, secret = zmq.auth.load_certificate(str(path))
    if not secret:
        raise InputError(f"{path} holds no secret key")
    return public, secret


def configure_server(socket: zmq.Socket, ctx: zmq.Context, keys_dir: Path | str,
                     allowed_clients: Path | str | None) -> ThreadAuthenticator:
    """Make `socket` a CURVE server accepting only the allowed client keys; returns the
    authenticator thread, which the caller stops at shutdown."""
    allowed = Path(allowed_clients or keys_dir)
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise InputError(f"--allowed-clients {allowed} holds no *.key public key files")
    public, secret = load_server_secret(keys_dir)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth
