"""Colorizer backends by name. Heavy backends import lazily so `paint` needs no torch."""

from __future__ import annotations

import importlib
import inspect

from longanim.engine.backends.base import Backend, BackendError
from longanim.engine.errors import missing_model_package

# name -> "module:Class"; the module is imported only when the backend is asked for.
_REGISTRY: dict[str, str] = {
    "paint": "longanim.engine.backends.paint.colorizer:PaintBackend",
    "passthrough": "longanim.engine.backends.passthrough:PassthroughBackend",
    "longanimation": "longanim.engine.backends.longanimation.backend:LongAnimationBackend",
}


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def create_backend(name: str, **options) -> Backend:
    """Build a backend by name; unknown names and options fail with the valid choices."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}; choose one of: {', '.join(available_backends())}"
        ) from None
    module_name, class_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        _check_option_names(name, cls, options)
        return cls(**options)
    except ImportError as exc:
        hint = missing_model_package(exc)
        if hint is None:
            raise
        raise BackendError(f"backend {name!r}: {hint}") from None
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend {name!r}: bad options {sorted(options)}: {exc}") from None


def _check_option_names(name: str, cls, options: dict) -> None:
    """An unknown option names the valid ones, not Python's complaint about a keyword."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    valid = sorted(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise BackendError(f"backend {name!r} has no option {', '.join(unknown)}; its options: {', '.join(valid)}")
