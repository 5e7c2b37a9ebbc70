"""What every command shares: NAME=VALUE options, and user errors as one clear line (never a traceback)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from cl_bench.values import BadValue, parse_assignments

# Errors a user's input causes (bad names, values, paths, missing data): printed as "Error: ...".
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, LookupError)


def key_values(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``--set a=1 --set b=2`` -> ``{"a": "1", "b": "2"}``; a malformed pair is a usage error."""
    try:
        return parse_assignments(pairs, option)
    except BadValue as e:
        raise click.BadParameter(str(e), param_hint=option) from None


@contextlib.contextmanager
def user_errors(*extra: type[Exception]) -> Iterator[None]:
    """Turn the library's plain exceptions for bad input into click's one-line error and exit code 1."""
    try:
        yield
    except (*USER_ERRORS, *extra) as e:
        raise click.ClickException(str(e)) from None


# ---- files the commands write ----------------------------------------------------------------------
HINTS = {
    errno.EACCES: "no permission: choose a folder you can write",
    errno.EPERM: "no permission: choose a folder you can write",
    errno.EROFS: "a read-only file system: choose a folder you can write",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ENOSPC: "no space left on the device",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
}


def os_error_message(e: OSError) -> str:
    """An OSError as one line naming the path and what to do."""
    where = " and ".join(_short(f) for f in (e.filename, e.filename2) if f is not None) or "a file"
    hint = HINTS.get(e.errno, e.strerror or str(e))
    return f"cannot use {where}: {hint} ({e.strerror or e})"


def check_output(path: str | os.PathLike | None, option: str, folder: bool = False) -> None:
    """Before any work: ``path`` (a file, or with ``folder`` a folder, that a command will write) can be
    made there; else click's one-line error naming ``option``."""
    if path is None:
        return
    path = Path(path)
    try:
        if len(path.name.encode()) > 255:
            raise _refuse(option, f"{_short(path)}: the name is too long for the file system")
        exists = path.exists()
        if exists and folder and not path.is_dir():
            raise _refuse(option, f"{path} is a file, not a folder")
        if exists and not folder and path.is_dir():
            raise _refuse(option, f"{path} is a folder; give a file name")
        target = path if exists and (folder or path.is_file()) else _nearest_existing(path.parent)
        if not target.is_dir() and not exists:
            raise _refuse(option, f"cannot create {path}: {target} is a file, not a folder")
        if not os.access(target, os.W_OK) or (exists and not folder and not os.access(path, os.W_OK)):
            raise _refuse(option, f"cannot write {path}: {target} is read-only")
    except OSError as e:
        raise _refuse(option, os_error_message(e)) from None


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (what a command's ``mkdir(parents=True)`` writes into)."""
    folder = folder if str(folder) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _refuse(option: str, why: str) -> click.ClickException:
    return click.ClickException(f"{option}: {why}")


def _short(path) -> str:
    """A path as written, its middle elided past 100 characters (a 300-character name stays one line)."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return text if len(text) <= 100 else f"{text[:60]}...{text[-30:]}"
