"""The install and the CI command stay as the README says."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:sh|bash)?\n(.+?)\n```", readme, re.S)
    assert match, "README.md must mark its test command with <!-- test-command -->"
    command = match.group(1).strip()
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert command in ci_lines


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {"cli": "longanim", "engine": "longanim.engine", "protocol": "longanim.protocol"}
    found = set()
    for folder, name in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed


def test_light_parts_import_without_torch():
    code = (
        "import sys, longanim.protocol, longanim.engine.pipeline, longanim.commands;"
        "import longanim.engine.backends.paint.colorizer, longanim.engine.server.control_loop;"
        "assert 'torch' not in sys.modules, 'torch was imported';"
        "assert 'diffusers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "longanim", "--help"], capture_output=True, text=True, check=True)
    for command in ("colorize", "demo", "eval"):
        assert command in out.stdout
