"""One parser for typed values given as text or YAML: CLI ``NAME=VALUE`` options, sweep files and
strategy hyperparameters all go through ``parse_value``, so the same value means the same thing
everywhere (``epochs=1.7`` is an error, not 1; ``maybe`` is not a bool).

Rules, by the type the value must have (the type of the field's default):

- bool: a bool, 0/1, or one of true/false/yes/no/on/off/1/0 (any case);
- int: an int, a float with no fractional part, or text that reads as an integer (``10``, ``1e3``);
- float: an int or float, or text that reads as a number (YAML reads ``1e-4`` as text);
- str: text;
- list: a list (YAML) as it is;
- a field whose default is None (``clip_grad``): None, ``none``/``null``, or a float.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")


class BadValue(ValueError):
    """A value that does not have the type its field needs; the message names the field."""


def parse_value(raw: Any, kind: type | None, name: str) -> Any:
    """``raw`` as a value of ``kind`` (None: an optional float), or BadValue naming ``name``."""
    try:
        return _PARSERS[kind](raw)
    except KeyError:
        if kind is not None and isinstance(raw, kind):
            return raw
    except (TypeError, ValueError, OverflowError):
        pass
    what = (
        "a float or none"
        if kind is None
        else ("bool (true/false/yes/no/on/off/1/0)" if kind is bool else kind.__name__)
    )
    raise BadValue(f"{name} must be {what}, got {raw!r}")


def parse_like(raw: Any, default: Any, name: str) -> Any:
    """``raw`` as the type of ``default`` (a default of None means an optional float)."""
    return parse_value(raw, None if default is None else type(default), name)


def parse_assignments(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``("a=1", "b-c=x")`` -> ``{"a": "1", "b_c": "x"}``; a pair without ``=`` is BadValue. A name given
    twice is an error too: the later value would silently win."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise BadValue(f"{what} must be NAME=VALUE, got {pair!r}")
        if key in out:
            raise BadValue(f"{what} sets {key!r} twice ({out[key]!r} and {value.strip()!r})")
        out[key] = value.strip()
    return out


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().lower() if isinstance(raw, str) else None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(raw)


def _int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise TypeError(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        raw = raw.strip()
        try:
            return int(raw)
        except ValueError:
            raw = float(raw)  # "1e3"
    if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
        return int(raw)
    raise ValueError(raw)


def _float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise TypeError(raw)
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        return float(raw.strip())
    raise TypeError(raw)


def _str(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    raise TypeError(raw)


def _list(raw: Any) -> list:
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise TypeError(raw)


def _optional_float(raw: Any) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null")):
        return None
    return _float(raw)


_PARSERS = {bool: _bool, int: _int, float: _float, str: _str, list: _list, tuple: _list, None: _optional_float}
