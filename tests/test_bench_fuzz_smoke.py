"""bench/bench_fuzz.py --quick runs end to end against a real engine, so the fuzz benchmark
cannot silently rot.

No rate or memory figure is asserted (those are measurements, in bench/results/fuzz.md):
only that the run finishes without an engine crash or hang (exit status 0) and that the
results file holds every figure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_fuzz.py"


def _figure(text: str, name: str) -> str:
    match = re.search(rf"^\| {re.escape(name)} \| (.+) \|$", text, re.M)
    assert match, f"figure {name!r} missing from the results file"
    return match.group(1)


def test_quick_fuzz_writes_its_results(tmp_path):
    out = tmp_path / "fuzz.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--count", "3000", "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "(QUICK smoke run: not a measurement)" in text
    assert f"--quick --count 3000 --out {out}" in text and "date (`date -u`)" in text

    assert re.match(r"[\d,]+ \(3,000 fuzz cases, ", _figure(text, "messages sent"))
    replies = int(_figure(text, "replies received").replace(",", ""))
    assert replies >= 2900  # every request gets one reply; a few lost would be a finding, not a rot
    assert float(_figure(text, "replies per second").replace(",", "")) > 0
    assert re.match(r"[\d.]+ / [\d.]+ / [\d.]+ ms", _figure(text, "ping RTT median / p99 / max"))
    assert _figure(text, "hangs (ping unanswered in 5 s)") == "0"
    assert _figure(text, "crashes (engine exited)") == "0"
    for name in ("engine RSS at start (after warm-up jobs and hello)", "engine RSS peak during fuzz (sampled every 0.1 s)",
                 "engine RSS after drain"):
        assert re.match(r"[\d.]+ MiB", _figure(text, name)), name
    assert _figure(text, "RSS after drain within 64 MiB of start") in ("PASS", "FAIL")
    assert "## Reply codes (all replies)" in text and re.search(r"^\| malformed \| [\d,]+ \|", text, re.M)
    for kind in ("random_bytes", "header", "content", "buffers", "msgpack", "unknown_job", "real_job"):
        assert re.search(rf"^\| {kind} \| [\d.]+ \| [1-9][\d,]* \|", text, re.M), kind
    assert not list(tmp_path.glob(".fuzz.md.partial-*"))
