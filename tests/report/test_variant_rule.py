"""The one rule for which runs make a row: defaults in fp32 over opt-in bf16 (whatever the tie-break of
labels), the setting a sweep selected on validation (tagged by the sweep, or recomputed from a sweep file
for runs made before), runs made before a hyperparameter existed, and --where / --all-variants."""

from __future__ import annotations

import csv
import dataclasses
import io
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from test_report import DATA, OPTIONS, PROTOCOL, SCENARIO, SEEDS, hand_acc_upto, matrix, synthetic_records

from cl_bench.cli import main
from cl_bench.registry import get_strategy, register_scenario
from cl_bench.report import analyse, sweep_selections, variants
from cl_bench.store import RunRecord, Store
from cl_bench.store.records import validation_monitoring
from cl_bench.sweep import load_sweep

BF16 = dict(PROTOCOL, precision="bf16", channels_last=False)


def _save(path, records) -> str:
    store = Store(path)
    for r in records:
        store.save(r)
    return str(path)


def _rows(store, *args) -> list[dict]:
    res = CliRunner().invoke(main, ["report", "--store", store, "--csv", *args])
    assert res.exit_code == 0, res.output
    return list(csv.DictReader(io.StringIO(res.stdout)))


def _bf16_sgd() -> list[RunRecord]:
    """SGD seeds 0-2 once more in bf16: as many seeds as the fp32 runs; its label sorts first."""
    out = []
    for seed in SEEDS:
        acc = matrix("sgd", seed) * 0.5  # far from fp32's, so the test sees which one was taken
        out.append(
            RunRecord(
                f"sgd-bf16-{seed}",
                "sgd",
                SCENARIO,
                seed,
                {},
                dict(BF16),
                dict(OPTIONS),
                "finished",
                acc,
                tags=["bf16"],
                data=DATA,
            )
        )
    return out


def test_fp32_defaults_win_a_seed_tie_with_opt_in_bf16(tmp_path):
    store = _save(tmp_path / "s.db", synthetic_records() + _bf16_sgd())
    sgd_variants = {v for v in variants(Store(store).query()).values() if v.strategy == "sgd"}
    labels = {v.main: v.label for v in sgd_variants}
    assert labels[True] == "sgd (precision=fp32)"
    assert labels[False] == "sgd (precision=bf16)"  # sorts first: the old rule took it
    (sgd,) = [r for r in _rows(store) if r["strategy"] == "sgd"]
    assert float(sgd["A<=T"]) == pytest.approx(sum(hand_acc_upto("sgd", s)[-1] for s in SEEDS) / 3, abs=1e-12)
    assert sgd["configuration"] == "default hyperparameters, fp32"
    md = CliRunner().invoke(main, ["report", "--store", store]).stdout
    assert "sgd: 1 other configuration(s) hidden" in md


def test_where_shows_the_bf16_runs_with_rho_na_against_fp32_references(tmp_path):
    store = _save(tmp_path / "s.db", synthetic_records() + _bf16_sgd())
    rows = _rows(store, "--where", "precision=bf16")
    assert [r["strategy"] for r in rows] == ["sgd"]  # HAT has no bf16 run
    (sgd,) = rows
    assert sgd["configuration"] == "default hyperparameters, precision=bf16 (opt-in)"
    assert (int(sgd["seeds"]), int(sgd["rho seeds"])) == (3, 0)
    assert "another protocol: precision=fp32 (this run: bf16)" in sgd["rho n/a"]
    assert "--set precision=bf16" in sgd["launch"]


def _hat(seed: int, c: float, tags=()) -> RunRecord:
    hp = {**dataclasses.asdict(get_strategy("hat").Hparams()), "c": c}
    return RunRecord(
        f"hat-{seed}-c{c}",
        "hat",
        SCENARIO,
        seed,
        hp,
        dict(PROTOCOL),
        dict(OPTIONS),
        "finished",
        matrix("hat", seed, 400.0, c),
        tags=list(tags),
        data=DATA,
    )


def test_the_setting_a_sweep_tagged_as_selected_makes_the_row(tmp_path):
    recs = [r for r in synthetic_records() if r.strategy != "hat"]
    recs += [_hat(s, 0.75) for s in SEEDS]  # the defaults, 3 seeds
    recs += [
        _hat(0, 0.1, ["sweep:grid"]),
        _hat(1, 0.1, ["sweep:grid", "selected:grid"]),
        _hat(2, 0.1, ["sweep:grid", "selected:grid"]),
    ]  # seed 0 is the search run: not tagged
    store = _save(tmp_path / "s.db", recs)
    (hat,) = [r for r in _rows(store) if r["strategy"] == "hat"]
    assert hat["configuration"] == "the setting sweep grid selected on validation (c=0.1), fp32"
    assert hat["seed list"] == "0,1,2" and hat["variant"] == "hat (c=0.1)"


