"""Avalanche itself, imported lazily: ``import_avalanche`` and the error that says how to install it.

Importing Avalanche takes seconds and pulls in many libraries, so every module of this package calls
``import_avalanche()`` inside the functions that need it, never at import time: ``import cl_bench`` and
the CLI stay free of it.
"""

from __future__ import annotations

import warnings

from cl_bench.loggers import install_command

PREFIX = "avalanche:"  # strategy names ``avalanche:NAME`` (the registry's prefix hook)
INSTALL_HINT = install_command("avalanche")  # for how this cl-bench was installed (a checkout or a wheel)


class AvalancheNotInstalled(ImportError, ValueError):
    """Avalanche is not importable. A ValueError too, so the CLI and the report treat it like an
    unknown strategy (a clear message, not a traceback)."""


def import_avalanche():
    """The ``avalanche`` package, or AvalancheNotInstalled with the install command."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # import-time notices (qpsolvers' "no QP solver", ...)
            import avalanche.benchmarks.utils
            import avalanche.training
    except ImportError as e:
        raise AvalancheNotInstalled(
            f"Avalanche strategies and benchmarks need avalanche-lib: {INSTALL_HINT} ({e})"
        ) from e
    return avalanche
