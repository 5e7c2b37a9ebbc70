"""Sweeps: grid expansion and hashing, validation-only selection, failures that do not stop a sweep,
and a sweep killed with SIGKILL that a second invocation completes exactly."""

import dataclasses
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import make_scenario, requires_mnist

from cl_bench.cli.sweep import status_command
from cl_bench.registry import get_strategy, register_scenario
from cl_bench.runner import RunConfig
from cl_bench.store import RunRecord, Store
from cl_bench.store.records import validation_monitoring
from cl_bench.sweep import SweepError, load_sweep, parse_sweep, run_sweep, status_rows, validation_score
from cl_bench.trainer import PRESETS, Protocol

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is in tests/sweep/)
CL_BENCH = Path(sys.executable).with_name("cl-bench")


@register_scenario("tiny_sweep", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False, n_tasks: int = 2):
    return make_scenario(n_tasks=n_tasks, seed=seed)


def sweep_of(text: str, **kw):
    return parse_sweep(yaml.safe_load(textwrap.dedent(text)), **kw)


# ---- expansion and hashing ---------------------------------------------------------------------------
def test_grid_is_the_product_of_axes_times_seeds(tmp_path):
    sweep = sweep_of(
        """
        scenario: {name: tiny_sweep, max_train_per_task: 50}
        strategies:
          ewc: {lamb: [100, 5000], fisher_batch: 10}
          sgd:
        seeds: [0, 1, 2]
        protocol: {preset: quick, lr: [0.05, 0.1]}
        tags: [t1]
    """,
        default_name="demo",
    )
    plan = sweep.plan(Store(tmp_path / "s.db"))
    configs = [i.config for i in plan.items]
    assert len(configs) == (2 * 2 + 2) * 3  # ewc: lamb x lr; sgd: lr; times seeds
    assert len({c.run_id() for c in configs}) == len(configs)
    ewc = {(c.hparams["lamb"], c.protocol.lr, c.seed) for c in configs if c.strategy == "ewc"}
    assert ewc == {(l, lr, s) for l in (100.0, 5000.0) for lr in (0.05, 0.1) for s in (0, 1, 2)}
    assert all(c.hparams["fisher_batch"] == 10 for c in configs if c.strategy == "ewc")
    assert all(c.protocol.epochs == PRESETS["quick"].epochs for c in configs)
    assert all(c.scenario_options == {"max_train_per_task": 50} for c in configs)
    assert all(c.tags == ["t1", "sweep:demo"] for c in configs)
    assert all(i.status is None for i in plan.items)
    assert all(i.run_id == i.config.run_id() for i in plan.items)  # the plan's shortcut hashes the same


def test_run_id_depends_on_what_determines_the_result_only():
    base = RunConfig("ewc", "tiny_sweep", 0, {"lamb": 100.0}, Protocol(), {"max_train_per_task": 50})
    same = dataclasses.replace(base, hparams={"lamb": 100}, tags=["other", "tags"])  # int 100 == 100.0
    assert same.run_id() == base.run_id()
    default = get_strategy("ewc").Hparams().lamb
    assert (
        dataclasses.replace(base, hparams={}).run_id() == dataclasses.replace(base, hparams={"lamb": default}).run_id()
    )  # explicit default
    for changed in (
        dataclasses.replace(base, hparams={"lamb": 101.0}),
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, protocol=Protocol(lr=0.1)),
        dataclasses.replace(base, scenario_options={"max_train_per_task": 51}),
    ):
        assert changed.run_id() != base.run_id()


def test_paper_grid_expands_the_declared_grid(tmp_path):
    declared = next(f for f in dataclasses.fields(get_strategy("ewc").Hparams) if f.name == "lamb").metadata["grid"]
    sweep = sweep_of("{scenario: tiny_sweep, strategies: {ewc: {lamb: paper}}}")
    assert [p.hparams["lamb"] for p in sweep.cells[0].points] == [float(v) for v in declared]
    assert len(sweep_of("{scenario: tiny_sweep, strategies: {ewc: paper}}").cells[0].points) == len(declared)


