"""User-facing errors: the CLI prints their message and exits non-zero; the engine
server turns them into error replies. Anything else escaping is a bug."""


class LonganimError(Exception):
    """Base of every error whose message is meant for the user."""


class InputError(LonganimError, ValueError):
    """Bad input: missing or unreadable files, mismatched sizes, bad frame ranges..."""


# What `pip install longanim` leaves out: the full model and the learned metrics need them.
MODEL_PACKAGES = frozenset({"torch", "diffusers", "transformers", "safetensors", "accelerate"})


def missing_model_package(exc: ImportError) -> str | None:
    """The message for an import that failed because the `[model]` extra is not installed."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in MODEL_PACKAGES:
        return None
    return (f"this needs the model packages, and {name} is not installed: "
            "pip install 'longanim[model]' (with a torch build for your GPU)")
