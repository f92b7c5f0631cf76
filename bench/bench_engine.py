"""Engine overhead on loopback: ping round trips, and 1920x1080 RGBA frames through a
real `longanim serve` (passthrough backend) against raw pyzmq echoing the same bytes.

    python bench/bench_engine.py [--frames 60] [--pings 2000] [--repeats 5]

Both sides run as separate processes, and each frame goes client -> server -> client,
so the raw number is the ceiling for any ZeroMQ engine on this machine.
Targets (issue 3): median ping <= 1 ms; engine throughput >= 50% of raw.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

from longanim.protocol.client import CHUNK_BYTES, EngineClient, EngineError

HEIGHT, WIDTH, CHANNELS = 1080, 1920, 4

ECHO_SERVER = """
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.bind(sys.argv[1])
while True:
    frames = sock.recv_multipart(copy=False)
    if len(frames[-1]) == 4 and frames[-1].bytes == b"stop":
        break
    sock.send_multipart(frames, copy=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_engine(tmp: str, cache: bool) -> tuple[subprocess.Popen, str]:
    url = f"tcp://127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "longanim", "serve", "--bind", url, "--token-file", os.path.join(tmp, "token")]
    args += ["--cache", os.path.join(tmp, "cache")] if cache else ["--no-cache"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    with EngineClient(url, timeout=0.5) as c:
        while time.monotonic() < deadline:
            try:
                c.ping()
                return proc, url
            except EngineError:
                pass
    proc.kill()
    raise SystemExit("the engine did not start")


def bench_ping(url: str, n: int) -> list[float]:
    with EngineClient(url) as c:
        for _ in range(50):
            c.ping()
        return [c.ping() for _ in range(n)]


def bench_engine_frames(url: str, frames: list, cache: bool) -> float:
    # Streamed in the client's default chunks without the cache; with it, in one message,
    # because a backend not marked frame-independent is cached only when the whole input is known.
    chunk = 1 << 40 if cache else CHUNK_BYTES
    with EngineClient(url, timeout=60) as c:
        t0 = time.perf_counter()
        job = c.submit_frames(frames, backend="passthrough", cache=cache, chunk_bytes=chunk)
        count = 0
        for result in job.results(timeout=60):
            count += 1
            assert result.rgb.shape == (HEIGHT, WIDTH, CHANNELS)
        elapsed = time.perf_counter() - t0
    assert count == len(frames) and job.state == "done", (count, job.state)
    return elapsed


def bench_raw(frames: list, window: int = 16) -> float:
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, url])
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    try:
        sock.send_multipart([b"warm"])
        if not sock.poll(10_000):
            raise SystemExit("echo server did not answer")
        sock.recv_multipart()
        t0 = time.perf_counter()
        sent = received = 0
        while received < len(frames):
            while sent < len(frames) and sent - received < window:
                sock.send(frames[sent][1], copy=False)
                sent += 1
            if not sock.poll(60_000):
                raise SystemExit("echo server stalled")
            reply = sock.recv_multipart(copy=False)
            assert len(reply[0]) == frames[0][1].nbytes
            received += 1
        elapsed = time.perf_counter() - t0
        sock.send(b"stop")
        proc.wait(10)
        return elapsed
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    frames = [(n, rng.integers(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=np.uint8)) for n in range(args.frames)]
    nbytes = frames[0][1].nbytes
    print(f"load before: {os.getloadavg()}  cpus: {os.cpu_count()}  pyzmq {zmq.__version__} libzmq {zmq.zmq_version()}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_engine(tmp, cache=False)
        try:
            rtts = sorted(bench_ping(url, args.pings))
            engine_times, raw_times = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same machine load
                raw_times.append(bench_raw(frames))
                engine_times.append(bench_engine_frames(url, frames, cache=False))
        finally:
            proc.terminate()
            proc.wait(10)
        proc, url = start_engine(tmp, cache=True)
        try:
            cold = bench_engine_frames(url, frames, cache=True)
            warm = bench_engine_frames(url, frames, cache=True)
        finally:
            proc.terminate()
            proc.wait(10)

    def fps(seconds: float) -> float:
        return args.frames / seconds

    raw = statistics.median(raw_times)
    eng = statistics.median(engine_times)
    print(f"\nping round trip over {args.pings}: median {statistics.median(rtts) * 1e3:.3f} ms, "
          f"p90 {rtts[int(0.9 * len(rtts))] * 1e3:.3f} ms, p99 {rtts[int(0.99 * len(rtts))] * 1e3:.3f} ms")
    print(f"\n{args.frames} frames of {WIDTH}x{HEIGHT} RGBA uint8 ({nbytes / 2**20:.1f} MiB), each sent and "
          f"received back; median of {args.repeats}\n")
    rows = [
        ("raw pyzmq echo", raw, 1.0),
        ("engine, passthrough, cache off", eng, raw / eng),
        ("engine, passthrough, cache on, cold (hash + write)", cold, raw / cold),
        ("engine, passthrough, cache on, warm (read from cache)", warm, raw / warm),
    ]
    print(f"| {'path':<56} | {'frames/s':>8} | {'MiB/s each way':>14} | {'vs raw':>6} |")
    print(f"|{'-' * 58}|{'-' * 10}|{'-' * 16}|{'-' * 8}|")
    for name, seconds, ratio in rows:
        print(f"| {name:<56} | {fps(seconds):8.1f} | {fps(seconds) * nbytes / 2**20:14.0f} | {ratio:6.0%} |")
    print(f"\nall runs (s): raw {[round(t, 3) for t in raw_times]}, engine {[round(t, 3) for t in engine_times]}")
    print(f"load after: {os.getloadavg()}")
    ok_ping = statistics.median(rtts) <= 1e-3
    ok_tput = eng <= 2 * raw
    print(f"targets: median ping <= 1 ms: {'met' if ok_ping else 'MISSED'}; "
          f"throughput >= 50% of raw: {'met' if ok_tput else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