def test_references_add_joint_and_random_per_scenario_and_final_seed(tmp_path):
    sweep = sweep_of("""
        scenarios: [tiny_sweep, {name: tiny_sweep, n_tasks: 3}]
        strategies: {ewc: {lamb: [1, 2]}}
        protocol: {lr: [0.05, 0.1]}
        select: {seed: 5, then_seeds: [0, 1]}
        references: true
    """)
    refs = [i.config for i in sweep.plan(Store(tmp_path / "s.db")).items if i.phase == "reference"]
    joint = {(str(c.scenario_options), c.seed, c.protocol.lr) for c in refs if c.strategy == "joint"}
    random = {(str(c.scenario_options), c.seed) for c in refs if c.strategy == "random"}
    assert joint == {(o, s, lr) for o in ("{}", "{'n_tasks': 3}") for s in (0, 1) for lr in (0.05, 0.1)}
    assert random == {(o, s) for o in ("{}", "{'n_tasks': 3}") for s in (0, 1)}
    assert len(refs) == len(joint) + len(random)


def test_order_seeds_hands_out_every_cells_first_seed_before_any_second_seed(tmp_path):
    text = "{scenario: tiny_sweep, strategies: {sgd: , ewc: {lamb: [1, 2]}}, seeds: [3, 0], references: true"
    by_cells = [(i.config.strategy, i.config.seed) for i in sweep_of(text + "}").plan(Store(tmp_path / "a.db")).items]
    by_seeds = [
        (i.config.strategy, i.config.seed)
        for i in sweep_of(text + ", order: seeds}").plan(Store(tmp_path / "b.db")).items
    ]
    assert sorted(by_cells) == sorted(by_seeds)  # the same runs
    assert by_cells[:2] == [("sgd", 3), ("sgd", 0)]
    assert by_seeds == [
        (s, seed) for seed in (3, 0) for s in ("sgd", "ewc", "ewc", "joint", "random")
    ]  # the seed file order, the cells in file order within each seed


@pytest.mark.parametrize(
    "text,message",
    [
        ("{scenario: tiny_sweep, strategies: {ewc: {lamda: [1]}}}", "no hyperparameter lamda; it accepts: lamb"),
        ("{scenario: tiny_sweep, strategies: {ewc: {lamb: [1, abc]}}}", "'lamb' of 'ewc' must be float"),
        ("{scenario: tiny_sweep, strategies: {sgd: {lr: 0.1}}}", "it accepts: none"),
        ("{scenario: tiny_sweep, strategies: {sgd: paper}}", "no hyperparameter declares one"),
        ("{scenario: tiny_sweep, strategies: {nope: }}", "unknown strategy 'nope'"),
        ("{scenario: {name: tiny_sweep, colour: 1}, strategies: {sgd: }}", "no option colour; it accepts: n_tasks"),
        ("{scenario: {name: tiny_sweep, n_tasks: two}, strategies: {sgd: }}", "'n_tasks' must be int"),
        ("{scenario: nowhere, strategies: {sgd: }}", "unknown scenario 'nowhere'"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, protocol: {lrr: 1}}", "unknown protocol setting(s) lrr"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, protocol: {epochs: 1.5}}", "'epochs' must be int"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, protocol: {preset: fast}}", "unknown protocol preset"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, seed: [0]}", "unknown key(s) seed"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, seeds: [0], select: {}}", "select.then_seeds"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, select: {metric: test_acc}}", "never selects"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, references: [sgd]}", "references must be"),
        ("{scenario: tiny_sweep, strategies: {sgd: }, order: seed}", "order must be one of cells, seeds"),
    ],
)
def test_bad_sweep_files_fail_before_running_with_a_clear_message(text, message):
    with pytest.raises(SweepError, match=None) as err:
        sweep_of(text)
    assert message in str(err.value)


