"""plugins/nuke type-checks with mypy against the types-nuke stubs (Python 3.10, Nuke 15's),
the CI gate for a plug-in whose Nuke layer cannot run here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


_PROBE = """
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("nuke")
print(importlib.util.find_spec("mypy") is not None)
print(spec.origin if spec else "")
print(any(pathlib.Path(p, "nuke-stubs").is_dir() for p in sys.path))
"""


def _mypy(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", "plugins/nuke/mypy.ini", "--no-incremental",
                           "--cache-dir", "/dev/null", "plugins/nuke"], cwd=where, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def stubs():
    """mypy and the stubs are there, and no module `nuke` is importable (asked of a fresh
    Python: this process may have the tests' fake on its path)."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60).stdout
    has_mypy, nuke_origin, has_stubs = out.split("\n")[:3]
    assert has_mypy == "True", "mypy is missing: pip install -c constraints.txt -e '.[test]'"
    assert not nuke_origin, f"a module 'nuke' is importable ({nuke_origin}); never install the PyPI package 'nuke'"
    assert has_stubs == "True", "types-nuke is missing: pip install -c constraints.txt -e '.[test]'"


def test_the_nuke_plugin_type_checks_against_the_nuke_stubs(stubs):
    done = _mypy(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_the_check_fails_on_a_type_error(stubs, tmp_path):
    """The gate can fail: a call the stubs do not allow is reported (on a copy of the plug-in)."""
    shutil.copytree(REPO / "plugins" / "nuke", tmp_path / "plugins" / "nuke")
    probe = tmp_path / "plugins" / "nuke" / "longanim_nuke" / "_mypy_probe.py"
    probe.write_text("import nuke\n\n\ndef f() -> None:\n    nuke.execute(nuke.root(), 'one', 2)\n")
    done = _mypy(tmp_path)
    assert done.returncode == 1 and "_mypy_probe.py" in done.stdout and "execute" in done.stdout, done.stdout
