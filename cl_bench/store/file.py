"""Opening a results-store file and talking to it: the checks before any work, its connections, its write
transactions and SQLite's errors turned into StoreError with what to do. cl_bench.store's ``Store``
adds what is written and read.

Two ways to open it:

- ``Store(path)``, for writing (``run``, ``sweep``, ``demo``): the file is created if missing; it must
  be a cl-bench store of this or an older schema version (cl_bench.store.schema: an older one is
  migrated in place by its first write, a newer one refused) and writable, all checked here, before
  any training.
- ``Store.open_read(path)`` (or ``Store(path, read_only=True)``), for reading (``report``, ``status``,
  ``results.load``): never creates, migrates or writes anything, also works on a read-only file,
  folder or file system, and a missing file is an error ("no store at PATH"), not a new empty store.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from cl_bench.store.schema import (
    SCHEMA_VERSION,
    StoreError,
    check_tables,
    check_version,
    create,
    migrate,
    version_of,
)

DEFAULT_STORE = "cl-bench.db"
TIMEOUT_S = 60  # how long a write waits for another process's transaction

T = TypeVar("T")
S = TypeVar("S", bound="StoreFile")


class NoStoreError(StoreError):
    """A reading command was pointed at a path holding no store."""


class StoreFile:
    """One store file, opened for writing or for reading only (see the module docstring)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.version = self._open_read() if read_only else self._open_write()

    @classmethod
    def open_read(cls: type[S], path: str | os.PathLike = DEFAULT_STORE) -> S:
        """The store at ``path`` for reading only (see the module docstring)."""
        return cls(path, read_only=True)

    # ---- opening -------------------------------------------------------------------------------------
    def _open_write(self) -> int:
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a folder; give a file, e.g. {self.path / DEFAULT_STORE}")
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot create results store {self.path}: folder {self.path.parent} does not exist")
        with self._errors("open"), self._connection() as conn:
            version = version_of(conn, self.path)
            check_version(version, self.path)
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
            conn.execute("BEGIN IMMEDIATE")  # write access to the file and its folder, checked now
            if version == 0:
                create(conn)  # a new store: at the current version at once
            else:  # its tables as its version has them: refused or repaired now, not at the first save
                repaired = check_tables(conn, version, self.path, repair=True)
                if repaired:
                    warnings.warn(
                        f"results store {self.path}: repaired ({'; '.join(repaired)}: added, empty)", stacklevel=4
                    )
            conn.execute("COMMIT")
        return version or SCHEMA_VERSION

    def _open_read(self) -> int:
        if not self.path.exists():
            raise NoStoreError(
                f"no store at {self.path} (a mistyped --store? reading commands never create "
                f"one; `cl-bench run` or `cl-bench sweep` make it)"
            )
        if not self.path.is_file():
            raise NoStoreError(f"no store at {self.path}: it is a folder, not a results file")
        version = self.read(lambda conn: version_of(conn, self.path))
        if version == 0:
            raise NoStoreError(f"no store at {self.path}: the file is an empty database, not a cl-bench results store")
        check_version(version, self.path)
        self.read(lambda conn: check_tables(conn, version, self.path, repair=False))
        return version

    # ---- connections ---------------------------------------------------------------------------------
    @contextmanager
    def _connection(self, immutable: bool = False) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            # mode=ro reads through the WAL (what writers committed but not yet copied into the file);
            # immutable=1 (no such changes: no -wal, or an empty one) reads the file alone, creating
            # nothing (mode=ro would leave -wal/-shm files behind), even in a read-only folder
            uri = self.path.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
            conn = sqlite3.connect(uri, uri=True, timeout=TIMEOUT_S)
        else:
            conn = sqlite3.connect(self.path, timeout=TIMEOUT_S)
        conn.isolation_level = None  # transactions are explicit (BEGIN IMMEDIATE in `transaction`)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        finally:
            conn.close()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` on a consistent view of the store, read-only stores creating no file."""
        if not self.read_only:
            with self._errors("read"), self._connection() as conn:
                return fn(conn)
        wal = Path(f"{self.path}-wal")
        if not wal.exists() or wal.stat().st_size == 0:  # nothing beyond the file itself to read
            before = _stamp(self.path)
            with self._errors("read"), self._connection(immutable=True) as conn:
                result = fn(conn)
            if _stamp(self.path) == before:
                return result
            # a writer started and checkpointed into the file while we read it: read again through its WAL
        try:
            with self._errors("read"), self._connection() as conn:
                return fn(conn)
        except StoreError as e:
            if os.access(self.path.parent, os.W_OK):
                raise
            raise StoreError(
                f"results store {self.path} has changes not yet copied into it (in {wal}) and its "
                f"folder is read-only, so they cannot be read: where the folder is writable, run "
                f"`sqlite3 {self.path} 'PRAGMA wal_checkpoint(TRUNCATE)'` once ({e})"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken first, so a read followed by a
        write cannot be overtaken by another process). An older store is migrated first, in the same
        transaction. Committed on success, rolled back on any error."""
        if self.read_only:
            raise StoreError(f"results store {self.path} was opened read-only")
        with self._errors("write"), self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self.version < SCHEMA_VERSION:
                    version = version_of(conn, self.path)  # another process may have migrated it already
                    check_version(version, self.path)
                    if version < SCHEMA_VERSION:
                        migrate(conn, version)
                    self.version = SCHEMA_VERSION
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite's errors as StoreError with what to do; every other exception passes unchanged."""
        try:
            yield
        except StoreError:
            raise
        except sqlite3.OperationalError as e:
            text = str(e)
            if "locked" in text or "busy" in text:
                raise StoreError(
                    f"results store {self.path} is locked by another process for over {TIMEOUT_S} "
                    f"s; nothing was written. Retry when it finishes."
                ) from None
            if not self.read_only and ("readonly" in text or "read-only" in text or not self._writable()):
                raise StoreError(
                    f"results store {self.path} cannot be written ({text}): run, sweep and demo need "
                    f"write access to the file and its folder (report and status only read; or "
                    f"use --store to write elsewhere)"
                ) from None
            raise StoreError(f"cannot {doing} results store {self.path}: {text}") from None
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"results store {self.path} is corrupt or not a cl-bench store ({e}); "
                f"nothing was written (use --store to choose another file)"
            ) from None

    def _writable(self) -> bool:
        folder_ok = os.access(self.path.parent, os.W_OK)
        return folder_ok and (not self.path.exists() or os.access(self.path, os.W_OK))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino
