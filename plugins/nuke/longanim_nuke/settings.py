"""What a LongAnimationColorize node asks for, as plain values (no `nuke` here).

The Nuke layer copies the knobs into a `Settings`; everything after that (checking,
deciding whether the cache is current, running the engine job) works on these values,
so it is tested with plain pytest. Bad values raise `InputError` naming the knob.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from longanim.engine.errors import InputError

MAX_REFS = 3  # the node's reference inputs: ref1, ref2, ref3
BACKENDS = ("paint", "longanimation", "passthrough")


@dataclass(frozen=True)
class RefFrame:
    """A keyframe: reference input `input` (1-based) rendered at `frame`."""

    input: int
    frame: int


@dataclass(frozen=True)
class Settings:
    engine: str
    first: int
    last: int
    refs: tuple[RefFrame, ...]
    backend: str = "paint"
    options: dict[str, Any] = field(default_factory=dict)
    cache_dir: str = ""
    timeout: float = 30.0

    def key(self) -> dict[str, Any]:
        """What the results depend on (not where the engine is, nor how patient to be): a
        cache folder made with the same key is current for these knobs."""
        return {"first": self.first, "last": self.last, "backend": self.backend,
                "options": dict(sorted(self.options.items())),
                "refs": [[r.input, r.frame] for r in self.refs]}


def parse_ref_frames(text: str, inputs: int = MAX_REFS) -> tuple[RefFrame, ...]:
    """ "1001 1200" (both from ref1) or "1001 2:1200" (the second from ref2): one entry per
    keyframe, separated by spaces or commas; a frame is keyed at most once."""
    refs: list[RefFrame] = []
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        m = re.fullmatch(r"(?:(\d+):)?(-?\d+)", entry)
        if not m:
            raise InputError(f"reference frames: '{entry}' is not FRAME or INPUT:FRAME (e.g. 1001 or 2:1200)")
        ref = RefFrame(int(m[1]) if m[1] else 1, int(m[2]))
        if not 1 <= ref.input <= inputs:
            raise InputError(f"reference frames: '{entry}' names input {ref.input}; the node has ref1 to ref{inputs}")
        if any(r.frame == ref.frame for r in refs):
            raise InputError(f"reference frames: frame {ref.frame} is keyed twice")
        refs.append(ref)
    if not refs:
        raise InputError("reference frames: none given; list the frame each reference shows, e.g. 1001")
    return tuple(sorted(refs, key=lambda r: r.frame))


def parse_options_text(text: str) -> dict[str, Any]:
    """ "gap_close=2 global_memory=false": the CLI's --set syntax, space/comma separated."""
    from longanim.options import parse_options

    pairs = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    try:
        return parse_options(pairs)
    except InputError as exc:
        raise InputError(f"backend options: {exc}") from None


def check(settings: Settings) -> None:
    """Refuse what the engine would refuse later, naming the knob to change."""
    if not re.fullmatch(r"(tcp|ipc|inproc)://\S+", settings.engine.strip()):
        raise InputError(f"engine address '{settings.engine}' is not a ZeroMQ address like tcp://127.0.0.1:5555")
    if settings.last < settings.first:
        raise InputError(f"frame range: last frame {settings.last} is before first frame {settings.first}")
    if settings.backend not in BACKENDS:
        raise InputError(f"backend '{settings.backend}' is not one of {', '.join(BACKENDS)}")
    outside = [r.frame for r in settings.refs if not settings.first <= r.frame <= settings.last]
    if outside:
        raise InputError(f"reference frame {outside[0]} is outside the frame range {settings.first}-{settings.last}; "
                         "widen the range or key a frame inside it")
    if settings.timeout <= 0:
        raise InputError(f"engine timeout must be positive seconds, got {settings.timeout}")
