"""The results store, by stage: ``file`` (opening one SQLite file to write or read only), ``schema``
(its tables, versions, migrations and the open-time check), ``records`` (the run record, its attempts,
the hashing of configurations), ``runs`` (``Store``: runs written and read, attempts, the spill file of
a save that fails), ``claims`` (which process runs which configuration) and ``admin`` (``cl-bench
runs``: find, tag, remove, export, merge, import). ``from cl_bench.store import Store, RunRecord, ...``
is the room's face, as before it was a package."""

from cl_bench.store import runs as _runs
from cl_bench.store.runs import *  # noqa: F403 (the names of runs.__all__ are the room's face)

__all__ = _runs.__all__
