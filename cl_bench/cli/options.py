"""Options several commands share, declared once: the results store, the data root, the device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cl_bench.store import DEFAULT_STORE

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def store_option(help: str = "SQLite results file.", default: str | None = DEFAULT_STORE) -> Decorator:
    return click.option("--store", default=default, show_default=default is not None, help=help)


def data_root_option() -> Decorator:
    return click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")


def device_option(help: str = "cpu, cuda, cuda:1, ...", default: str | None = "cpu") -> Decorator:
    return click.option("--device", default=default, show_default=default is not None, help=help)