@pytest.mark.parametrize("file", sorted((ROOT / "examples" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_example_sweeps_expand(file, tmp_path):
    plan = load_sweep(file).plan(Store(tmp_path / "s.db"))
    assert plan.items and len({i.run_id for i in plan.items}) == len(plan.items)


# ---- selection -----------------------------------------------------------------------------------------
def _log(task, epoch, valid_loss, valid_acc):
    return {"task": task, "epoch": epoch, "valid_loss": valid_loss, "valid_acc": valid_acc}


def test_validation_score_uses_each_tasks_kept_epoch():
    history = [
        _log(0, 1, 0.9, 0.50),
        _log(0, 2, 0.4, 0.70),
        _log(0, 3, 0.6, 0.90),  # kept: epoch 2
        _log(1, 1, 0.3, 0.80),
        _log(1, 2, 0.3, 0.99),
    ]  # tie: the first minimum is kept
    record = _record("r", 1.0, history=history, final_valid=[0.5, 0.6])
    assert validation_score(record, "valid_acc") == pytest.approx((0.70 + 0.80) / 2)
    assert validation_score(record, "valid_loss") == pytest.approx((0.4 + 0.3) / 2)
    # the default: the final model on every task's validation split (the last row), mean over tasks
    assert validation_score(record) == pytest.approx((0.5 + 0.6) / 2)
    assert math.isnan(validation_score(_record("r", 1.0, history=history)))  # stored before it was recorded


def _record(run_id, lamb, history=(), final_valid=None, test=0.5):
    """A finished ewc run of tiny_sweep (2 tasks) with a validation matrix whose last row is ``final_valid``."""
    monitoring = {}
    if final_valid is not None:
        valid = np.array([[0.9, np.nan], final_valid])
        monitoring = {"validation": validation_monitoring(valid)}
    return RunRecord(
        run_id,
        "ewc",
        "tiny_sweep",
        7,
        {"lamb": lamb},
        {},
        {},
        "finished",
        accuracy=np.array([[test, np.nan], [test, test]]),
        history=list(history),
        monitoring=monitoring,
    )


def test_selection_waits_for_the_whole_search_then_picks_by_validation(tmp_path):
    sweep = sweep_of("""
        scenario: tiny_sweep
        strategies: {ewc: {lamb: [1, 2, 3]}, sgd: }
        select: {seed: 7, then_seeds: [0, 7]}
    """)
    store = Store(tmp_path / "s.db")
    plan = sweep.plan(store)
    ewc = [i for i in plan.items if i.config.strategy == "ewc"]
    assert [i.phase for i in ewc] == ["search"] * 3 and [i.config.seed for i in ewc] == [7] * 3
    assert [c.strategy for c, _ in plan.waiting] == ["ewc"]
    sgd = sorted((i.phase, i.config.seed) for i in plan.items if i.config.strategy == "sgd")
    assert sgd == [("search", 7), ("selected", 0)]  # one point: no need to wait; seed 7 run once

    # lamb=1 learns each task best (valid_acc) but forgets (its final row is low): the default metric,
    # final_valid_acc, must choose lamb=2, and test accuracy (best for lamb 1 and 3) must play no part
    just_learned = {1.0: 0.95, 2.0: 0.7, 3.0: 0.8}
    final = {1.0: [0.3, 0.9], 2.0: [0.9, 0.9], 3.0: [0.8, 0.8]}
    tests = {1.0: 0.99, 2.0: 0.10, 3.0: 0.99}
    for item in ewc[:2]:
        lamb = item.config.hparams["lamb"]
        history = [_log(0, 1, 0.5, just_learned[lamb]), _log(1, 1, 0.5, just_learned[lamb])]
        store.save(_record(item.run_id, lamb, history, final[lamb], tests[lamb]))
    assert [c.strategy for c, _ in sweep.plan(store).waiting] == ["ewc"]  # lamb=3 still missing
    item = ewc[2]
    history = [_log(0, 1, 0.5, just_learned[3.0]), _log(1, 1, 0.5, just_learned[3.0])]
    store.save(_record(item.run_id, 3.0, history, final[3.0], tests[3.0]))
    plan = sweep.plan(store)
    assert not plan.waiting
    selected = [i for i in plan.items if i.config.strategy == "ewc" and i.phase == "selected"]
    assert [(i.config.hparams["lamb"], i.config.seed) for i in selected] == [(2.0, 0)]  # seed 7 is done
    assert {i.config.seed for i in plan.items if i.config.hparams.get("lamb") == 2.0} == {0, 7}
    # the same runs chosen by valid_acc (each task right after learning it): lamb=1
    by_learning = dataclasses.replace(sweep, select=dataclasses.replace(sweep.select, metric="valid_acc"))
    chosen = [i for i in by_learning.plan(store).items if i.phase == "selected" and i.config.strategy == "ewc"]
    assert [i.config.hparams["lamb"] for i in chosen] == [1.0]
    # `cl-bench status` shows each search point's score and the chosen one
    rows = {r["point"]: r for r in status_rows(sweep, store) if r["phase"] == "search" and "lamb" in r["point"]}
    assert {p: (r["score"], r["chosen"]) for p, r in rows.items()} == {
        "lamb=1": (pytest.approx((0.3 + 0.9) / 2), False),
        "lamb=2": (pytest.approx(0.9), True),
        "lamb=3": (pytest.approx(0.8), False),
    }


def test_final_validation_selection_waits_with_a_reason_for_runs_without_it(tmp_path):
    sweep = sweep_of("""
        scenario: tiny_sweep
        strategies: {ewc: {lamb: [1, 2]}}
        select: {seed: 7, then_seeds: [0]}
    """)
    store = Store(tmp_path / "s.db")
    first, second = sweep.plan(store).items
    store.save(_record(first.run_id, 1.0, [_log(0, 1, 0.5, 0.9)]))  # an old run: no validation matrix
    store.save(_record(second.run_id, 2.0, [_log(0, 1, 0.5, 0.9)], final_valid=[0.5, 0.5]))
    plan = sweep.plan(store)  # never chosen from part of the grid (lamb=2 alone)
    [(cell, why)] = plan.waiting
    assert why.startswith("1 of 2 search runs have no validation accuracy after the last task") and "valid_acc" in why
    assert not plan.unselectable and not plan.chosen


def test_the_chosen_run_on_the_selection_seed_is_tagged_selected(tmp_path):
    """then_seeds holding select.seed: the chosen point's search run is its selected run too; once the
    selection is decided the sweep tags it (the report shows the tagged setting by default)."""
    sweep = sweep_of("""
        name: pick
        scenario: tiny_sweep
        strategies: {ewc: {lamb: [1, 1000000]}}
        protocol: {preset: quick, epochs: 1}
        select: {seed: 0, then_seeds: [0]}
    """)
    run_sweep(sweep, tmp_path / "runs.db", workers=0, threads=1, progress=False)
    store = Store(tmp_path / "runs.db")
    plan = sweep.plan(store)
    [chosen] = plan.chosen.values()
    tagged = [r.hparams["lamb"] for r in store.query() if "selected:pick" in r.tags]
    assert tagged == [chosen.hparams["lamb"]] and len(store.query()) == 2


# ---- running -------------------------------------------------------------------------------------------
def test_sweep_runs_everything_skips_what_is_stored_and_survives_failing_runs(tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(
        textwrap.dedent("""
        name: demo
        scenarios: [tiny_sweep, {name: tiny_sweep, tasks: [0, 5]}]   # the second cannot be built
        strategies: {sgd: }
        protocol: {preset: quick, epochs: 1, lr: [0.05, 1.0e+30]}    # lr 1e30 diverges
        select: {seed: 0, then_seeds: [0, 1]}
    """)
    )
    store_path = tmp_path / "runs.db"
    outcomes = run_sweep(load_sweep(file), store_path, workers=0, threads=1, progress=False)
    assert sorted(o.status for o in outcomes) == ["error", "error", "failed", "finished", "finished"]
    assert all("task positions [5] out of range" in o.message for o in outcomes if o.status == "error")
    store = Store(store_path)
    [diverged] = store.query("status = 'failed'")
    assert diverged.protocol["lr"] == 1e30 and diverged.error.startswith("diverged: loss is not finite")
    # the diverged point cannot be selected; the other one then runs on seed 1
    assert [(r.seed, r.protocol["lr"]) for r in store.query("status = 'finished'")] == [(0, 0.05), (1, 0.05)]

    again = run_sweep(load_sweep(file), store_path, workers=0, threads=1, progress=False)
    assert sorted(o.status for o in again) == ["error", "error"]  # only the unstored runs are retried
    retried = run_sweep(load_sweep(file), store_path, workers=0, threads=1, progress=False, retry_failed=True)
    assert sorted(o.status for o in retried) == ["error", "error", "failed"]

    result = CliRunner().invoke(status_command, [str(file), "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    assert "total: 2 finished, 1 failed, 4 pending" in result.output  # 2 search + 2 selected of the bad one


# ---- killed with SIGKILL, then completed ------------------------------------------------------------------
KILL_SWEEP = """
name: kill-test
scenario: {name: split_mnist, max_train_per_task: 100}
strategies: {sgd: , joint: }
seeds: [0, 1]
protocol: {preset: quick, epochs: 1}
"""


def _finished(store_path):
    if not Path(store_path).exists():
        return {}
    return {r.run_id: r for r in Store(store_path).query("status = 'finished'")}


def _sweep_cli(file, store, **kw):
    env = {**os.environ, "CL_BENCH_DATA": os.environ["CL_BENCH_DATA"]}
    return subprocess.Popen(
        [str(CL_BENCH), "sweep", str(file), "--store", str(store), "--workers", "1", "--threads", "1", "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


@requires_mnist
@pytest.mark.slow
def test_sigkilled_sweep_is_completed_exactly_by_a_second_invocation(tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(KILL_SWEEP)
    store = tmp_path / "runs.db"
    driver = _sweep_cli(file, store, start_new_session=True)
    deadline = time.time() + 120
    while not _finished(store) and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: its worker must notice and exit
    driver.wait()
    for _ in range(100):  # the orphaned worker's watchdog ends it within a second or so
        try:
            os.killpg(driver.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(driver.pid, signal.SIGKILL)
        pytest.fail("a worker outlived the killed driver")
    first = _finished(store)
    assert 1 <= len(first) < 4, "the kill should land mid-sweep"
    started = {k: r.started for k, r in first.items()}

    second = _sweep_cli(file, store)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert f"{4 - len(first)} run(s) finished, 0 failed in this call" in out  # only the missing ones
    final = _finished(store)
    assert {k: final[k].started for k in first} == started  # the first invocation's runs untouched

    reference = tmp_path / "reference.db"  # the same sweep, never interrupted (in this process)
    run_sweep(load_sweep(file), reference, workers=0, threads=1, progress=False)
    uninterrupted = _finished(reference)
    assert sorted(final) == sorted(uninterrupted)
    for run_id, rec in final.items():
        np.testing.assert_array_equal(rec.accuracy, uninterrupted[run_id].accuracy)
    assert not Path(str(store) + ".checkpoints").exists() or not os.listdir(str(store) + ".checkpoints")


# ---- a worker killed by the OS -----------------------------------------------------------------------------
KILLERS = '''
import os, signal
from pathlib import Path
from cl_bench.strategy import Strategy


class KilledOnce(Strategy):
    """Its worker is killed (as by the OOM killer) the first time it trains, then it runs normally."""
    name = "killed_once"

    def before_task(self, t):
        marker = Path(__file__).with_suffix(".killed")
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


class AlwaysKilled(Strategy):
    name = "always_killed"

    def before_task(self, t):
        os.kill(os.getpid(), signal.SIGKILL)
'''


@requires_mnist
@pytest.mark.slow
def test_a_killed_worker_is_retried_once_then_its_run_stored_as_failed(tmp_path):
    killers = tmp_path / "killers.py"
    killers.write_text(KILLERS)
    file = tmp_path / "sweep.yaml"
    file.write_text(
        textwrap.dedent(f"""
        scenario: {{name: split_mnist, max_train_per_task: 100, tasks: [0]}}
        strategies: {{"{killers}:KilledOnce": , "{killers}:AlwaysKilled": , sgd: }}
        protocol: {{preset: quick, epochs: 1}}
    """)
    )
    outcomes = run_sweep(load_sweep(file), tmp_path / "runs.db", workers=1, threads=1, progress=False)
    status = {o.label.split()[0].rpartition(":")[2]: o for o in outcomes}
    assert killers.with_suffix(".killed").exists()  # its worker was killed once
    assert status["KilledOnce"].status == "finished"  # retried once, then fine
    assert status["sgd"].status == "finished"
    assert status["AlwaysKilled"].status == "failed" and "died twice" in status["AlwaysKilled"].message
    [failed] = Store(tmp_path / "runs.db").query("status = 'failed'")
    assert failed.strategy.endswith(":AlwaysKilled") and "died twice" in failed.error


def test_bundled_presets_resolve_by_name_and_cover_table_1():
    import click

    from cl_bench.cli.sweep import sweep_file
    from cl_bench.sweep import bundled_sweeps, load_sweep
    from cl_bench.trainer import PRESETS

    assert {"mini", "smoke"} <= set(bundled_sweeps())
    table_1 = {"sgd", "sgd_frozen", "ewc", "imm_mean", "imm_mode", "lwf", "lfl", "pathnet", "pnn", "hat"}
    beyond = {"si": 4, "mas": 4, "er": 1, "agem": 1, "packnet": 2, "wsn": 3, "gpm": 3}  # not in the paper
    mini, smoke = load_sweep(sweep_file("mini")), load_sweep(sweep_file("smoke"))
    assert {c.strategy for c in mini.cells} == table_1 | set(beyond) | {"joint", "random"}
    assert {c.strategy for c in smoke.cells} == table_1 | {"joint", "random"}
    for sweep in (mini, smoke):
        assert {c.scenario for c in sweep.cells} == {"mixture"}
        assert all(c.options["allow_missing"] for c in sweep.cells)
    # mini: the paper's protocol untouched (200 epochs, its early stop), selection on seed 0 by the final
    # validation accuracy, then three seeds; a grid of three around the authors' value for each main knob
    assert all(p.protocol == PRESETS["paper"] for c in mini.cells for p in c.points)
    assert {c.options["max_train_per_task"] for c in mini.cells} == {300}
    assert (mini.select.seed, mini.select.metric, tuple(mini.select.then_seeds)) == (0, "final_valid_acc", (0, 1, 2))
    grids = {c.strategy: len(c.points) for c in mini.cells if c.role != "reference"}
    assert (
        grids
        == {s: 3 for s in ("ewc", "imm_mean", "imm_mode", "lwf", "lfl", "hat")}
        | {s: 1 for s in ("sgd", "sgd_frozen", "pathnet", "pnn")}
        | beyond
    )
    # smoke: the old 15-epoch check
    assert {c.options["max_train_per_task"] for c in smoke.cells} == {1000}
    assert {p.protocol.epochs for c in smoke.cells for p in c.points} == {15}
    with pytest.raises(click.ClickException, match="bundled: .*mini"):
        sweep_file("no-such-preset")
