"""Every run stored under reports/ keeps its id: the id is recomputed from the stored configuration
by today's code and must equal the stored one (a refactoring that changes the hash would silently
orphan every stored result). A run made from other data or another version of a strategy file than a
finished run of the same configuration is stored beside it under a salted id that names its base."""

from pathlib import Path

import pytest

from cl_bench.runner import RunConfig
from cl_bench.runner.identity import salted_id
from cl_bench.store import Store
from cl_bench.trainer import Protocol

REPORTS = Path(__file__).resolve().parents[1] / "reports"
STORES = sorted(REPORTS.glob("**/*.db"))


def test_there_are_stores_with_runs_to_check():
    assert sum(len(Store.open_read(path).query()) > 0 for path in STORES) >= 3


@pytest.mark.parametrize("path", STORES, ids=lambda p: str(p.relative_to(REPORTS)))
def test_stored_run_ids_are_recomputed_equal(path):
    for r in Store.open_read(path).query():  # read-only: the committed stores are never migrated here
        config = RunConfig(r.strategy, r.scenario, r.seed, r.hparams, Protocol(**r.protocol), r.scenario_options)
        expected = config.run_id(resolved_hparams=r.hparams)
        base = (r.identity or {}).get("base_run_id")
        if base:
            assert base == expected and salted_id(base, r.identity) == r.run_id, (r.strategy, r.seed)
        else:
            assert expected == r.run_id, (r.strategy, r.scenario, r.seed)
