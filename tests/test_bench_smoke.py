"""bench/bench_paint.py --quick runs end to end, so the benchmark cannot silently rot.

No timing is asserted: only that every part runs and the results file is complete.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_paint.py"


def test_quick_benchmark_writes_its_results(tmp_path):
    out = tmp_path / "paint.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert f"--quick --out {out}" in text and "load average" in text
    for heading in ("## (a, b) Speed", "## (c) Peak memory", "## (d) Accuracy", "## (e) A busy drawing"):
        assert heading in text
    speed = re.search(r"^\| 160x90 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text, re.M)
    assert speed and all(float(v) > 0 for v in speed.groups())
    busy = re.search(r"^\| 160x90 \| (\d+) \| 20 \| 3 \| (\d+) \|", text, re.M)
    assert busy and int(busy.group(1)) > 50
    ratio = re.search(r"Ratio 30/10 frames: \*\*([\d.]+)\*\*", text)
    assert ratio and float(ratio.group(1)) > 0
    for memory in ("on", "off"):
        row = re.search(rf"^\| 0 \| {memory} \| ([\d.]+)% \| ([\d.]+)% \|", text, re.M)
        assert row and all(0 <= float(v) <= 100 for v in row.groups())
    split = re.search(r"^\| 0 \| on \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+%|n/a) \|", text, re.M)
    assert split and all(0 <= float(v) <= 100 for v in split.groups()[:4])
    assert not list(tmp_path.glob(".paint.md.partial-*"))
