"""The `longanim` command line.

Every `cli/*_command.py` module is one subcommand: it defines NAME, HELP,
`add_arguments(parser)` and `run(args) -> int`, and imports anything heavy inside
`run`, so `longanim --help` stays instant and needs no torch.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import longanim
from longanim.engine.errors import LonganimError, missing_model_package


def _command_modules():
    for info in sorted(pkgutil.iter_modules(longanim.__path__), key=lambda i: i.name):
        if info.name.endswith("_command"):
            yield importlib.import_module(f"longanim.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longanim",
        description="Long-shot line-art colorization with consistent colors.",
    )
    parser.add_argument("--version", action="version", version=f"longanim {longanim.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except LonganimError as exc:
        print(f"longanim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        hint = missing_model_package(exc)
        if hint is None:
            raise
        print(f"longanim {args.command}: error: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"longanim {args.command}: interrupted", file=sys.stderr)
        return 130
