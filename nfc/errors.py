"""Errors that nfc reports to users.

Every error a user can cause derives from :class:`NfcError`. The command line prints its message
(no traceback) and exits with status 2; library callers can catch it.
"""

from __future__ import annotations

__all__ = ["NfcError", "TargetError", "ModelError"]


class NfcError(Exception):
    """A problem with the user's input: a bad file, an unsupported model, a bad target."""

    exit_code = 2


class TargetError(NfcError):
    """A target file is missing, malformed, or names a value outside its allowed range."""


class ModelError(NfcError):
    """A model cannot be read or imported. ``issues`` lists every offending node when known."""

    def __init__(self, message: str, issues: tuple[str, ...] = ()):
        self.issues = tuple(issues)
        if issues:
            message = message + "\n" + "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(message)
