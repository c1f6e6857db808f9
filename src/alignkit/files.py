"""Atomic writes: a file or folder appears whole or not at all (a crash leaves the old one intact).

Everything alignkit writes that a user would miss (configs, reports, checkpoints, label files' neighbours)
goes through here: write to a temporary name in the same folder, fsync, then rename over the target.
A write that fails (a full disk, a read-only file system, permissions) raises an `OSError` that names the
target, never the temporary name (`name_os_error`); the CLI tells the user what to do about it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "jsonable",
    "name_os_error",
]


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically; an `OSError` (a full disk, permissions) names ``path``.

    ``mode`` (e.g. ``0o600`` for a file holding secrets) is the file's mode from its first byte on; by default
    the mode open() would give.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")  # mkstemp's own name below; this one only for errors
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes 0600
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        named = name_os_error(e, path, tmp)
        if named is e:
            raise
        raise named from e


def name_os_error(e: OSError, target: Path, tmp: Path | None = None) -> OSError:
    """``e`` naming ``target`` where it names no file, or our temporary ``tmp`` (or a file in it).

    The user asked for ``target``, never for the temporary name beside it. Returns ``e`` itself when it
    names another file (say, an input that could not be read).
    """
    if e.filename is None:
        where = Path(target)
    else:
        name = Path(os.fsdecode(e.filename))
        if tmp is None or (name != tmp and tmp not in name.parents):
            return e
        where = Path(target) / name.relative_to(tmp)
    return OSError(e.errno, e.strerror or str(e), os.path.normpath(where))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def jsonable(obj: Any) -> Any:
    """Plain JSON values: tensors/numpy scalars to numbers, NaN/inf to None, paths to str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            obj = obj.item()
        except (ValueError, RuntimeError):
            return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory in a temp dir beside ``final``, then rename it into place."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as e:  # name the folder, not the temporary name mkdtemp tried in it
        if e.filename is not None and Path(os.fsdecode(e.filename)).parent != final.parent:
            raise
        raise OSError(e.errno, e.strerror, str(final.parent)) from e
    try:
        build(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        failure = _write_failure(e, final, tmp)  # before the temp dir goes: a full disk frees up with it
        shutil.rmtree(tmp, ignore_errors=True)
        if failure is None or failure is e:
            raise
        raise failure from e
    return final


def _write_failure(e: BaseException, final: Path, tmp: Path) -> OSError | None:
    """The `OSError` (naming ``final``) behind a failed write into ``tmp``, where one can be told.

    Writers that are not Python's own hide it: safetensors says ``I/O error: ... (os error 28)``, torch's
    zip writer only ``unexpected pos``; a file system with (next to) nothing left tells the full disk then.
    """
    if isinstance(e, OSError):
        return name_os_error(e, final, tmp)
    if not isinstance(e, Exception):
        return None
    found = re.search(r"os error (\d+)", str(e))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(final))
    try:
        full = shutil.disk_usage(tmp).free < 1 << 20
    except OSError:
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final)) if full else None
