"""The text syntax of Nuke's .nk scripts, for the fake `nuke` module's scriptSave and
scriptOpen (tests only; which knobs and nodes are written is the fake's business).

A .nk script is Tcl that Nuke runs to build the node graph: a command per line, words
split on blanks; a word is bare (`file /plates/sh010.####.exr`), in double quotes with
backslash escapes (`label "two words"`, `T "line one\\nline two"`: `\\"`, `\\\\`, and `\\[`
and `\\$` so that Tcl neither runs a command nor reads a variable), or in braces, kept as
written and possibly nested (a node's knobs, `Group { ... }`, an addUserKnob's spec, a
pulldown's items `M {paint longanimation passthrough}`). `[stack 0]` (in `set N1 [stack
0]`) is a command substitution, kept as one word; a line starting with `#` is a comment
(the `#! .../Nuke -nx` first line).
"""

from __future__ import annotations

import re

_BARE = re.compile(r"[A-Za-z0-9_./:#%@+,=~*-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "[": "\\[", "$": "\\$", "\n": "\\n", "\t": "\\t"}
_UNESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


class NkSyntaxError(ValueError):
    """A .nk text Nuke would refuse to read (Nuke reports these as script errors)."""


def word(value: object) -> str:
    """One value as a Tcl word: bare where it can be, else quoted."""
    text = str(value)
    if _BARE.fullmatch(text) and not text.startswith("#"):
        return text
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def words_list(values) -> str:
    """A Tcl list in braces, as Nuke writes a pulldown's items."""
    return "{" + " ".join(word(v) for v in values) + "}"


def commands(text: str) -> list[list[str]]:
    """The commands of a script (or of a braced body), each a list of its words with quotes
    and escapes resolved and braces stripped."""
    out: list[list[str]] = []
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
        elif c in "\n;":
            if words:
                out.append(words)
                words = []
            i += 1
        elif c == "#" and not words:  # a comment, to the end of the line
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            token, i = _word(text, i)
            words.append(token)
    if words:
        out.append(words)
    return out


def _line(text: str, i: int) -> int:
    return text.count("\n", 0, i) + 1


def _word(text: str, i: int) -> tuple[str, int]:
    c, n = text[i], len(text)
    if c == '"':
        word, j = _unescaped(text, i + 1, '"')
        if j >= n:
            raise NkSyntaxError(f"line {_line(text, i)}: a quote that is never closed")
        return word, j + 1
    if c in "{[":
        close, depth, j = "}" if c == "{" else "]", 0, i
        while j < n:
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == c:
                depth += 1
            elif text[j] == close:
                depth -= 1
                if depth == 0:
                    break
            j += 1
        else:
            raise NkSyntaxError(f"line {_line(text, i)}: a '{c}' that is never closed")
        return (text[i + 1:j] if c == "{" else text[i:j + 1]), j + 1
    return _unescaped(text, i, " \t\r\n;")


def _unescaped(text: str, i: int, stops: str) -> tuple[str, int]:
    """The text from i up to the first of `stops` not escaped, backslash escapes undone, and
    where it stopped (len(text) if at its end)."""
    buf, j, n = [], i, len(text)
    while j < n and text[j] not in stops:
        if text[j] == "\\" and j + 1 < n:
            buf.append(_UNESCAPES.get(text[j + 1], text[j + 1]))
            j += 2
        else:
            buf.append(text[j])
            j += 1
    return "".join(buf), j
