"""Built-in strategies, one module each (installed as ``cl_bench.strategies``).

Importing this package imports every module in it, and each registers its class with
``@register_strategy``: adding a strategy is adding a file.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
