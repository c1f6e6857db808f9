"""Exceptions that the CLI turns into one-line messages.

`UserError` (and subclasses) means the input was wrong: the CLI prints
``error: <message>`` and exits with status 2, no traceback. Anything else that
escapes a command is an internal failure: exit status 1. An `OSError` that the user can fix (a full
disk, a read-only file system, permissions) becomes an `OutputError` naming the path.
"""

from __future__ import annotations

import errno
import os
import re


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


class OutputError(UserError):
    """A file or folder cannot be written: a full disk, a quota, a read-only file system, permissions.

    Built from the `OSError` with `from_os_error`, which names the path and what to do about it.
    """

    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
    ADVICE = {
        errno.ENOSPC: "free some space or choose another --output",
        errno.EDQUOT: "free some space (you are over your disk quota) or choose another --output",
        errno.EROFS: "the file system is read-only: choose another --output",
        errno.EACCES: "fix its permissions (or, for an output, choose another --output)",
        errno.EPERM: "fix its permissions (or, for an output, choose another --output)",
    }
    WRITE_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})  # a read fails otherwise

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(message)

    @classmethod
    def from_os_error(cls, e: OSError, path: str | os.PathLike[str] | None = None) -> OutputError | None:
        """``PATH: cannot write (REASON); WHAT TO DO`` for a failure the user can fix (None for another OSError)."""
        if e.errno not in cls.ERRNOS:
            return None
        where = e.filename if e.filename is not None else path
        where = None if where is None else os.fsdecode(where)
        reason = e.strerror or os.strerror(e.errno or 0)
        prefix = f"{where}: " if where is not None else ""
        what = f"cannot write ({reason})" if e.errno in cls.WRITE_ONLY else reason
        return cls(f"{prefix}{what}; {cls.ADVICE[e.errno]}", where)

    @classmethod
    def from_exception(cls, e: BaseException) -> OutputError | None:
        """`from_os_error` for an `OSError`, or for the ``(os error 28)`` that Rust writers (safetensors,
        tokenizers) put in their own exceptions' messages; None for anything else."""
        if isinstance(e, OSError):
            return cls.from_os_error(e)
        found = re.search(r"\(os error (\d+)\)", str(e))
        if found is None:
            return None
        code = int(found.group(1))
        return cls.from_os_error(OSError(code, os.strerror(code)))


class TrainingError(Exception):
    """Training cannot go on (NaN loss, diverged value head). Exit status 1.

    Raised after the last good checkpoint is known to be intact.
    """
