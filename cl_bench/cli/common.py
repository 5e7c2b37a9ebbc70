"""What every command shares: NAME=VALUE options, and user errors as one clear line (never a traceback)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

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
