"""rho only against matching references: each kind of mismatch (scenario options / samples cap, seed,
epoch cap, precision, data files, data task sizes) leaves rho n/a with the reason and the exact command,
never a reference from another experiment; Random does not train, so only its protocol may differ.
And results.load() tells protocols apart."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from click.testing import CliRunner
from test_report import DATA, matrix

from cl_bench.cli import main
from cl_bench.metrics import forgetting_ratio, mean_upto
from cl_bench.results import load, rho_per_run
from cl_bench.store import RunRecord, Store

OPTIONS = {"max_train_per_task": 50}
PROTOCOL = {"epochs": 3, "lr": 0.05}


def run(
    strategy: str, seed: int = 0, run_id: str | None = None, options=None, protocol=None, data=None, scale: float = 1.0
) -> RunRecord:
    return RunRecord(
        run_id or f"{strategy}-{seed}",
        strategy,
        "toy",
        seed,
        {},
        dict(protocol or PROTOCOL),
        dict(options or OPTIONS),
        "finished",
        matrix(strategy, seed) * scale,
        data=copy.deepcopy(DATA if data is None else data),
    )


def only(records, run_id="sgd-0"):
    (m,) = [m for m in rho_per_run(records) if m.record.run_id == run_id]
    return m


def test_matching_references_give_eq6():
    m = only([run("sgd"), run("joint"), run("random")])
    expected = mean_upto(forgetting_ratio(matrix("sgd", 0), matrix("random", 0), matrix("joint", 0)))
    np.testing.assert_allclose(m.rho_upto, expected)
    assert (m.joint, m.random, m.missing) == ("joint-0", "random-0", [])


def _other_data(**task_changes):
    data = copy.deepcopy(DATA)
    for t in data["tasks"]:
        t.update(task_changes)
    return data


def _other_files():
    data = copy.deepcopy(DATA)
    data["datasets"]["TOY"]["files"] = {"/elsewhere/train.gz": "ef" * 32, "/elsewhere/test.gz": "cd" * 32}
    return data


MISMATCHES = {  # kind -> (the Joint that must not serve, the reason's words)
    "samples cap": (run("joint", options={"max_train_per_task": 500}), "no Joint run of scenario options"),
    "seed": (run("joint", seed=1), "no Joint run of this seed (these scenario options have seeds 1)"),
    "epoch cap": (
        run("joint", protocol={"epochs": 1, "lr": 0.05}),
        "trained under another protocol: epochs=1 (this run: 3)",
    ),
    "precision": (
        run("joint", protocol=dict(PROTOCOL, precision="bf16")),
        "trained under another protocol: precision=bf16 (this run: fp32)",
    ),
    "data files": (run("joint", data=_other_files()), "used other data"),
    "data task sizes": (run("joint", data=_other_data(train=40)), "used other data"),
}


@pytest.mark.parametrize("kind", sorted(MISMATCHES))
def test_a_mismatched_joint_never_serves(kind):
    joint, reason = MISMATCHES[kind]
    m = only([run("sgd"), joint, run("random")])
    assert m.rho is None and m.joint is None
    assert any(reason in why for why in m.missing), m.missing
    (command,) = m.commands
    assert (
        command == "cl-bench run --strategy joint --scenario toy --seed 0 --max-train-per-task 50 "
        "--set epochs=3 --set lr=0.05"
    )


def test_the_issues_case_joint_of_1_epoch_for_ewc_of_3(tmp_path):
    """A Joint trained 1 epoch served EWC trained 3 (rho = +0.19 in the store that showed it): now n/a,
    with the reason and the command in the table's notes."""
    store = Store(tmp_path / "s.db")
    for r in [run("sgd"), MISMATCHES["epoch cap"][0], run("random")]:
        store.save(r)
    res = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.db")])
    assert res.exit_code == 0, res.output
    assert "| sgd | 1 (rho: 0) | n/a | n/a |" in res.stdout
    assert (
        "sgd: rho n/a for 1 of 1 seed(s): seed 0: the Joint run(s) of this seed were trained under another "
        "protocol: epochs=1 (this run: 3)." in res.stdout
    )
    assert (
        "Launch: `cl-bench run --strategy joint --scenario toy --seed 0 --max-train-per-task 50 --set epochs=3 "
        f"--set lr=0.05 --store {tmp_path / 's.db'}`" in res.stdout
    )
    assert (
        "cl-bench run --strategy joint --scenario toy --seed 0 --max-train-per-task 50 --set epochs=3 "
        f"--set lr=0.05 --store {tmp_path / 's.db'}" in res.stderr
    )


@pytest.mark.parametrize("kind", ["samples cap", "seed", "data files"])
def test_a_mismatched_random_never_serves(kind):
    joint, _ = MISMATCHES[kind]
    random = copy.deepcopy(joint)
    random.strategy, random.run_id, random.accuracy = "random", "random-x", matrix("random", joint.seed)
    m = only([run("sgd"), run("joint"), random])
    assert m.rho is None and m.random is None
    assert m.commands == ["cl-bench run --strategy random --scenario toy --seed 0 --max-train-per-task 50"]


def test_random_does_not_train_so_its_protocol_may_differ_but_the_same_one_is_preferred():
    other = run("random", run_id="random-a", protocol={"epochs": 1, "lr": 0.05}, scale=0.9)
    m = only([run("sgd"), run("joint"), other])
    assert m.random == "random-a" and m.rho is not None  # another protocol: still the same chance level
    same = run("random", run_id="random-z")
    m = only([run("sgd"), run("joint"), other, same])
    assert m.random == "random-z"  # not "the first one found": the one of the same protocol
    expected = mean_upto(forgetting_ratio(matrix("sgd", 0), matrix("random", 0), matrix("joint", 0)))
    np.testing.assert_allclose(m.rho_upto, expected)


def test_old_runs_without_the_later_protocol_settings_match_fp32_references():
    """A run stored before `precision` existed was fp32: it matches a Joint that says fp32 explicitly."""
    joint = run("joint", protocol=dict(PROTOCOL, precision="fp32", channels_last=False))
    assert only([run("sgd"), joint, run("random")]).joint == "joint-0"


def test_evaluation_only_settings_do_not_make_a_mismatch():
    joint = run("joint", protocol=dict(PROTOCOL, eval_batch_size=64))
    assert only([run("sgd"), joint, run("random")]).joint == "joint-0"


def test_load_has_the_protocol_columns(tmp_path):
    store = Store(tmp_path / "s.db")
    store.save(run("sgd"))
    store.save(run("sgd", run_id="sgd-bf16", protocol=dict(PROTOCOL, epochs=20, precision="bf16")))
    runs, _ = load(tmp_path / "s.db")
    by_id = runs.set_index("run_id")
    assert by_id.loc["sgd-0", "precision"] == "fp32" and by_id.loc["sgd-bf16", "precision"] == "bf16"
    assert by_id.loc["sgd-0", "epochs"] == 3 and by_id.loc["sgd-bf16", "epochs"] == 20
    assert by_id.loc["sgd-0", "max_train_per_task"] == 50
    assert not by_id.loc["sgd-0", "channels_last"]
    assert '"precision": "fp32"' in by_id.loc["sgd-0", "protocol"]
