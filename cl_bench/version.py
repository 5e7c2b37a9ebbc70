"""The package version, in a module of its own so that any module can read it without importing the
package face (``cl_bench/__init__.py``, which loads the Python API on first use)."""

__version__ = "0.2.0"
