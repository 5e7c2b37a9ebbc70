"""cl-bench: a continual-learning benchmark harness re-implementing the protocol of HAT (Serra et al. 2018).

The Python API (``cl_bench.api``)::

    import cl_bench

    record = cl_bench.run("hat", "split_mnist", seed=0)      # one run, stored in ./cl-bench.db
    cl_bench.run_sweep("examples/sweeps/hat_split_mnist.yaml")  # a resumable grid of runs
    runs, accuracy = cl_bench.load_results("cl-bench.db")    # the store as pandas DataFrames
"""

import importlib

from cl_bench.version import __version__

_API = ("run", "run_sweep", "load_results")  # defined in cl_bench.api
__all__ = ["__version__", *_API]


# Why lazy (PEP 562): cl_bench.api imports torch, pandas and every room below it (~2 s), while
# `import cl_bench` must stay cheap, since the CLI imports this package for `cl-bench --help` and every
# command (budget ~0.1 s). So the API is imported on first access of one of its names. This is the one
# lazy import of a cl_bench module besides the CLI's command modules.
def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module("cl_bench.api"), name)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    raise AttributeError(f"module 'cl_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
