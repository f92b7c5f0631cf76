"""Colorizer backends by name. Heavy backends import lazily so `paint` needs no torch."""

from __future__ import annotations

import importlib

from longanim.engine.backends.base import Backend, BackendError

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
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend {name!r}: bad options {sorted(options)}: {exc}") from None
