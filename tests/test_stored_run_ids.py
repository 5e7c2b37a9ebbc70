"""Every run stored under reports/ keeps its id: the id is recomputed from the stored configuration
by today's code and must equal the stored one (a refactoring that changes the hash would silently
orphan every stored result)."""

from pathlib import Path

import pytest

from cl_bench.runner import RunConfig
from cl_bench.store import Store
from cl_bench.trainer import Protocol

REPORTS = Path(__file__).resolve().parents[1] / "reports"
STORES = sorted(REPORTS.glob("**/*.db"))


def test_there_are_stores_to_check():
    assert len(STORES) >= 3


@pytest.mark.parametrize("path", STORES, ids=lambda p: str(p.relative_to(REPORTS)))
def test_stored_run_ids_are_recomputed_equal(path):
    records = Store(path).query()
    assert records
    for r in records:
        config = RunConfig(r.strategy, r.scenario, r.seed, r.hparams, Protocol(**r.protocol), r.scenario_options)
        assert config.run_id(resolved_hparams=r.hparams) == r.run_id, (r.strategy, r.scenario, r.seed)
