"""Fuzzing a real `longanim serve`: a million malformed and mutated messages over one
DEALER socket, a ping every 0.5 s on a second one, and the engine's memory before,
during and after.

    python bench/bench_fuzz.py [--count 1000000] [--seed 1] [--quick] [--out bench/results/fuzz.md]

The engine is started as a separate process (`python -m longanim serve`) on a free
loopback port with a temporary cache, token file and `--roots` folder (which holds a
tiny PNG shot, so path jobs are reachable). Before the baseline is taken it runs one job
of each backend and a path job, so lazy imports (cv2, torch for `longanimation`) are
not counted as growth. Then the fuzzer sends `--count` messages in a seeded mix (see
KINDS) without waiting for each reply: at most `--window` requests are unanswered at a
time, and replies are drained as they come. Every request must get exactly one reply;
replies arrive in the order of the requests (one control loop), so each is matched to
its request by position and checked against the `parent_header.msg_id` the engine can
read from that request. Meanwhile a separate process pings the engine every 0.5 s: a
ping unanswered within 5 s is a hang; the engine process exiting is a crash.
After the last reply the jobs the fuzzer created are cancelled, and the script waits
(up to 30 s) for `status_request` to show no queued or running job and for the RSS to
stop falling. Exit status: 0, or 1 on a crash or a hang.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import math
import multiprocessing
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import msgpack
import numpy as np
import zmq

from longanim.protocol import messages as M
from longanim.protocol.wire import (
    DELIMITER,
    MAX_BUFFERS,
    N_MAP_FRAMES,
    PROTOCOL_VERSION,
    make_message,
    serialize,
    unpack_map,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fuzz.md"
DEFAULT_COUNT = 1_000_000
QUICK_COUNT = 20_000
PING_INTERVAL_S = 0.5
HANG_S = 5.0
SILENCE_S = 10.0  # no reply at all for this long while requests are out: they are unanswered
DRAIN_S = 30.0
RSS_BOUND_MIB = 64.0
JOB_SESSION = "fuzz-jobs"
CANCEL_AFTER_S = 4.0  # jobs the fuzzer made are cancelled after this, so none holds the worker 30 s
VALID_CANCEL_AFTER_S = 20.0  # the valid_submit jobs get longer: they wait behind the others

# (kind, weight): the seeded mix. Weights are relative; see Fuzzer.<kind> for what each makes.
KINDS = [
    ("random_bytes", 10.0),   # 1-8 frames of random bytes (sometimes after a real delimiter)
    ("frame_count", 7.0),     # a valid message with frames cut, added, or put before the delimiter
    ("header", 14.0),         # valid message, header mutated: missing keys, wrong types, huge, version, msg_id, seq
    ("msg_type", 3.0),        # unknown or engine-side message types
    ("content", 24.0),        # valid message of every request type, content mutated
    ("buffers", 11.0),        # array descriptors that disagree with the buffers
    ("msgpack", 12.0),        # truncated, bit-flipped, trailing-garbage, non-map, ext-typed frames
    ("unknown_job", 6.0),     # append/cancel/status/reattach naming job ids the engine never made
    ("real_job", 7.0),        # append/cancel/reattach/status for job ids the engine made
    ("replay", 2.0),          # an earlier message sent again byte for byte (retries, dedup)
    ("valid", 3.7),           # unmutated requests of every type (shutdown with a wrong token)
    ("valid_submit", 0.3),    # tiny inline paint jobs (and a few passthrough / path jobs) that run
]

HUGE_SIZES = (257, 300, 4096, 65536, 1 << 20)
SPECIAL_NUMBERS = (float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324, 2**63 - 1, -(2**63),
                   2**64 - 1, -1, 0, 1 << 32, 10**9 + 1, -(10**9) - 1)
WEIRD_STRINGS = ("", " ", "\x00", "null", "../..", "/", "\u202e\u0000x", "\U0001f600" * 3, "1.0", "paint ",
                 "%s%s%n", "\n", "<LONGANIM|MSG>", "a" * 256)
DEEP_MARK = "\x00DEEP\x00"
DEEP_PACKED = msgpack.packb(DEEP_MARK)
KEY_POOL = ("backend", "options", "input", "keyframes", "refs", "output", "cache", "confidence", "label",
            "job_id", "frames", "more", "resend", "token", "protocol_version", "client", "all", "kind",
            "number", "array", "buffer", "shape", "dtype", "color", "lineart", "path", "frame", "ext",
            "_buffers", "_paths", "_sent", "status", "error", "x")


# -- memory of a process tree ------------------------------------------------------------

def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[ppid].append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class RssMeter:
    """VmRSS of a process and its descendants, in MiB (descendants re-scanned every 2 s)."""

    def __init__(self, pid: int):
        self.pid = pid
        self._kids: list[int] = []
        self._scanned = 0.0

    def __call__(self) -> float:
        now = time.monotonic()
        if now - self._scanned > 2.0:
            self._kids, self._scanned = descendants(self.pid), now
        return sum(_status_kib(p, "VmRSS:") for p in [self.pid, *self._kids]) / 1024.0

    def hwm(self) -> float:
        return sum(_status_kib(p, "VmHWM:") for p in [self.pid, *self._kids]) / 1024.0

    @property
    def children(self) -> int:
        return len(self._kids)


# -- the pinger (a separate process, so the fuzzer's own CPU use does not inflate RTTs) ----

def pinger(url: str, pid: int, stop, results) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    rss = RssMeter(pid)
    rtts, hangs, samples, pings = [], [], [], []
    peak = (0.0, 0.0)
    t_start = time.monotonic()

    def sample() -> None:
        nonlocal peak
        value = rss()
        now = time.monotonic() - t_start
        if value > peak[0]:
            peak = (value, now)
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((round(now, 2), round(value, 1)))

    next_ping = time.monotonic()
    while not stop.is_set():
        sample()
        if time.monotonic() < next_ping:
            time.sleep(min(0.1, max(0.0, next_ping - time.monotonic())))
            continue
        msg = make_message(M.PING, "fuzz-pinger", {})
        t0 = time.perf_counter()
        sock.send_multipart(serialize(msg))
        answered = False
        deadline = t0 + HANG_S
        while not answered and (left := deadline - time.perf_counter()) > 0:
            if sock.poll(int(min(left, 0.1) * 1000) + 1):
                reply = sock.recv_multipart()
                try:
                    answered = msgpack.unpackb(reply[2]).get("msg_id") == msg.msg_id
                except Exception:
                    pass
            else:
                sample()
        if answered:
            rtts.append((time.perf_counter() - t0) * 1000.0)
            pings.append((time.monotonic() - rtts[-1] / 1000.0, rtts[-1]))
        else:
            hangs.append(round(time.monotonic() - t_start, 2))
            if not os.path.exists(f"/proc/{pid}"):
                break
        next_ping = t0 + PING_INTERVAL_S
    sample()
    sock.close()
    ctx.term()
    results.put({"rtts_ms": rtts, "hangs_at_s": hangs, "peak_mib": peak[0], "peak_at_s": peak[1],
                 "samples": samples, "slowest": sorted(pings, key=lambda p: -p[1])[:5]})


# -- the engine process -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EngineProcess:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.roots = tmp / "roots"
        self.token_file = tmp / "engine.token"
        self.log_path = tmp / "engine.log"
        self.args = ["serve", "--bind", self.url, "--cache", str(tmp / "cache"),
                     "--token-file", str(self.token_file), "--roots", str(self.roots)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "longanim", *self.args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
        return self.proc.returncode if self.proc else None


def request(sock: zmq.Socket, msg_type: str, content: dict, timeout_s: float = 10.0, buffers=None,
            session: str = "fuzz-control", events: list | None = None) -> dict | None:
    """Send one request and wait for its reply (events that arrive meanwhile go to `events`)."""
    msg = make_message(msg_type, session, content, buffers=buffers)
    sock.send_multipart(serialize(msg))
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(int(left * 1000) + 1):
            break
        frames = sock.recv_multipart()
        header = msgpack.unpackb(frames[1])
        if header.get("msg_type") in M.EVENTS:
            if events is not None:
                events.append((header["msg_type"], msgpack.unpackb(frames[4])))
            continue
        if msgpack.unpackb(frames[2]).get("msg_id") == msg.msg_id:
            return msgpack.unpackb(frames[4])
    return None


def wait_ready(engine: EngineProcess, sock: zmq.Socket, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not engine.alive:
            raise SystemExit(f"the engine exited with {engine.proc.returncode}:\n{engine.log()}")
        if request(sock, M.PING, {}, timeout_s=0.5) is not None:
            return
    raise SystemExit(f"the engine did not answer within {timeout_s} s:\n{engine.log()}")


# -- pixels and a tiny shot on disk ---------------------------------------------------------

def tiny_cel(size: int, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """A white frame with a black box outline (line art) and its colored keyframe."""
    line = np.full((size, size, 3), 255, np.uint8)
    a, b = 2 + variant % 3, size - 3 - (variant // 3) % 3
    line[a, a:b + 1] = line[b, a:b + 1] = line[a:b + 1, a] = line[a:b + 1, b] = 0
    color = line.copy()
    color[a + 1:b, a + 1:b] = ((37 * variant) % 256, 90, 200)
    color[:a] = (200, 220, 255)
    return line, color


def write_shot(roots: Path) -> dict:
    import cv2

    shot = roots / "shot"
    shot.mkdir(parents=True)
    (roots / "out").mkdir()
    for n in (1, 2, 3):
        line, color = tiny_cel(24, n)
        cv2.imwrite(str(shot / f"line.{n:04d}.png"), line)
        if n == 1:
            cv2.imwrite(str(shot / "key.0001.png"), color[..., ::-1])
    return {"lineart": str(shot / "line.####.png"), "key": str(shot / "key.0001.png"), "out": str(roots / "out")}


# -- the fuzzer -------------------------------------------------------------------------------

def expected_parent(frames: list) -> str | None:
    """The `parent_header.msg_id` the engine can put on its reply to `frames`: what it reads
    of the header frame (control_loop._best_effort_header, or the whole header), else none."""
    if len(frames) < 2:
        return None
    try:
        header = unpack_map(frames[1], "header")
    except Exception:
        return None
    mid = header.get("msg_id")
    return mid if isinstance(mid, str) and 0 < len(mid) <= 256 else None


class Fuzzer:
    def __init__(self, seed: int, shot: dict, token: str):
        import random

        self.rng = random.Random(seed)
        self.shot = shot
        self.token = token
        self.kinds = [k for k, _ in KINDS]
        self.request_types = tuple(M.SCHEMAS)  # every request type the engine has a schema for
        self.cum_weights = list(np.cumsum([w for _, w in KINDS]))
        self.sessions = [f"fuzz-s{i}" for i in range(40)]
        self.huge = {n: "h" * n for n in HUGE_SIZES}
        self.cels = [tiny_cel(12, v) for v in range(9)]
        self.cel_bytes = [(line.tobytes(), color.tobytes()) for line, color in self.cels]
        self.alpha_bytes = np.tile(np.array([0, 255], np.uint8), 72).tobytes()  # 12x12, half transparent
        self.jobs: collections.OrderedDict[str, dict] = collections.OrderedDict()  # job id -> facts
        self.recent: collections.deque = collections.deque(maxlen=64)  # frames of recent cases, for replay
        self.live_valid = 0  # valid_submit jobs not yet ended
        self.paint_variant = 0
        self.seq = 0
        self.subkinds: collections.Counter = collections.Counter()
        self.last_sub: list[str] = []  # the sub-kinds of the case being made

    # -- helpers --------------------------------------------------------------------

    def tag(self, sub: str) -> None:
        self.subkinds[sub] += 1
        self.last_sub.append(sub)

    def session(self) -> str:
        r = self.rng.random()
        if r < 0.7:
            return self.rng.choice(self.sessions)
        if r < 0.9:
            return f"fuzz-{self.rng.getrandbits(48):x}"
        return self.rng.choice(WEIRD_STRINGS[1:]) or "s"

    def huge_str(self) -> str:
        # 1 MiB strings are rare: they cost bandwidth, and a million of them would be a different test
        r = self.rng.random()
        size = HUGE_SIZES[0 if r < 0.3 else 1 if r < 0.55 else 2 if r < 0.85 else 3 if r < 0.985 else 4]
        return self.huge[size]

    def deep_bytes(self) -> bytes:
        depth = self.rng.choice((64, 500, 1000, 1100, 5000, 100_000) if self.rng.random() < 0.05
                                else (64, 500, 1000, 1100))
        return (b"\x91" if self.rng.random() < 0.5 else b"\x81\xa1k") * depth + b"\xc0"

    def rand_value(self, depth: int = 0):
        r = self.rng.random()
        rng = self.rng
        if r < 0.08:
            return None
        if r < 0.16:
            return rng.random() < 0.5
        if r < 0.30:
            return rng.choice(SPECIAL_NUMBERS)
        if r < 0.40:
            return rng.randint(-5, 40)
        if r < 0.50:
            return rng.uniform(-1e6, 1e6)
        if r < 0.62:
            return rng.choice(WEIRD_STRINGS)
        if r < 0.68:
            return rng.randbytes(rng.randint(0, 24))
        if r < 0.80 and depth < 3:
            return [self.rand_value(depth + 1) for _ in range(rng.randint(0, 4))]
        if r < 0.92 and depth < 3:
            return {rng.choice(KEY_POOL): self.rand_value(depth + 1) for _ in range(rng.randint(0, 4))}
        if r < 0.96:
            return self.huge_str()
        if r < 0.985:
            return DEEP_MARK
        return rng.randint(-(2**63), 2**64 - 1)

    def pack(self, obj) -> bytes:
        blob = msgpack.packb(obj, use_bin_type=True)
        while DEEP_PACKED in blob:
            blob = blob.replace(DEEP_PACKED, self.deep_bytes(), 1)
        return blob

    def frames_of(self, msg: M.Message | None = None, *, header=None, parent=None, metadata=None,
                  content=None, buffers=None) -> list:
        """Frames of a message; any part given replaces the message's (a dict is packed, bytes used)."""
        parts = [header if header is not None else msg.header,
                 parent if parent is not None else msg.parent_header,
                 metadata if metadata is not None else msg.metadata,
                 content if content is not None else msg.content]
        packed = [p if isinstance(p, (bytes, bytearray)) else self.pack(p) for p in parts]
        return [DELIMITER, *packed, *(buffers if buffers is not None else msg.buffers)]

    def message(self, msg_type: str, content: dict, buffers=(), seq: bool | None = None) -> M.Message:
        if seq is None:
            seq = self.rng.random() < 0.15
        number = None
        if seq:
            self.seq += 1
            number = self.seq if self.rng.random() < 0.8 else self.rng.randint(0, 20)  # small: reuse
        msg = make_message(msg_type, self.session(), content, buffers=list(buffers), seq=number)
        if self.rng.random() < 0.1:
            msg.parent_header = {"msg_id": f"p-{self.rng.getrandbits(32):x}"}
        if self.rng.random() < 0.05:
            msg.metadata = {"fuzz": self.rand_value()}
        return msg

    def frame_desc(self, number: int, buffers: list, variant: int | None = None) -> dict:
        v = self.rng.randrange(len(self.cels)) if variant is None else variant
        buffers.append(self.cel_bytes[v][0])
        return {"number": number, "array": {"buffer": len(buffers) - 1, "shape": [12, 12, 3], "dtype": "uint8"}}

    def key_desc(self, number: int, buffers: list, variant: int) -> dict:
        buffers.append(self.cel_bytes[variant][1])
        return {"number": number, "color": {"buffer": len(buffers) - 1, "shape": [12, 12, 3], "dtype": "uint8"}}

    def inline_submit(self, backend: str | None = None, more: bool = False, n: int | None = None) -> tuple[dict, list]:
        rng = self.rng
        backend = backend or rng.choice(("paint", "paint", "passthrough"))
        bufs: list = []
        variant = rng.randrange(len(self.cels))
        first = rng.randint(-5, 1000)
        frames = [self.frame_desc(first + i, bufs, variant) for i in range(n or rng.randint(1, 3))]
        content = {"backend": backend, "input": {"kind": "inline", "frames": frames, "more": more},
                   "keyframes": [self.key_desc(first, bufs, variant)] if backend != "passthrough" else [],
                   "output": {"kind": "inline"}, "cache": rng.random() < 0.5, "confidence": rng.random() < 0.3,
                   "label": "fuzz"}
        if rng.random() < 0.3:
            content["options"] = {"gap_close": rng.randint(0, 2)} if backend == "paint" else {}
        if content["keyframes"] and rng.random() < 0.25:  # 1.1: line art on transparent film
            bufs.append(self.alpha_bytes)
            content["keyframes"][0]["alpha"] = {"buffer": len(bufs) - 1, "shape": [12, 12], "dtype": "uint8"}
        return content, bufs

    def path_submit(self) -> dict:
        rng = self.rng
        content = {"backend": "paint", "input": {"kind": "path", "lineart": self.shot["lineart"], "frames": None},
                   "refs": [{"path": self.shot["key"], "frame": 1}],
                   "output": {"kind": "path", "path": f"{self.shot['out']}/{rng.randrange(4)}", "ext": None},
                   "cache": rng.random() < 0.5, "label": "fuzz-path"}
        if rng.random() < 0.3:  # 1.1: missing frames skipped instead of refused
            content["input"]["allow_gaps"] = rng.random() < 0.5
        if rng.random() < 0.3:  # 1.2: checkpoints in the output folder, and resuming from them
            content["output"]["checkpoint_every"] = rng.choice((0, 1, 2, 1000))
            content["output"]["resume"] = rng.random() < 0.5
        return content

    def valid_content(self, msg_type: str) -> tuple[dict, list]:
        rng = self.rng
        if msg_type == M.HELLO:
            return {"protocol_version": rng.choice((PROTOCOL_VERSION, "1.7", "1.0")), "client": "fuzz"}, []
        if msg_type == M.SUBMIT:
            r = rng.random()
            if r < 0.15:
                return self.path_submit(), []
            return self.inline_submit(more=r > 0.9)
        if msg_type == M.APPEND:
            bufs: list = []
            frames = [self.frame_desc(rng.randint(0, 2000), bufs) for _ in range(rng.randint(0, 2))]
            return {"job_id": self.job_id(), "frames": frames, "more": rng.random() < 0.5}, bufs
        if msg_type == M.CANCEL:
            return {"job_id": self.job_id()}, []
        if msg_type == M.STATUS:
            r = rng.random()
            if r < 0.4:
                return {}, []
            if r < 0.7:
                return {"job_id": self.job_id()}, []
            return {"all": True, "token": rng.choice(("", "0" * 64, f"{rng.getrandbits(256):064x}"))}, []
        if msg_type == M.REATTACH:
            return {"job_id": self.job_id(), "resend": rng.random() < 0.5}, []
        if msg_type == M.SHUTDOWN:
            token = rng.choice(("", "0" * 64, f"{rng.getrandbits(256):064x}", self.token[:-1] + "x"))
            assert token != self.token
            return {"token": token}, []
        return {}, []  # capabilities, ping

    def job_id(self) -> str:
        if self.jobs and self.rng.random() < 0.5:
            return self.rng.choice(list(self.jobs)[-64:])
        return f"{self.rng.getrandbits(128):032x}"

    def valid_message(self, msg_type: str | None = None) -> M.Message:
        msg_type = msg_type or self.rng.choice(self.request_types)
        content, bufs = self.valid_content(msg_type)
        return self.message(msg_type, content, bufs)

    # -- kinds ----------------------------------------------------------------------------

    def case(self) -> tuple[str, list]:
        import bisect

        kind = self.kinds[bisect.bisect(self.cum_weights, self.rng.random() * self.cum_weights[-1])]
        self.last_sub = []
        frames = getattr(self, kind)()
        if frames is None:  # a kind with nothing to do now (e.g. no real job yet)
            self.last_sub = []
            kind, frames = "content", self.content()
        if kind != "replay":
            self.recent.append(frames)
        return kind, frames

    def random_bytes(self) -> list:
        rng = self.rng
        frames = [rng.randbytes(rng.choice((0, 1, 4, 14, 16, 64, rng.randint(0, 300)))) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.4:
            frames[0] = DELIMITER
        self.tag("random_bytes")
        return frames

    def frame_count(self) -> list:
        rng = self.rng
        frames = self.frames_of(self.valid_message())
        op = rng.choice(("cut", "cut", "prefix", "no_delimiter", "extra", "empty", "many"))
        if op == "many" and rng.random() > 0.0005:  # a message with more than MAX_BUFFERS frames: rare
            op = "extra"
        self.tag(f"frame_count.{op}")
        if op == "cut":
            return frames[:rng.randint(1, N_MAP_FRAMES)]
        if op == "prefix":
            return [rng.choice((b"", b"id", DELIMITER, rng.randbytes(5))), *frames]
        if op == "no_delimiter":
            return frames[1:]
        if op == "extra":
            return [*frames, *([b""] * rng.randint(1, 64))]
        if op == "empty":
            return [b""] * rng.randint(1, 6)
        return [*frames, *([b""] * (MAX_BUFFERS + 1))]

    def header(self) -> list:
        rng = self.rng
        msg = self.valid_message()
        header = dict(msg.header)
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(("drop", "type", "huge", "empty", "version", "version", "msg_id", "msg_id", "seq",
                             "unknown", "not_map", "int_key", "ext"))
            key = rng.choice(("msg_id", "msg_type", "version", "session", "date", "seq"))
            self.tag(f"header.{op}")
            if op == "drop":
                header.pop(key, None)
            elif op == "type":
                header[key] = rng.choice((None, 1, 1.0, True, [], {}, b"bytes", ["x"], float("nan")))
            elif op == "huge":
                header[key] = self.huge_str()
            elif op == "empty":
                header[key] = ""
            elif op == "version":
                header["version"] = rng.choice(("2.0", "0.9", "1", "1.0.0", "a.b", "1.x", "9999999.0", "1.1",
                                                "01.0", " 1.0", "1.0 ", "\u0661.\u0660", "1.-1", "+1.0", "1_0.0",
                                                "1.0\x00", "٢.0", "", "." * 300, 1.0, None, 10))
            elif op == "msg_id":
                header["msg_id"] = rng.choice(("", "a" * 257, "a" * 256, 5, None,
                                               b"id", f"\u00e9\u202e{rng.getrandbits(40):x}", "\x00",
                                               ["id"], {"id": 1}, f"x{rng.getrandbits(64):x}" * 20))
            elif op == "seq":
                header["seq"] = rng.choice((-1, True, False, 1.5, 2**64 - 1, "1", None, 0, float("nan"),
                                            rng.randint(0, 30), [1]))
            elif op == "unknown":
                header[rng.choice(KEY_POOL)] = self.rand_value()
            elif op == "not_map":
                return self.frames_of(msg, header=msgpack.packb(rng.choice(([], 1, "header", None, [header]))))
            elif op == "int_key":
                return self.frames_of(msg, header=msgpack.packb({**header, 1: "x"}))
            else:
                return self.frames_of(msg, header=msgpack.packb({**header, "x": msgpack.ExtType(1, b"ext")}))
        return self.frames_of(msg, header=header)

    def msg_type(self) -> list:
        rng = self.rng
        msg = self.valid_message()
        msg.header["msg_type"] = rng.choice(("", "bogus_request", "PING_REQUEST", "ping_reply", "result",
                                             "progress", "job_done", "error", "hello_request\x00", "_request",
                                             "request", "submit", "x" * 256, "ping_request ", " ping_request"))
        self.tag("msg_type")
        return self.frames_of(msg)

    def content(self) -> list:
        rng = self.rng
        msg_type = rng.choice(self.request_types)
        msg = self.valid_message(msg_type)
        content = msg.content
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(("drop", "drop", "type", "type", "special", "unknown", "nested", "nested", "nested",
                             "huge", "deep", "not_map", "path" if msg_type == M.SUBMIT else "type",
                             "options" if msg_type == M.SUBMIT else "unknown",
                             "v1x" if msg_type == M.SUBMIT else "drop"))
            self.tag(f"content.{op}")
            schema = list(M.SCHEMAS[msg_type]) or ["x"]
            if op == "drop":
                if content:
                    content.pop(rng.choice(list(content)))
            elif op == "type":
                content[rng.choice(schema)] = self.rand_value()
            elif op == "special":
                content[rng.choice(schema)] = rng.choice(SPECIAL_NUMBERS)
            elif op == "unknown":
                content[rng.choice(KEY_POOL) if rng.random() < 0.7 else f"new_{rng.getrandbits(16)}"] = self.rand_value()
            elif op == "nested":
                self.mutate_nested(content)
            elif op == "huge":
                content[rng.choice(schema)] = self.huge_str()
            elif op == "deep":
                content[rng.choice(schema)] = DEEP_MARK
            elif op == "not_map":
                return self.frames_of(msg, content=msgpack.packb(rng.choice(([], 0, "content", None, [content]))))
            elif op == "path":
                self.mutate_paths(content)
            elif op == "options":
                content["options"] = {rng.choice(("gap_close", "global_memory", "memory_capacity",
                                                  "review_threshold", "device", "weights", "x")): self.rand_value()
                                      for _ in range(rng.randint(1, 3))}
                content["backend"] = rng.choice(("paint", "passthrough", "longanimation", "paint"))
            elif op == "v1x":
                self.mutate_v1x(content, msg.buffers)
        return self.frames_of(msg)

    def mutate_v1x(self, content: dict, buffers: list) -> None:
        """The fields protocol 1.1 and 1.2 added: keyframe alpha, allow_gaps, checkpoint_every, resume."""
        rng = self.rng
        inp, out, keys = content.get("input"), content.get("output"), content.get("keyframes")
        field = rng.choice(("alpha", "alpha", "allow_gaps", "checkpoint_every", "checkpoint_every", "resume"))
        if field == "alpha":
            if not (isinstance(keys, list) and keys and isinstance(keys[0], dict)):
                return
            n = rng.randint(0, len(buffers) + 1)
            keys[0]["alpha"] = rng.choice((
                {"buffer": n, "shape": [12, 12], "dtype": "uint8"},  # maybe a colour buffer, maybe none
                {"buffer": n, "shape": [12, 12, 1], "dtype": "uint8"},
                {"buffer": n, "shape": [6, 24], "dtype": "uint8"},
                {"buffer": n, "shape": [12, 12], "dtype": rng.choice(("float32", "uint16", "bool", "x"))},
                {"buffer": -1, "shape": [12, 12], "dtype": "uint8"},
                self.rand_value(), None))
            self.tag("content.v1x.alpha")
            return
        if field == "allow_gaps":
            if not isinstance(inp, dict):
                return
            inp["allow_gaps"] = rng.choice((True, False, None, 1, 0, "yes", [], {}, 1.0))
            if rng.random() < 0.5 and inp.get("kind") != "path":  # an inline job naming a path-only field
                inp["kind"] = rng.choice(("inline", "path"))
        else:
            if not isinstance(out, dict):
                return
            if field == "checkpoint_every":
                out["checkpoint_every"] = rng.choice((-1, 0, 1, 1_000_000, 1_000_001, 2**63, 1.5, True, "2", None,
                                                      float("nan"), []))
            else:
                out["resume"] = rng.choice((True, False, None, 1, "true", [], {}))
            if rng.random() < 0.3:
                out["kind"] = "inline"  # checkpoints asked of an inline job
        self.tag(f"content.v1x.{field}")

    def mutate_nested(self, content: dict) -> None:
        """Pick a map or list somewhere inside and mutate one entry of it."""
        rng = self.rng
        spots = []

        def walk(obj, depth):
            if depth > 5:
                return
            if isinstance(obj, dict):
                spots.append(obj)
                for v in obj.values():
                    walk(v, depth + 1)
            elif isinstance(obj, list):
                spots.append(obj)
                for v in obj:
                    walk(v, depth + 1)

        walk(content, 0)
        spot = rng.choice(spots)
        if isinstance(spot, dict):
            keys = list(spot)
            r = rng.random()
            if keys and r < 0.35:
                del spot[rng.choice(keys)]
            elif keys and r < 0.8:
                spot[rng.choice(keys)] = self.rand_value() if rng.random() < 0.7 else rng.choice(SPECIAL_NUMBERS)
            else:
                spot[rng.choice(KEY_POOL)] = self.rand_value()
        else:
            r = rng.random()
            if spot and r < 0.3:
                spot.pop(rng.randrange(len(spot)))
            elif spot and r < 0.7:
                spot[rng.randrange(len(spot))] = self.rand_value()
            elif spot and r < 0.85:
                spot.extend([spot[0]] * rng.randint(1, 3))  # repeated entries: frame numbers twice
            else:
                spot.append(self.rand_value())

    def mutate_paths(self, content: dict) -> None:
        rng = self.rng
        inp, out = content.get("input"), content.get("output")
        if not (isinstance(inp, dict) and inp.get("kind") == "path" and isinstance(out, dict)):
            content.clear()
            content.update(self.path_submit())
        roots = str(Path(self.shot["out"]).parent)
        bad = rng.choice(("relative/line.####.png", f"{roots}/../etc/passwd", "/etc/passwd", "/",
                          f"{roots}/shot/\x00.png", f"{roots}/nope/line.####.png", f"{roots}/shot",
                          f"{roots}/{'a' * 300}/line.####.png", f"{roots}/" + "a/" * 3000, f"{roots}/{'b' * 300}",
                          f"{roots}/shot/line.%04d.png", f"{roots}/shot/key.0001.png", "", roots,
                          f"{roots}/shot/line.####.exr", "~/x", f"//{roots}", f"{roots}/shot/./line.####.png"))
        where = rng.choice(("lineart", "ref", "output", "frames"))
        if where == "lineart":
            content["input"]["lineart"] = bad
        elif where == "ref":
            content["refs"] = [{"path": bad, "frame": rng.choice((1, None, -1, 10**9, 2**63 - 1))}]
        elif where == "output":
            content["output"]["path"] = bad
            content["output"]["ext"] = rng.choice((None, "png", "exr", "tif", "jpg", "", "../x", "png\x00", 5))
        else:
            content["input"]["frames"] = rng.choice(([1, 3], [3, 1], [1], [], [1, 2, 3], [0, 10**12], [-(2**63), 2**63 - 1],
                                                     [1.0, 2.0], [True, False], ["1", "2"], None, [2, 2]))

    def buffers(self) -> list:
        rng = self.rng
        append = rng.random() < 0.3
        if append:
            bufs: list = []
            frames = [self.frame_desc(rng.randint(0, 99), bufs) for _ in range(rng.randint(1, 3))]
            content = {"job_id": self.job_id(), "frames": frames, "more": True}
            descs = [f["array"] for f in frames]
        else:
            content, bufs = self.inline_submit(backend=rng.choice(("paint", "passthrough")))
            descs = [f["array"] for f in content["input"]["frames"]] + [k["color"] for k in content["keyframes"]]
        bufs = list(bufs)
        for _ in range(rng.randint(1, 2)):
            op = rng.choice(("index", "shape", "shape", "dtype", "size", "size", "drop_buffer", "extra_buffer",
                             "huge_shape", "same_buffer", "valid_other", "many"))
            self.tag(f"buffers.{op}")
            desc = rng.choice(descs)
            if op == "index":
                desc["buffer"] = rng.choice((-1, len(bufs), len(bufs) + 1, 2**63 - 1, -(2**63), True, "0", 0.0, None))
            elif op == "shape":
                desc["shape"] = rng.choice(([], [12], [12, 12, 3, 1], [0, 0], [-1, 432], [12, 12, 2], [12, 12, 5],
                                            [432, 1, 1], [12.0, 12, 3], [True, 12, 3], ["12", 12, 3], [[12], 12, 3],
                                            [144, 3], [12, 36], [1, 1, 432], [3, 12, 12], None, "12x12"))
            elif op == "dtype":
                desc["dtype"] = rng.choice(("int64", "float64", "uint8 ", "", "<f4", "float16", "bool", "object",
                                            "U8", 5, None, "UINT8", "uint16", "float32"))
            elif op == "size" and bufs:
                i = desc["buffer"] if type(desc["buffer"]) is int and 0 <= desc["buffer"] < len(bufs) else 0
                data = bytes(bufs[i])
                bufs[i] = rng.choice((data[:-1], data + b"\x00", b"", data * 2, data[: len(data) // 2]))
            elif op == "drop_buffer" and bufs:
                bufs.pop(rng.randrange(len(bufs)))
            elif op == "extra_buffer":
                bufs.append(rng.randbytes(rng.randint(0, 64)))
            elif op == "huge_shape":
                desc["shape"] = rng.choice(([32768, 32768, 4], [32768, 32768], [32769, 1], [1, 32769], [2**62, 2**62],
                                            [2**63 - 1, 2**63 - 1, 4], [10**6, 10**6, 3], [32768, 32768, 3]))
                desc["dtype"] = rng.choice(("uint8", "float32"))
            elif op == "same_buffer":
                for d in descs:
                    d["buffer"] = 0
            elif op == "valid_other":
                # a descriptor that matches its buffer but not what the backend takes: RGBA, float, 1 channel
                dtype, shape, item = rng.choice((("uint8", [12, 12, 4], 1), ("float32", [12, 12, 3], 4),
                                                 ("uint16", [12, 12], 2), ("uint8", [1, 1, 1], 1), ("float32", [2, 3, 1], 4)))
                bufs.append(np.full(math.prod(shape), rng.choice((0, 1, 255)), np.uint8).tobytes() * item
                            if dtype != "float32" else
                            np.full(math.prod(shape), rng.choice((float("nan"), float("inf"), 0.5, -1e30)),
                                    np.float32).tobytes())
                desc.update(buffer=len(bufs) - 1, shape=shape, dtype=dtype)
            elif op == "many":
                # many small frames in one message, all valid descriptors of 1x1 pixels
                n = 1000 if rng.random() < 0.05 else rng.choice((10, 100))
                base = len(bufs)
                bufs.extend([b"\x80\x80\x80"] * n)
                frames = [{"number": i, "array": {"buffer": base + i, "shape": [1, 1, 3], "dtype": "uint8"}}
                          for i in range(n)]
                if append:
                    content["frames"] = frames
                else:
                    content["input"]["frames"] = frames
                    content["keyframes"] = []
                    content["backend"] = "passthrough"
        return self.frames_of(self.message(M.APPEND if append else M.SUBMIT, content, bufs))

    def msgpack(self) -> list:
        rng = self.rng
        frames = self.frames_of(self.valid_message())
        i = rng.choice((1, 2, 3, 4, 4, 4))
        data = bytearray(frames[i])
        op = rng.choice(("truncate", "flip", "flip", "byte", "insert", "trailing", "type", "ext", "int_key",
                         "bad_utf8", "bin_key", "huge_len"))
        self.tag(f"msgpack.{op}")
        if op == "truncate":
            data = data[:rng.randrange(max(1, len(data)))]
        elif op == "flip":
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif op == "byte":
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == "insert":
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = rng.randbytes(rng.randint(1, 4))
        elif op == "trailing":
            data += rng.randbytes(rng.randint(1, 8))
        elif op == "type":
            data = bytearray(msgpack.packb(rng.choice(([], 1, "x", None, True, 1.5, b"b", [{}]))))
        elif op == "ext":
            if rng.random() < 0.3:  # {"k": <timestamp, ext type -1>}
                data = bytearray(b"\x81\xa1k\xd6\xff" + rng.randbytes(4))
            else:
                data = bytearray(msgpack.packb({"k": msgpack.ExtType(rng.randint(0, 127), b"x" * rng.randint(0, 20))}))
        elif op == "int_key":
            data = bytearray(msgpack.packb({rng.choice((1, -1, 2**63, 1.5, None, True)): "v"}))
        elif op == "bad_utf8":
            data = bytearray(b"\x81\xa1k\xa2\xff\xfe")  # {"k": <invalid utf-8>}
        elif op == "bin_key":
            data = bytearray(b"\x81\xc4\x01k\xc0")  # {b"k": nil}: a binary key
        else:  # a map or string that claims far more entries than there are bytes
            data = bytearray(rng.choice((b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff",
                                         b"\xc6\xff\xff\xff\xff", b"\xdf\x00\x01\x00\x00\xa1k")))
        frames[i] = bytes(data)
        return frames

    def unknown_job(self) -> list:
        rng = self.rng
        msg_type = rng.choice((M.APPEND, M.CANCEL, M.STATUS, M.REATTACH))
        job_id = rng.choice((f"{rng.getrandbits(128):032x}", "", "x" * 300, "../../etc", "\u00e9t\u00e9",
                             "0" * 32, "None", self.huge_str()))
        content, bufs = self.valid_content(msg_type)
        content["job_id"] = job_id
        self.tag(f"unknown_job.{msg_type}")
        return self.frames_of(self.message(msg_type, content, bufs))

    def real_job(self) -> list | None:
        rng = self.rng
        if not self.jobs:
            return None
        job_id = rng.choice(list(self.jobs)[-32:])
        job = self.jobs[job_id]
        op = rng.choice(("append", "append", "append_dup", "append_bad", "cancel", "reattach", "reattach_resend",
                         "status"))
        self.tag(f"real_job.{op}")
        if op.startswith("append"):
            bufs: list = []
            number = job["next"] if op != "append_dup" else job["next"] - 1
            frames = [self.frame_desc(number + i, bufs) for i in range(rng.randint(1, 2))]
            more = rng.random() < 0.6
            if op == "append_bad":
                frames[0]["array"]["shape"] = [12, 13, 3]
            elif op == "append":
                job["next"] = number + len(frames)
            return self.frames_of(self.message(M.APPEND, {"job_id": job_id, "frames": frames, "more": more}, bufs))
        if op == "cancel":
            return self.frames_of(self.message(M.CANCEL, {"job_id": job_id}))
        if op.startswith("reattach"):
            return self.frames_of(self.message(M.REATTACH, {"job_id": job_id, "resend": op.endswith("resend")}))
        return self.frames_of(self.message(M.STATUS, {"job_id": job_id}))

    def replay(self) -> list | None:
        if not self.recent:
            return None
        self.tag("replay")
        return self.rng.choice(self.recent)

    def valid(self) -> list:
        msg_type = self.rng.choice([t for t in self.request_types if t != M.SUBMIT])
        self.tag(f"valid.{msg_type}")
        return self.frames_of(self.valid_message(msg_type))

    def valid_submit(self) -> list | None:
        rng = self.rng
        if self.live_valid >= 4:  # keep the worker busy, not buried
            return None
        r = rng.random()
        if r < 0.8:
            content, bufs = self.inline_submit(backend="paint", n=3)
            self.tag("valid_submit.paint")
        elif r < 0.9:
            content, bufs = self.inline_submit(backend="passthrough", n=3)
            self.tag("valid_submit.passthrough")
        else:
            content, bufs = self.path_submit(), []
            self.tag("valid_submit.path")
        self.live_valid += 1
        msg = make_message(M.SUBMIT, JOB_SESSION, content, buffers=bufs)
        msg.metadata = {"valid_submit": True}
        return self.frames_of(msg)


# -- the run --------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.sent = 0
        self.sent_by_kind: collections.Counter = collections.Counter()
        self.replies = 0
        self.codes: collections.Counter = collections.Counter()
        self.codes_by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.reply_types: collections.Counter = collections.Counter()
        self.events: collections.Counter = collections.Counter()
        self.job_ends: collections.Counter = collections.Counter()
        self.valid_job_ends: collections.Counter = collections.Counter()  # of the valid_submit jobs
        self.unanswered: list = []  # (kind, frames)
        self.unanswered_by_kind: collections.Counter = collections.Counter()
        self.unanswered_by_type: collections.Counter = collections.Counter()  # header.msg_type as sent
        self.internal_messages: collections.Counter = collections.Counter()  # "reply: ..." / "job: ..."
        self.unexpected = 0  # replies that match no request out
        self.internal: list = []  # (kind, frames, reply content)
        self.job_internal: list = []  # (kind, frames, job_done content)
        self.jobs_made = 0
        self.housekeeping_cancels = 0


def _first_words(message: str) -> str:
    """An error message without the client's text in it, to count alike errors together."""
    return message.split(":", 1)[0][:60] + (": " + message.split(":", 2)[1].strip()[:40] if ":" in message else "")


def sample_frames(frames: list) -> list:
    """What is kept of a case for a reproducer: the frames themselves (bytes are not copied)."""
    return [bytes(f) for f in frames]


class Run:
    def __init__(self, url: str, fuzzer: Fuzzer, stats: Stats, window: int, engine: EngineProcess):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.connect(url)
        self.fuzzer = fuzzer
        self.stats = stats
        self.window = window
        self.engine = engine
        self.inflight: collections.deque = collections.deque()  # (expected parent id, kind, frames, sent at)
        self.heavy: list = []  # (sent at, kind, sub-kinds, bytes, frames) of big or many-framed cases
        self.job_origin: dict[str, tuple] = {}  # job id -> (kind, frames) for jobs not yet ended
        self.last_reply = time.monotonic()

    def send(self, kind: str, frames: list) -> None:
        self.sock.send_multipart(frames)
        now = time.monotonic()
        self.inflight.append((expected_parent(frames), kind, frames, now))
        nbytes = sum(len(f) for f in frames)
        if (nbytes >= 65536 or len(frames) >= 100) and len(self.heavy) < 200_000:
            self.heavy.append((now, kind, "+".join(self.fuzzer.last_sub), nbytes, len(frames)))
        self.stats.sent += 1
        self.stats.sent_by_kind[kind] += 1

    def drain(self, timeout_ms: int = 0) -> int:
        got = 0
        if timeout_ms and not self.sock.poll(timeout_ms):
            return 0
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return got
            got += 1
            self.on_message(frames)

    def on_message(self, frames: list) -> None:
        stats = self.stats
        header = msgpack.unpackb(frames[1])
        msg_type = header.get("msg_type")
        content = msgpack.unpackb(frames[4])
        if msg_type in M.EVENTS:
            stats.events[msg_type] += 1
            if msg_type == M.DONE:
                self.on_job_done(content)
            return
        self.last_reply = time.monotonic()
        stats.replies += 1
        stats.reply_types[msg_type] += 1
        parent_id = msgpack.unpackb(frames[2]).get("msg_id")
        code = "ok" if content.get("status") == "ok" else (content.get("error") or {}).get("code", "?")
        stats.codes[code] += 1
        # Replies come in request order: the first request out that this reply can answer is it;
        # any before it got no reply.
        i = next((i for i, entry in enumerate(self.inflight) if entry[0] == parent_id), -1)
        if i < 0:
            stats.unexpected += 1
            return
        for _ in range(i):
            self.lost(self.inflight.popleft())
        expected, kind, req, _ = self.inflight.popleft()
        stats.codes_by_kind[kind][code] += 1
        if code == "internal":
            message = str((content.get("error") or {}).get("message"))
            stats.internal_messages[f"{msg_type}: {_first_words(message)}"] += 1
            if len(stats.internal) < 20:
                stats.internal.append((kind, sample_frames(req), content))
        if msg_type == "submit_reply" and code == "ok":
            self.on_job(content["job_id"], kind, req)

    def lost(self, entry: tuple) -> None:
        """A request that got no reply."""
        _, kind, frames, _ = entry
        self.stats.unanswered_by_kind[kind] += 1
        try:
            msg_type = str(unpack_map(frames[1], "header").get("msg_type"))[:40]
        except Exception:
            msg_type = "(header unreadable)"
        self.stats.unanswered_by_type[msg_type] += 1
        if len(self.stats.unanswered) < 10:
            self.stats.unanswered.append((kind, sample_frames(frames)))

    def on_job(self, job_id: str, kind: str, req: list) -> None:
        fz = self.fuzzer
        if job_id in fz.jobs:  # a retry answered with the same job
            return
        self.stats.jobs_made += 1
        fz.jobs[job_id] = {"t": time.monotonic(), "next": 10_000, "valid": kind == "valid_submit", "ended": False}
        self.job_origin[job_id] = (kind, req)
        while len(fz.jobs) > 2000:
            old_id, old = fz.jobs.popitem(last=False)
            if not old["ended"] and old["valid"]:
                fz.live_valid -= 1
            self.job_origin.pop(old_id, None)

    def on_job_done(self, content: dict) -> None:
        state = content.get("state")
        error = (content.get("error") or {}).get("code")
        self.stats.job_ends[f"{state}" + (f" ({error})" if error else "")] += 1
        job = self.fuzzer.jobs.get(content.get("job_id"))
        origin = self.job_origin.pop(content.get("job_id"), None)
        if error == "internal":
            self.stats.internal_messages[f"job_done: {_first_words(str(content['error'].get('message')))}"] += 1
        if error == "internal" and len(self.stats.job_internal) < 20:
            self.stats.job_internal.append((origin[0] if origin else "?", sample_frames(origin[1]) if origin else [],
                                            content))
        if job is not None and not job["ended"]:
            job["ended"] = True
            if job["valid"]:
                self.fuzzer.live_valid -= 1
                self.stats.valid_job_ends[f"{state}" + (f" ({error})" if error else "")] += 1

    def housekeeping(self) -> None:
        """Cancel the fuzzer's jobs that are still going after a few seconds (streamed inputs that
        will never be closed would hold the one worker for the 30 s stall timeout each)."""
        now = time.monotonic()
        for job_id, job in list(self.fuzzer.jobs.items()):
            limit = VALID_CANCEL_AFTER_S if job["valid"] else CANCEL_AFTER_S
            if not job["ended"] and not job.get("cancel_sent") and now - job["t"] > limit:
                job["cancel_sent"] = True
                msg = make_message(M.CANCEL, "fuzz-housekeeping", {"job_id": job_id})
                self.send("real_job", serialize(msg))
                self.stats.housekeeping_cancels += 1

    def expire_silent(self) -> None:
        if self.inflight and time.monotonic() - self.last_reply > SILENCE_S:
            while self.inflight:
                self.lost(self.inflight.popleft())
            self.last_reply = time.monotonic()

    def fuzz(self, count: int, time_limit_s: float, progress_every: int) -> tuple[float, bool]:
        """Send `count` cases; returns the seconds it took and whether the engine is still alive."""
        t0 = time.monotonic()
        next_check = t0 + 0.5
        next_report = progress_every
        while self.stats.sent - self.stats.housekeeping_cancels < count:
            while self.stats.sent - self.stats.housekeeping_cancels < count and len(self.inflight) < self.window:
                kind, frames = self.fuzzer.case()
                self.send(kind, frames)
                if len(self.inflight) % 32 == 0:
                    self.drain()
            if not self.drain():
                self.drain(100)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.5
                if not self.engine.alive:
                    return now - t0, False
                self.housekeeping()
                self.expire_silent()
                if now - t0 > time_limit_s:
                    print(f"time limit {time_limit_s:.0f} s reached after {self.stats.sent} messages", flush=True)
                    break
            if self.stats.sent - self.stats.housekeeping_cancels >= next_report:
                next_report += progress_every
                el = now - t0
                print(f"  {self.stats.sent:>9} sent, {self.stats.replies:>9} replies, {el:6.1f} s, "
                      f"{self.stats.replies / el:7.0f} replies/s, jobs made {self.stats.jobs_made}", flush=True)
        # the last replies
        deadline = time.monotonic() + SILENCE_S
        while self.inflight and time.monotonic() < deadline and self.engine.alive:
            if self.drain(200):
                deadline = time.monotonic() + SILENCE_S
        elapsed = time.monotonic() - t0
        if self.inflight:  # still unanswered after SILENCE_S of nothing
            self.last_reply = 0.0
            self.expire_silent()
        return elapsed, self.engine.alive

    def call(self, msg_type: str, content: dict, timeout_s: float = 5.0) -> dict | None:
        """One request on the fuzz socket, waited for; events and late fuzz replies that
        arrive meanwhile are counted as usual."""
        msg = make_message(msg_type, "fuzz-control", content)
        self.sock.send_multipart(serialize(msg))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            frames = self.sock.recv_multipart()
            header = msgpack.unpackb(frames[1])
            if header.get("msg_type") not in M.EVENTS and msgpack.unpackb(frames[2]).get("msg_id") == msg.msg_id:
                return msgpack.unpackb(frames[4])
            self.on_message(frames)
        return None

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


def warm_up(sock: zmq.Socket, fuzzer: Fuzzer) -> list[str]:
    """One job of each backend and a path job, waited for, so lazy imports are done."""
    outcomes = []
    contents = [fuzzer.inline_submit(backend="paint", n=3), fuzzer.inline_submit(backend="passthrough", n=2),
                (fuzzer.path_submit(), []), fuzzer.inline_submit(backend="longanimation", n=1)]
    for content, bufs in contents:
        events: list = []
        reply = request(sock, M.SUBMIT, content, buffers=bufs, events=events, timeout_s=30)
        if reply is None or reply.get("status") != "ok":
            outcomes.append(f"{content['backend']}/{content['input']['kind']}: submit {reply}")
            continue
        job_id, deadline = reply["job_id"], time.monotonic() + 120
        state = None
        while state is None and time.monotonic() < deadline:
            for kind, ev in events:
                if kind == M.DONE and ev.get("job_id") == job_id:
                    state = ev["state"] + (f" ({ev['error']['code']})" if ev.get("error") else "")
            events.clear()
            if state is None and sock.poll(500):
                frames = sock.recv_multipart()
                header = msgpack.unpackb(frames[1])
                events.append((header.get("msg_type"), msgpack.unpackb(frames[4])))
        outcomes.append(f"{content['backend']}/{content['input']['kind']}: {state or 'no job_done in 120 s'}")
    return outcomes


def settle(run: Run, token: str, rss: RssMeter) -> dict:
    """Cancel what is left, wait for no queued/running job and for the RSS to stop falling.

    The jobs are listed with `status_request {all, token}`; when that gets no reply, each job
    the fuzzer made and saw no job_done for is asked for by id instead."""
    t0 = time.monotonic()
    deadline = t0 + DRAIN_S
    cancels, unfinished, unknown, status_all_answered = 0, None, 0, True
    for job_id, job in list(run.fuzzer.jobs.items()):
        if not job["ended"]:
            run.call(M.CANCEL, {"job_id": job_id})
            cancels += 1
    while time.monotonic() < deadline:
        reply = run.call(M.STATUS, {"all": True, "token": token})
        if reply is not None and reply.get("status") == "ok":
            left = [j["job_id"] for j in reply["jobs"] if j["state"] in ("queued", "running")]
            unknown = 0
        else:
            status_all_answered = False
            left, unknown = [], 0
            for job_id, job in list(run.fuzzer.jobs.items()):
                if job["ended"]:
                    continue
                one = run.call(M.STATUS, {"job_id": job_id}, timeout_s=2.0)
                if one is None or one.get("status") != "ok":
                    unknown += 1
                elif one["jobs"][0]["state"] in ("queued", "running"):
                    left.append(job_id)
                else:
                    job["ended"] = True
        unfinished = len(left)
        if not left:
            break
        for job_id in left:  # jobs the fuzzer did not learn of are cancelled too
            run.call(M.CANCEL, {"job_id": job_id})
            cancels += 1
        run.drain(500)
    jobs_idle_s = time.monotonic() - t0
    samples = [rss()]
    while time.monotonic() < deadline:
        run.drain(500)  # the last job_done events
        samples.append(rss())
        if len(samples) >= 4 and max(samples[-3:]) - min(samples[-3:]) < 1.0 and samples[-1] >= samples[-4] - 1.0:
            break
    return {"cancels": cancels, "unfinished": unfinished, "unknown": unknown, "status_all_answered": status_all_answered,
            "jobs_idle_s": jobs_idle_s, "rss_mib": samples[-1], "samples": samples,
            "seconds": time.monotonic() - t0}


# -- report ---------------------------------------------------------------------------------

def _cmd(argv: list[str]) -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *argv])


def _sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _runs(text):
    """Source for a str or bytes with long repeats written as 'a' * 300 or 'a/' * 3000 (exact)."""
    parts, literal, i, n = [], text[:0], 0, len(text)
    while i < n:
        for k in range(1, 9):
            unit = text[i:i + k]
            reps = 1
            while text[i + reps * k:i + (reps + 1) * k] == unit:
                reps += 1
            if reps * k >= 40 and reps >= 4:
                if literal:
                    parts.append(repr(literal))
                    literal = text[:0]
                parts.append(f"{unit!r} * {reps}")
                i += reps * k
                break
        else:
            literal += text[i:i + 1]
            i += 1
    if literal or not parts:
        parts.append(repr(literal))
    return " + ".join(parts) if len(parts) == 1 else "(" + " + ".join(parts) + ")"


def _expr(obj) -> str:
    """Python source for a decoded msgpack value."""
    if isinstance(obj, (str, bytes)):
        return _runs(obj) if len(obj) >= 40 else repr(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_expr(k)}: {_expr(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        if len(obj) > 8 and all(x == obj[0] for x in obj):
            return f"[{_expr(obj[0])}] * {len(obj)}"
        return "[" + ", ".join(_expr(v) for v in obj) + "]"
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"float('{obj}')"
    return repr(obj)


def _no_ext(code, data):
    raise ValueError("extension types are written as raw bytes")


def _frame_expr(i: int, frame: bytes) -> tuple[str, str]:
    """(source, comment) for one frame."""
    if i == 0 and frame == DELIMITER:
        return "DELIMITER", ""
    if 1 <= i <= N_MAP_FRAMES:
        try:
            obj = msgpack.unpackb(frame, raw=False, strict_map_key=False, ext_hook=_no_ext)
            if msgpack.packb(obj, use_bin_type=True) == frame:
                text = f"pack({_expr(obj)})"
                if len(text) < 3000 and "Timestamp(" not in text:
                    return text, ""
        except Exception:
            pass
    if len(frame) <= 300:
        return _runs(frame), ""
    packed = base64.b64encode(zlib.compress(frame, 9)).decode()
    return f"zlib.decompress(base64.b64decode({packed!r}))", f"{len(frame)} bytes"


def reproducer(frames: list) -> str:
    lines = ["import base64, zlib, msgpack, zmq", "pack = lambda obj: msgpack.packb(obj, use_bin_type=True)",
             "DELIMITER = b'<LONGANIM|MSG>'", "sock = zmq.Context().socket(zmq.DEALER)",
             "sock.connect('tcp://127.0.0.1:5555')  # a running `longanim serve`"]
    tail = ""
    if len(frames) > 12 and all(f == b"" for f in frames[6:]):
        frames, tail = frames[:6], f" + [b''] * {len(frames) - 6}"
    lines.append("sock.send_multipart([")
    for i, f in enumerate(frames):
        text, comment = _frame_expr(i, f)
        lines.append(f"    {text}," + (f"  # {comment}" if comment else ""))
    lines.append(f"]{tail})")
    lines.append("print(sock.poll(5000) and sock.recv_multipart())")
    return "\n".join(lines)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=None, help=f"messages to send (default {DEFAULT_COUNT:,}; "
                   f"{QUICK_COUNT:,} with --quick)")
    p.add_argument("--quick", action="store_true", help=f"a smoke run ({QUICK_COUNT:,} messages unless --count)")
    p.add_argument("--seed", type=int, default=1, help="seed of the mix (default 1)")
    p.add_argument("--window", type=int, default=256, help="most requests unanswered at a time (default 256)")
    p.add_argument("--time-limit", type=float, default=780.0,
                   help="stop sending after this many seconds (default 780)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    if args.count is None:
        args.count = QUICK_COUNT if args.quick else DEFAULT_COUNT
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started_utc = _sh("date", "-u")
    git_status = _sh("git", "status", "--porcelain")
    git_digest = hashlib.sha256((_sh("git", "diff", "HEAD") + git_status).encode()).hexdigest()[:12]
    uptime_start = _sh("uptime")
    print(f"fuzzing a real engine: {args.count:,} messages, seed {args.seed}, window {args.window}")
    print(f"started {started_utc}; {uptime_start}")
    with tempfile.TemporaryDirectory(prefix="longanim-fuzz-") as tmpdir:
        tmp = Path(tmpdir)
        engine = EngineProcess(tmp)
        engine.roots.mkdir()
        shot = write_shot(engine.roots)
        t_start = time.monotonic()
        engine.start()
        ctx = zmq.Context()
        control = ctx.socket(zmq.DEALER)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(engine.url)
        pinger_proc = None
        try:
            wait_ready(engine, control)
            ready_s = time.monotonic() - t_start
            rss = RssMeter(engine.proc.pid)
            rss_cold = rss()
            token = engine.token()
            fuzzer = Fuzzer(args.seed, shot, token)
            warm = warm_up(control, fuzzer)
            hello = request(control, M.HELLO, {"protocol_version": PROTOCOL_VERSION, "client": "bench_fuzz"})
            if not hello or hello.get("status") != "ok":
                raise SystemExit(f"hello failed: {hello}")
            rss_start = rss()
            print(f"engine pid {engine.proc.pid} ready in {ready_s:.1f} s; RSS {rss_cold:.1f} MiB cold, "
                  f"{rss_start:.1f} MiB after warm-up and hello; warm-up jobs: {'; '.join(warm)}", flush=True)

            mp = multiprocessing.get_context("spawn")
            stop, results = mp.Event(), mp.Queue()
            pinger_proc = mp.Process(target=pinger, args=(engine.url, engine.proc.pid, stop, results), daemon=True)
            pinger_proc.start()
            time.sleep(1.0)  # the pinger imports and connects

            stats = Stats()
            run = Run(engine.url, fuzzer, stats, args.window, engine)
            elapsed, alive = run.fuzz(args.count, args.time_limit, max(args.count // 10, 1000))
            hwm_fuzz = rss.hwm()
            rss_end_fuzz = rss()
            stop.set()
            try:
                ping = results.get(timeout=HANG_S + 10)
            except Exception:
                ping = {"rtts_ms": [], "hangs_at_s": ["pinger gave no results"], "peak_mib": 0.0, "peak_at_s": 0.0,
                        "samples": [], "slowest": []}
            pinger_proc.join(10)
            crashed = not alive or not engine.alive
            settled = None
            if not crashed:
                settled = settle(run, token, rss)
                final_hello = request(control, M.HELLO, {"protocol_version": PROTOCOL_VERSION})
                crashed = not engine.alive
            else:
                final_hello = None
            run_heavy = run.heavy
            run.close()
        finally:
            control.close()
            returncode_before_stop = engine.proc.poll() if engine.proc else None
            stop_code = engine.stop()
            if pinger_proc is not None and pinger_proc.is_alive():
                pinger_proc.kill()
            ctx.term()
        log_text = engine.log_path.read_text(errors="replace") if engine.log_path.exists() else ""

    # -- figures ---------------------------------------------------------------------
    rtts = sorted(ping["rtts_ms"])
    hangs = ping["hangs_at_s"]
    peak = max(ping["peak_mib"], rss_end_fuzz)
    rss_after = settled["rss_mib"] if settled else float("nan")
    growth = rss_after - rss_start
    rss_ok = settled is not None and growth <= RSS_BOUND_MIB
    traceback_lines = [l for l in log_text.splitlines() if l.startswith("Traceback")]
    error_lines = [l for l in log_text.splitlines() if " failed:" in l or "unexpected error" in l]
    answered = stats.replies
    figures = [
        ["messages sent", f"{stats.sent:,} ({stats.sent - stats.housekeeping_cancels:,} fuzz cases"
         + ("" if stats.sent - stats.housekeeping_cancels >= args.count else f" of {args.count:,} asked: time limit")
         + f", {stats.housekeeping_cancels:,} housekeeping cancels)"],
        ["replies received", f"{answered:,}"],
        ["requests without a reply", f"{sum(stats.unanswered_by_kind.values()):,}"
         + (" (" + ", ".join(f"{t} {n:,}" for t, n in stats.unanswered_by_type.most_common(6)) + ")"
            if stats.unanswered_by_type else "")],
        ["replies matching no request", f"{stats.unexpected:,}"],
        ["fuzz wall time", f"{elapsed:.1f} s"],
        ["replies per second", f"{answered / elapsed:,.0f}"],
        ["job events received (progress / result / job_done)",
         f"{stats.events['progress']:,} / {stats.events['result']:,} / {stats.events['job_done']:,}"],
        ["jobs the fuzz made (ok submit_reply)", f"{stats.jobs_made:,} ({stats.housekeeping_cancels:,} cancelled "
                                                 f"by housekeeping {CANCEL_AFTER_S:g} s, or {VALID_CANCEL_AFTER_S:g} s for valid_submit jobs, "
                                                 "after their reply)"],
        ["pings during fuzz", f"{len(rtts):,} answered, every {PING_INTERVAL_S} s"],
        ["ping RTT median / p99 / max", (f"{statistics.median(rtts):.2f} / {rtts[int(0.99 * (len(rtts) - 1))]:.2f} / "
                                         f"{rtts[-1]:.2f} ms") if rtts else "n/a"],
        ["hangs (ping unanswered in 5 s)", f"{len(hangs)}" + (f" at {hangs[:10]} s" if hangs else "")],
        ["crashes (engine exited)", "1" if crashed else "0"],
        ["engine RSS cold (first ping answered)", f"{rss_cold:.1f} MiB"],
        ["engine RSS at start (after warm-up jobs and hello)", f"{rss_start:.1f} MiB"],
        ["engine RSS peak during fuzz (sampled every 0.1 s)", f"{peak:.1f} MiB (at {ping['peak_at_s']:.0f} s)"],
        ["engine VmHWM at end of fuzz (kernel's peak, whole life)", f"{hwm_fuzz:.1f} MiB"],
        ["engine RSS at end of fuzz", f"{rss_end_fuzz:.1f} MiB"],
        ["engine RSS after drain", (f"{rss_after:.1f} MiB ({growth:+.1f} MiB vs start; waited {settled['seconds']:.1f} s)")
         if settled else "n/a"],
        ["jobs after the drain", (f"{settled['unfinished']} queued/running, {settled['unknown']} whose status got no "
                                  f"reply; no queued/running job after {settled['jobs_idle_s']:.1f} s; "
                                  f"{settled['cancels']} cancels sent; `status_request {{all}}` "
                                  + ("answered" if settled["status_all_answered"] else "got NO reply"))
         if settled else "n/a"],
        [f"RSS after drain within {RSS_BOUND_MIB:g} MiB of start", "PASS" if rss_ok else "FAIL"],
        ["engine processes measured", f"1 + {rss.children} children"],
        ["engine log: tracebacks / 'failed' or 'unexpected error' lines", f"{len(traceback_lines)} / {len(error_lines)}"],
        ["hello after the drain", "ok" if final_hello and final_hello.get("status") == "ok" else f"{final_hello}"],
    ]

    lines = [
        "# Engine fuzz benchmark" + (" (QUICK smoke run: not a measurement)" if args.quick else ""),
        "",
        f"- command: `{_cmd(argv)}`",
        f"- date (`date -u`): {started_utc}",
        f"- `uptime` at start: `{uptime_start}`",
        f"- `uptime` at end: `{_sh('uptime')}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}, "
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, msgpack {'.'.join(map(str, msgpack.version))}",
        f"- code: commit `{_sh('git', 'rev-parse', '--short', 'HEAD')}`, "
        f"{len(git_status.splitlines())} paths modified or untracked in the working tree when the engine started "
        f"(diff digest `{git_digest}`)",
        f"- engine: `python -m longanim {' '.join(engine.args[:1])} --bind tcp://127.0.0.1:<free port> --cache <tmp> "
        f"--token-file <tmp> --roots <tmp>/roots` (defaults otherwise); ready in {ready_s:.1f} s",
        f"- seed {args.seed}, {args.count:,} messages asked, at most {args.window} requests unanswered at a time",
        f"- warm-up before the baseline (one job each, waited for): {'; '.join(warm)}",
        "",
        "What is sent: one DEALER socket sends the seeded mix below without waiting for each reply; replies are "
        "drained as they come and matched to requests by order and `parent_header.msg_id`. A second DEALER socket, "
        "in a separate process, sends `ping_request` every 0.5 s and records round trips (one unanswered within "
        "5 s is a hang) and samples the engine's VmRSS (from /proc, with any children) every 0.1 s. Jobs the fuzz "
        f"creates are cancelled {CANCEL_AFTER_S:g} s after their submit_reply ({VALID_CANCEL_AFTER_S:g} s for the "
        "valid_submit ones; streamed inputs never closed would "
        "otherwise hold the single worker for the 30 s stall timeout each); after the last reply the remaining "
        "ones are cancelled and the script waits (up to 30 s) for `status_request {all, token}` to list no queued "
        "or running job and for the RSS to stop falling.",
        "",
        "## Figures",
        "",
        *_table(["figure", "value"], figures),
        "",
        "## Mix: what was sent and what came back",
        "",
        *_table(["kind", "weight", "sent", "replies", "top reply codes"],
                [[k, f"{w:g}", f"{stats.sent_by_kind[k]:,}", f"{sum(stats.codes_by_kind[k].values()):,}",
                  ", ".join(f"{c} {n:,}" for c, n in stats.codes_by_kind[k].most_common(5))] for k, w in KINDS]),
        "",
        "## Reply codes (all replies)",
        "",
        *_table(["code", "replies", "share"],
                [[c, f"{n:,}", f"{n / max(answered, 1):.1%}"] for c, n in stats.codes.most_common(15)]),
        "",
        "## `internal` errors (a bug path, PROTOCOL.md section 6), by where and exception",
        "",
        *(_table(["reply or job_done: exception", "count"],
                 [[m.replace("|", "/"), f"{n:,}"] for m, n in stats.internal_messages.most_common(12)])
          if stats.internal_messages else ["none"]),
        "",
        "## How the jobs the fuzz made ended (job_done events)",
        "",
        *_table(["state (error code)", "jobs"], [[s, f"{n:,}"] for s, n in stats.job_ends.most_common(12)]),
        "",
        "Of these, the `valid_submit` jobs (tiny inline paint, passthrough and path jobs, at most 4 unfinished at "
        "a time): " + (", ".join(f"{s} {n:,}" for s, n in stats.valid_job_ends.most_common()) or "none ended"),
        "",
        "## Sub-kinds sent (mutations applied)",
        "",
        ", ".join(f"`{k}` {n:,}" for k, n in sorted(fuzzer.subkinds.items())),
        "",
        "## RSS during the fuzz (MiB, one sample a second from the pinger)",
        "",
        " ".join(f"{v:.0f}" for _, v in ping["samples"][:: max(1, len(ping["samples"]) // 60)]),
        "",
        "After the fuzz, samples 0.5 s apart while draining: "
        + (" ".join(f"{v:.1f}" for v in settled["samples"]) if settled else "n/a"),
        "",
        "## Defects found",
        "",
    ]
    defects = []
    if crashed:
        defects.append(f"- **crash**: the engine exited (status {returncode_before_stop}) during the run. "
                       f"Engine log tail:\n\n```\n{log_text[-3000:]}\n```")
    if hangs:
        defects.append(f"- **hang**: {len(hangs)} pings were not answered within 5 s (at {hangs[:10]} s into the fuzz)")
    if stats.unanswered_by_kind:
        defects.append(f"- **requests without a reply**: {dict(stats.unanswered_by_kind)}; first ones:")
        for kind, frames in stats.unanswered[:3]:
            defects.append(f"\n  kind `{kind}`:\n\n```python\n{reproducer(frames)}\n```")
    if stats.internal:
        defects.append(f"- **`internal` error replies** (a bug path): {stats.codes['internal']:,}; first ones:")
        seen = set()
        for kind, frames, content in stats.internal:
            message = content["error"]["message"][:200]
            if message in seen:
                continue
            seen.add(message)
            defects.append(f"\n  kind `{kind}`, reply `{message}`:\n\n```python\n{reproducer(frames)}\n```")
            if len(seen) >= 5:
                break
    if stats.job_internal:
        defects.append(f"- **jobs failed `internal`** (a worker bug path): {len(stats.job_internal)}+; first ones:")
        seen = set()
        for kind, frames, content in stats.job_internal:
            message = content["error"]["message"][:200]
            if message in seen:
                continue
            seen.add(message)
            defects.append(f"\n  kind `{kind}`, job_done error `{message}`:\n\n```python\n{reproducer(frames)}\n```")
            if len(seen) >= 5:
                break
    if settled is not None and not rss_ok:
        defects.append(f"- **RSS not back within {RSS_BOUND_MIB:g} MiB**: {rss_start:.1f} MiB at start, "
                       f"{rss_after:.1f} MiB after the drain ({growth:+.1f} MiB)")
    if settled is not None and settled["unfinished"]:
        defects.append(f"- **jobs still queued or running** {DRAIN_S:g} s after the fuzz: {settled['unfinished']}")
    if settled is not None and not settled["status_all_answered"]:
        defects.append(f"- **`status_request {{all, token}}` got no reply** after the fuzz; {settled['unknown']} jobs "
                       "asked for by id got none either")
    slow = [p for p in ping.get("slowest", []) if p[1] > 100.0]
    if slow:
        defects.append("- slowest pings (> 100 ms) and the big or many-framed cases sent in the second before each:")
        for t_ping, rtt in slow:
            near = [h for h in run_heavy if t_ping - 1.0 <= h[0] <= t_ping + rtt / 1000.0]
            near = sorted(near, key=lambda h: -h[3])[:4]
            defects.append(f"  - {rtt:.0f} ms: " + ("; ".join(f"{h[1]} `{h[2]}` {h[3]:,} bytes in {h[4]:,} frames"
                                                          for h in near) or "no big case in that second"))
    if traceback_lines:
        first = log_text[log_text.index("Traceback"):][:1500]
        defects.append(f"- engine log holds {len(traceback_lines)} tracebacks; the first:\n\n```\n{first}\n```")
    lines += defects or ["None: no crash, no hang, every request answered, no `internal` error, RSS bounded."]
    lines += ["", f"Engine stopped with SIGTERM afterwards: exit status {stop_code}.", ""]

    print()
    for row in _table(["figure", "value"], figures):
        print(row)
    print()
    print("top reply codes: " + ", ".join(f"{c} {n:,}" for c, n in stats.codes.most_common(10)))
    print("job ends: " + ", ".join(f"{s} {n:,}" for s, n in stats.job_ends.most_common(8)))
    for d in defects:
        print(d[:3000])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.name}.partial-{os.getpid()}")
    partial.write_text("\n".join(lines))
    os.replace(partial, args.out)
    print(f"\nwrote {args.out}")
    return 1 if crashed or hangs else 0


if __name__ == "__main__":
    sys.exit(main())
