"""Built-in scenarios and their dataset loaders (installed as ``cl_bench.benchmarks``).

Importing this package imports every module in it; scenario modules register their builders with
``@register_scenario``.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