def test_a_strategy_without_a_run_at_its_defaults_has_no_row_and_the_footer_says_so(tmp_path):
    recs = [r for r in synthetic_records() if r.strategy != "hat"] + [_hat(s, 0.1) for s in SEEDS]
    store = _save(tmp_path / "s.db", recs)
    assert [r["strategy"] for r in _rows(store)] == ["sgd"]
    md = CliRunner().invoke(main, ["report", "--store", store]).stdout
    assert "hat: no run at its default configuration; 1 other configuration(s) hidden" in md
    assert [r["configuration"] for r in _rows(store, "--where", "c=0.1")] == [
        "hyperparameters c=0.1 (default 0.75), fp32"
    ]


def test_runs_made_before_a_hyperparameter_existed_are_their_versions_defaults():
    recs = synthetic_records()
    old = dataclasses.replace(
        next(
            r
            for r in recs
            if r.strategy == "hat" and r.seed == 0 and r.hparams["c"] == 0.75 and r.hparams["s_max"] == 400.0
        )
    )
    old.hparams = {k: v for k, v in old.hparams.items() if k != "annealing"}  # as if made before it existed
    (sec,) = analyse([old] + [r for r in recs if r.strategy in ("joint", "random")])
    v = sec.variants[old.run_id]
    assert v.main and v.why == "default hyperparameters of its version (made before annealing existed), fp32"


# ---- a sweep file's selection, recomputed from the store for runs made before the tag ----------------
@register_scenario("toy_report", "3 synthetic tasks (report tests only)")
def _toy(seed=0, data_root_path=None, download=False, max_train_per_task: int | None = None):
    raise NotImplementedError("the report tests never build it")


SWEEP = """
    name: grid
    scenario: {name: toy_report, max_train_per_task: 50}
    strategies: {hat: {c: [0.1, 0.75]}}
    protocol: {epochs: 2}
    select: {seed: 0, then_seeds: [0, 1, 2]}
    references: true
"""


def _record(item, tagged: bool) -> RunRecord:
    c = item.config
    hp = dataclasses.asdict(get_strategy(c.strategy).parse_hparams(c.hparams))
    acc = matrix("hat", c.seed, 400.0, hp["c"]) if c.strategy == "hat" else matrix(c.strategy, c.seed)
    valid = {0.1: 0.9, 0.75: 0.8}.get(hp.get("c"), 0.5)  # c = 0.1 is best on validation
    history = [{"task": t, "epoch": 1, "valid_loss": 0.5, "valid_acc": valid} for t in range(3)]
    valid_matrix = np.where(np.tri(3, dtype=bool), valid, np.nan)  # the default selection metric reads it
    return RunRecord(
        item.run_id,
        c.strategy,
        c.scenario,
        c.seed,
        hp,
        dataclasses.asdict(c.protocol),
        dict(c.scenario_options),
        "finished",
        acc,
        tags=list(c.tags) if tagged else ["old"],
        data=DATA,
        history=history,
        monitoring={"validation": validation_monitoring(valid_matrix)},
    )


@pytest.mark.parametrize("tagged", [False, True])
def test_a_sweep_files_selection_reaches_table1(tmp_path, tagged):
    file = tmp_path / "grid.yaml"
    file.write_text(textwrap.dedent(SWEEP))
    store = Store(tmp_path / "s.db")
    sweep = load_sweep(file)
    for item in sweep.plan(store).items:  # the search and the references
        store.save(_record(item, tagged))
    selected = [i for i in sweep.plan(store).items if i.phase == "selected"]
    assert {(i.config.hparams["c"], i.config.seed) for i in selected} == {(0.1, 1), (0.1, 2)}
    assert all(("selected:grid" in i.config.tags) for i in selected)  # plan.py records the choice
    for item in selected:
        store.save(_record(item, tagged))
    assert set(sweep_selections([str(file)], store)) == {
        i.run_id for i in sweep.plan(store).items if i.config.hparams.get("c") == 0.1
    }
    plain = [r for r in _rows(str(tmp_path / "s.db")) if r["strategy"] == "hat"]
    with_file = [r for r in _rows(str(tmp_path / "s.db"), "--sweep", str(file)) if r["strategy"] == "hat"]
    for rows in [with_file] + ([plain] if tagged else []):
        (hat,) = rows
        assert hat["configuration"] == "the setting sweep grid selected on validation (c=0.1), fp32"
        assert hat["seed list"] == "0,1,2"
    if not tagged:  # without the tag or the file, nothing says a selection happened: the defaults
        (hat,) = plain
        assert hat["configuration"] == "default hyperparameters, fp32" and hat["seed list"] == "0"
