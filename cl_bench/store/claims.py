"""Claims: which process is running which configuration right now, so that two sweeps (or a sweep and a
``cl-bench run``) on one store never run the same configuration at the same time.

Before a run starts, its configuration's ``run_id`` is claimed in the store's ``claims`` table, in one
write transaction that also reads the current claim (so two processes cannot both win). A claim names
its owner (a token per sweep driver or ``cl-bench run``, its host and pid) and expires ``CLAIM_TTL_S``
after the owner's last heartbeat (``Heartbeat``, every ``HEARTBEAT_S``). A claim whose owner is dead
is taken over: at once when the owner ran on this host and its pid is gone (``kill -9``), else when it
expires. An owner releases its claim when the run has ended (stored or not).

Not promised: a process paused for longer than the TTL (a suspended laptop, SIGSTOP) can lose its claim
to another host; two hosts must see the same store file (SQLite over a network file system is only as
safe as that file system's locks).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

from cl_bench.store.runs import Store, StoreError
from cl_bench.store.schema import tables

CLAIM_TTL_S = 300.0
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class Owner:
    token: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Owner:
        """A new owner for this process (a sweep driver, a ``cl-bench run``)."""
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid())


@dataclass(frozen=True)
class Claim:
    run_id: str
    owner: str
    host: str
    pid: int
    claimed: float
    expires: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.claimed))
        return f"pid {self.pid} on {self.host}, since {since}"


class RunBusy(StoreError):
    """Another live process holds the claim of this configuration."""

    def __init__(self, run_id: str, holder: Claim):
        self.run_id, self.holder = run_id, holder
        super().__init__(
            f"run {run_id} is being run by another process ({holder.describe()}); nothing was done. "
            f"Its result will be in the store when it ends"
        )


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: rely on the expiry
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_dead(claim: Claim, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return claim.expires < now or (claim.host == socket.gethostname() and not _alive(claim.pid))


def claim(store: Store, run_id: str, owner: Owner, ttl: float = CLAIM_TTL_S) -> Claim | None:
    """Claim ``run_id`` for ``owner`` (renewing it if already its own, taking over a dead one). Returns
    None when claimed, else the live claim of another owner."""
    now = time.time()
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT run_id, owner, host, pid, claimed, expires FROM claims WHERE run_id = ?", (run_id,)
        ).fetchone()
        held = Claim(*row) if row else None
        if held is not None and held.owner != owner.token and not is_dead(held, now):
            return held
        since = held.claimed if held is not None and held.owner == owner.token else now
        conn.execute(
            "INSERT OR REPLACE INTO claims (run_id, owner, host, pid, claimed, expires) VALUES (?,?,?,?,?,?)",
            (run_id, owner.token, owner.host, owner.pid, since, now + ttl),
        )
    return None


def release(store: Store, run_id: str, owner: Owner) -> None:
    with store.transaction() as conn:
        conn.execute("DELETE FROM claims WHERE run_id = ? AND owner = ?", (run_id, owner.token))


def heartbeat(store: Store, owner: Owner, ttl: float = CLAIM_TTL_S) -> None:
    """Push the expiry of every claim of ``owner`` forward."""
    with store.transaction() as conn:
        conn.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl, owner.token))


def live_claims(store: Store) -> list[Claim]:
    """The claims of live owners (for ``cl-bench status``); none in a store of schema version 1."""

    def read(conn):
        if "claims" not in tables(conn):
            return []
        return conn.execute("SELECT run_id, owner, host, pid, claimed, expires FROM claims").fetchall()

    now = time.time()
    return [c for c in (Claim(*r) for r in store.read(read)) if not is_dead(c, now)]


class Heartbeat:
    """A daemon thread renewing ``owner``'s claims every ``interval`` seconds while in the ``with``."""

    def __init__(self, store: Store, owner: Owner, interval: float = HEARTBEAT_S):
        self.store, self.owner, self.interval = store, owner, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cl-bench-heartbeat", daemon=True)

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            try:
                heartbeat(self.store, self.owner)
            except StoreError as e:  # a busy store now and then: the next beat renews the claims
                if not warned:
                    warnings.warn(f"could not renew the claims of this process ({e})", stacklevel=1)
                    warned = True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=5)
