"""A real `python -m longanim serve` process for tests: free loopback port, a
deadline on start-up, and a kill that always happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from longanim.protocol import messages as M
from longanim.protocol.client import EngineClient, EngineError
from longanim.protocol.wire import deserialize

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    def __init__(self, tmp: Path, *extra: str, port: int | None = None, cache: Path | None = None,
                 env: dict | None = None):
        self.tmp = Path(tmp)
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.cache = cache or self.tmp / "cache"
        self.token_file = self.tmp / f"engine-{self.port}.token"
        self.log_path = self.tmp / f"engine-{self.port}.log"
        self.args = ["--bind", self.url, "--cache", str(self.cache), "--token-file", str(self.token_file),
                     *extra]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True, curve=None) -> "Engine":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "longanim", "serve", *self.args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready(curve=curve)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S, curve=None) -> None:
        deadline = time.monotonic() + timeout
        with EngineClient(self.url, timeout=0.5, curve=curve) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    client.ping(timeout=0.5)
                    return
                except EngineError:
                    continue
        self.kill()
        raise RuntimeError(f"engine did not answer within {timeout} s:\n{self.log()}")

    def client(self, **kwargs) -> EngineClient:
        kwargs.setdefault("timeout", 10.0)
        return EngineClient(self.url, **kwargs)

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def stop(self) -> int | None:
        """SIGTERM, as a service manager would; returns the exit code."""
        self.kill(signal.SIGTERM)
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> "Engine":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.kill()


def reply_to(sock, msg, timeout_s: float = 10.0):
    """The reply whose parent is `msg` (sent here on the DEALER `sock`); events and other
    replies are skipped."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sock.poll(100):
            got = deserialize(sock.recv_multipart())
            if got.parent_id == msg.msg_id and got.msg_type not in M.EVENTS:
                return got
    raise AssertionError(f"no reply to {msg.msg_type} {msg.msg_id}")


def job_done(sock, job_id: str, timeout_s: float = 30.0) -> dict:
    """The content of the job's `job_done`; other messages are skipped."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sock.poll(100):
            got = deserialize(sock.recv_multipart())
            if got.msg_type == M.DONE and got.content["job_id"] == job_id:
                return got.content
    raise AssertionError(f"job {job_id} did not end")
