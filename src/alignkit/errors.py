"""Exceptions that the CLI turns into one-line messages.

`UserError` (and subclasses) means the input was wrong: the CLI prints
``error: <message>`` and exits with status 2, no traceback. Anything else that
escapes a command is an internal failure: exit status 1.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a field, an option. Exit status 2."""


class DataError(UserError):
    """A data file (or one of its records) cannot be used.

    The message starts with ``FILE:LINE:`` when a line is known, so that the
    person can open the file at the right place.
    """

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(UserError):
    """A recipe or a command-line option is wrong (unknown key, bad value)."""


class ModelError(UserError):
    """A model name cannot be resolved or loaded."""


class TrainingError(Exception):
    """Training cannot go on (NaN loss, diverged value head). Exit status 1.

    Raised after the last good checkpoint is known to be intact.
    """
