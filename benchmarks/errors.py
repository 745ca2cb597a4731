"""User-facing errors: the CLI prints their message (never a traceback) and exits with `exit_code`."""
from __future__ import annotations


class EffbenchError(Exception):
    """Base class for errors whose message is meant for the user."""

    exit_code = 1


class ConfigError(EffbenchError):
    """Bad method, preset, key, type or value. Raised before any work is done; nothing is written."""

    exit_code = 2


class MissingAssetError(EffbenchError):
    """Weights or data the run needs are not on this machine. The message says what and how to get it."""

    exit_code = 3

    def __init__(self, what: str, how: str, looked: list[str] | None = None):
        self.what, self.how, self.looked = what, how, list(looked or [])
        msg = f"missing: {what}\n  how to get it: {how}"
        if self.looked:
            msg += "\n  looked in: " + ", ".join(self.looked)
        super().__init__(msg)
