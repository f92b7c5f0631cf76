"""User-facing errors: the CLI prints their message and exits non-zero; the engine
server turns them into error replies. Anything else escaping is a bug."""


class LonganimError(Exception):
    """Base of every error whose message is meant for the user."""


class InputError(LonganimError, ValueError):
    """Bad input: missing or unreadable files, mismatched sizes, bad frame ranges..."""
