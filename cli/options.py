"""Parsing of the command line's small value syntaxes, shared by the CLI and the remote client."""

from __future__ import annotations

from longanim.engine.errors import InputError


def parse_refs(texts: list[str]):
    from longanim.engine.pipeline import RefSpec
    from longanim.engine.sequences.reader import parse_ref_arg

    return [RefSpec(*parse_ref_arg(text)) for text in texts]


def parse_options(pairs: list[str]) -> dict:
    """`key=value` strings -> a dict with ints, floats, booleans and strings told apart."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"backend option {pair!r} is not KEY=VALUE")
        options[key.strip()] = _value(value.strip())
    return options


def _value(text: str):
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
