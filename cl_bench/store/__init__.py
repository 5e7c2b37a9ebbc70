"""The results store, by stage: ``file`` (opening one SQLite file to write or read only), ``schema``
(its tables, versions, migrations and the open-time check), ``records`` (the run record, its attempts,
the hashing of configurations), ``runs`` (``Store``: runs written and read, attempts, the spill file of
a save that fails), ``claims`` (which process runs which configuration) and ``admin`` (``cl-bench
runs``: find, tag, remove, export, merge, import). ``from cl_bench.store import Store, RunRecord, ...``
is the room's face, as before it was a package."""

from cl_bench.store.runs import (
    DEFAULT_STORE,
    FAILED,
    SCHEMA_VERSION,
    TIMEOUT_S,
    Attempt,
    NoStoreError,
    RunRecord,
    Saved,
    SchemaError,
    Store,
    StoredIdentity,
    StoreError,
    UnknownRunError,
    config_hash,
    read_spilled,
    save_or_spill,
    spill,
)

__all__ = [
    "DEFAULT_STORE",
    "FAILED",
    "SCHEMA_VERSION",
    "TIMEOUT_S",
    "Attempt",
    "NoStoreError",
    "RunRecord",
    "Saved",
    "SchemaError",
    "Store",
    "StoreError",
    "StoredIdentity",
    "UnknownRunError",
    "config_hash",
    "read_spilled",
    "save_or_spill",
    "spill",
]
