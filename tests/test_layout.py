"""The folders of engine/ are its architecture; imports may only point the ways it allows.

Frames in and out (`sequences/`) and the colorizers (`backends/`) are used by the CLI,
the engine server and evaluation alike, so they must not depend on any of those; the
paint colorizer's parts are private to it; the protocol package ships into Blender and
Nuke and must not pull in the engine. Every import counts, including the lazy ones
inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"engine": "longanim.engine", "protocol": "longanim.protocol", "cli": "longanim"}


def module_name(path: Path) -> str:
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        if path.is_relative_to(base):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise ValueError(path)


def imports_of(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m == "longanim" or m.startswith("longanim.")}


def all_modules() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))}


MODULES = all_modules()


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def offenders(sources: str, forbidden: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        f"{mod} imports {imp}"
        for mod, imps in MODULES.items() if inside(mod, sources)
        for imp in imps
        if any(inside(imp, f) for f in forbidden) and not any(inside(imp, a) for a in allowed)
    )


def test_the_walker_sees_lazy_and_relative_imports():
    # job_runner builds backends through a lazy import inside a method.
    assert "longanim.engine.backends.create_backend" in MODULES["longanim.engine.server.job_runner"]
    assert "longanim.engine.sequences.image_files" in MODULES["longanim.engine.sequences.reader"]


@pytest.mark.parametrize("part", ["longanim.engine.sequences", "longanim.engine.backends"])
def test_sequences_and_backends_never_import_the_server_evaluation_or_pipeline(part):
    assert offenders(part, ["longanim.engine.server", "longanim.engine.evaluation",
                            "longanim.engine.pipeline", "longanim.commands"]) == []


def test_sequences_know_no_backend():
    assert offenders("longanim.engine.sequences", ["longanim.engine.backends"]) == []


def test_the_server_and_pipeline_never_import_evaluation():
    assert offenders("longanim.engine.server", ["longanim.engine.evaluation"]) == []
    assert offenders("longanim.engine.pipeline", ["longanim.engine.evaluation", "longanim.engine.server"]) == []


def test_errors_depend_on_nothing_of_ours():
    assert MODULES["longanim.engine.errors"] == set()


def test_protocol_never_imports_the_engine():
    assert offenders("longanim.protocol", ["longanim.engine", "longanim.commands"]) == []


def test_paint_parts_are_private_to_paint():
    """Outside paint/ only its colorizer (the backend) may be named."""
    paint = "longanim.engine.backends.paint"
    leaks = sorted(
        f"{mod} imports {imp}"
        for mod, imps in MODULES.items() if not inside(mod, paint)
        for imp in imps
        if inside(imp, paint) and not inside(imp, paint + ".colorizer") and imp != paint
    )
    assert leaks == []


def test_engine_top_level_is_only_the_spine():
    top = sorted(p.name for p in (ROOT / "engine").glob("*.py"))
    assert top == ["__init__.py", "errors.py"]
    folders = sorted(p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").is_file())
    assert folders == ["backends", "evaluation", "pipeline", "sequences", "server"]


def is_cli(module: str) -> bool:
    """The CLI is the `longanim` package itself (cli/); engine and protocol are subpackages of it,
    so any other `longanim.*` module is a CLI one, not only `longanim.commands`."""
    return inside(module, "longanim") and not inside(module, "longanim.engine") \
        and not inside(module, "longanim.protocol")


@pytest.mark.parametrize("part", ["longanim.engine.sequences", "longanim.engine.backends", "longanim.protocol"])
def test_sequences_backends_and_protocol_never_import_the_cli(part):
    assert sorted(f"{mod} imports {imp}" for mod, imps in MODULES.items() if inside(mod, part)
                  for imp in imps if is_cli(imp)) == []
