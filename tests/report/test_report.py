"""Table 1 from the store: every number against an independent computation from the stored matrices.

The synthetic store (``synthetic_store``, also used by test_plots.py and test_html_report.py): a 3-task
scenario, seeds 0-2 of sgd, hat, joint and random with hand-made accuracy matrices, a HAT sweep on seed 0
(s_max x c = {25, 400} x {0.1, 0.75}), HAT monitoring on seed 0 and an SGD epoch history on seed 0.
rho is computed here with explicit loops from Eq. 6, not with cl_bench.metrics.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.registry import get_strategy
from cl_bench.report import (
    analyse,
    build_figures,
    format_latex,
    format_markdown,
    rho_table,
    variants,
)
from cl_bench.store import RunRecord, Store

T = 3
SEEDS = (0, 1, 2)
SCENARIO, OPTIONS = "toy", {"max_train_per_task": 50, "tasks": None}
PROTOCOL = {"epochs": 2, "lr": 0.05}
HAT_DEFAULT = {"s_max": 400.0, "c": 0.75}
SWEEP = [(25.0, 0.1), (25.0, 0.75), (400.0, 0.1)]  # + the default (400, 0.75), which has 3 seeds
# Student-t 0.975 quantile with 2 degrees of freedom (3 seeds), closed form (2p-1)/sqrt(2p(1-p)) = 4.3027
T_975_DF2 = (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)
TASK_NAMES = ["alpha", "beta", "gamma"]
DATA = {
    "datasets": {"TOY": {"files": {"/data/toy/train.gz": "ab" * 32, "/data/toy/test.gz": "cd" * 32}, "complete": True}},
    "tasks": [{"name": n, "classes": 2, "train": 50, "valid": 50, "test": 20} for n in TASK_NAMES],
}


def lower(values) -> np.ndarray:
    """A T x T matrix from its lower-triangle rows; NaN above the diagonal."""
    acc = np.full((T, T), np.nan)
    for t, row in enumerate(values):
        acc[t, : t + 1] = row
    return acc


def matrix(strategy: str, seed: int, s_max: float = 400.0, c: float = 0.75) -> np.ndarray:
    """Hand-made accuracies: Random near chance, Joint high, SGD forgets, HAT barely; seed-dependent."""
    e = 0.01 * seed
    if strategy == "random":
        return lower([[0.50 + e], [0.49, 0.52 - e], [0.51, 0.50, 0.48 + e]])
    if strategy == "joint":
        return lower([[0.95 - e], [0.94, 0.93 + e], [0.94 - e, 0.92, 0.91 + e]])
    if strategy == "sgd":
        return lower([[0.94 - e], [0.70 + 2 * e, 0.92], [0.62, 0.75 - 3 * e, 0.90 + e]])
    if strategy == "hat":  # sweep settings move it a bit
        d = 0.0002 * (400 - s_max) + 0.05 * (0.75 - c)
        return lower([[0.94 - e], [0.93 - d, 0.91 + e], [0.92 - d, 0.90 - e - d, 0.89 - d]])
    raise ValueError(strategy)


def monitoring() -> dict:
    steps = list(range(0, 30, 3))
    return {
        "hat": {
            "threshold": 0.5,
            "layers": ["fc1", "fc2"],
            "units": [8, 8],
            "mask_sizes": [[5, 4], [3, 3], [2, 2]],
            "capacity": [{"step": s, "task": s // 10, "usage": 0.1 + 0.02 * s} for s in steps],
            "reuse": [[None, 0.6, 0.5], [None, None, 0.7], [None, None, None]],
            "compression": [
                {
                    "task": t,
                    "epoch": ep,
                    "valid_acc": 0.6 + 0.1 * ep + 0.01 * t,
                    "compression": 0.5 / (ep + 1) + 0.01 * t,
                }
                for t in range(T)
                for ep in range(3)
            ],
            "parameters": {"total": 1000, "embeddings": 16},
        }
    }


def sgd_history() -> list[dict]:
    """Task 0's best validation loss is at epoch 1 (acc 0.81), task 1's at epoch 0 (acc 0.77)."""
    rows = [
        (0, 0, 0.9, 0.70),
        (0, 1, 0.5, 0.81),
        (0, 2, 0.6, 0.83),
        (1, 0, 0.4, 0.77),
        (1, 1, 0.7, 0.79),
        (2, 0, 0.3, 0.88),
    ]
    return [
        {"task": t, "epoch": ep, "lr": 0.05, "train_loss": 1.0, "valid_loss": vl, "valid_acc": va, "seconds": 0.1}
        for t, ep, vl, va in rows
    ]


def record(strategy: str, seed: int, hp: dict | None = None, **kw) -> RunRecord:
    hp = dict(hp or {})
    acc = (
        matrix(strategy, seed, hp.get("s_max", 400.0), hp.get("c", 0.75))
        if strategy == "hat"
        else matrix(strategy, seed)
    )
    run_id = f"{strategy}-{seed}-" + "-".join(f"{v:g}" if isinstance(v, float) else str(v) for v in hp.values())
    if strategy == "hat":  # stored runs keep every hyperparameter, defaults filled in
        hp = {**dataclasses.asdict(get_strategy("hat").Hparams()), **hp}
    return RunRecord(
        run_id,
        strategy,
        SCENARIO,
        seed,
        hp,
        dict(PROTOCOL),
        dict(OPTIONS),
        "finished",
        acc,
        tags=["r1"],
        code_version="0.1.0+gtest",
        data=DATA,
        wall_s=12.0,
        **kw,
    )


def synthetic_records(references: bool = True) -> list[RunRecord]:
    recs = []
    for seed in SEEDS:
        recs.append(record("sgd", seed, history=sgd_history() if seed == 0 else []))
        recs.append(record("hat", seed, HAT_DEFAULT, monitoring=monitoring() if seed == 0 else {}))
        if references:
            recs += [record("joint", seed), record("random", seed)]
    recs += [record("hat", 0, {"s_max": s, "c": c}) for s, c in SWEEP]
    recs.append(
        RunRecord(
            "sgd-failed",
            "sgd",
            SCENARIO,
            5,
            {},
            dict(PROTOCOL),
            dict(OPTIONS),
            "failed",
            None,
            error="diverged: loss is NaN",
        )
    )
    return recs


def synthetic_store(path, references: bool = True) -> Store:
    store = Store(path)
    for r in synthetic_records(references):
        store.save(r)
    return store


# ---- the independent computation -------------------------------------------------------------------


def hand_rho_upto(strategy: str, seed: int, **hp) -> list[float]:
    """rho^{<=t} for t = 1..T by explicit loops over Eq. 6 (as the authors' plot script)."""
    a, r, j = matrix(strategy, seed, **hp), matrix("random", seed), matrix("joint", seed)
    out = []
    for t in range(T):
        total = 0.0
        for tau in range(t + 1):
            total += (a[t][tau] - r[tau][tau]) / (j[t][tau] - r[tau][tau]) - 1.0
        out.append(total / (t + 1))
    return out


def hand_acc_upto(strategy: str, seed: int) -> list[float]:
    a = matrix(strategy, seed)
    return [sum(a[t][tau] for tau in range(t + 1)) / (t + 1) for t in range(T)]


def mean_std_ci(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)  # ddof 0, as the reference
    return mean, std, T_975_DF2 * std / math.sqrt(n) if n == 3 else float("nan")


@pytest.fixture
def store_path(tmp_path):
    synthetic_store(tmp_path / "x.db")
    return tmp_path / "x.db"


def _csv(store_path, *args) -> tuple[list[dict], str]:
    res = CliRunner().invoke(main, ["report", "--store", str(store_path), "--csv", *args])
    assert res.exit_code == 0, res.output
    return list(csv.DictReader(io.StringIO(res.stdout))), res.stderr


def test_csv_table_equals_hand_computed_rho_and_accuracy(store_path):
    rows, _ = _csv(store_path)
    assert [r["strategy"] for r in rows] == ["sgd", "hat"]  # sorted by rho<=T, best last (Table 1)
    for row in rows:
        s = row["strategy"]
        rho = [hand_rho_upto(s, seed) for seed in SEEDS]
        acc = [hand_acc_upto(s, seed) for seed in SEEDS]
        for col, values in [
            ("rho<=2", [x[1] for x in rho]),
            ("rho<=T", [x[T - 1] for x in rho]),
            ("A<=T", [x[T - 1] for x in acc]),
        ]:
            mean, std, ci = mean_std_ci(values)
            assert float(row[col]) == pytest.approx(mean, abs=1e-12), (s, col)
            assert float(row[f"{col} std"]) == pytest.approx(std, abs=1e-12), (s, col)
            assert float(row[f"{col} ci95"]) == pytest.approx(ci, abs=1e-12), (s, col)
        assert int(row["seeds"]) == 3 and int(row["rho seeds"]) == 3 and int(row["T"]) == T


def test_sgd_forgets_more_than_hat_in_the_synthetic_data():
    # guards the fixture itself: the ordering test above would be vacuous if both were equal
    assert hand_rho_upto("sgd", 0)[-1] < hand_rho_upto("hat", 0)[-1] - 0.1


def test_markdown_and_latex_show_the_same_rounded_numbers(store_path):
    metrics = [m for s in analyse(Store(store_path).query()) for m in s.metrics]
    df = rho_table(metrics)
    md, tex = format_markdown(df), format_latex(df)
    for s in ("sgd", "hat"):
        mean, std, ci = mean_std_ci([hand_rho_upto(s, seed)[T - 1] for seed in SEEDS])
        assert f"{mean:.2f} ({std:.2f}) [+-{ci:.2f}]" in md
        assert f"${mean:.2f}$ ({std:.2f}) $\\pm${ci:.2f}" in tex
    assert "\\toprule" in tex and "\\rho^{\\leq 3}" in tex and "toy (max\\_train\\_per\\_task=50)" in tex
    assert tex.index("SGD &") < tex.index("HAT &")  # best last


def test_sweep_variants_are_hidden_from_table1_and_said_so(store_path):
    rows, _ = _csv(store_path)
    assert sum(r["strategy"] == "hat" for r in rows) == 1
    hat = next(r for r in rows if r["strategy"] == "hat")
    assert hat["configuration"] == "default hyperparameters, fp32" and hat["seed list"] == "0,1,2"
    md = CliRunner().invoke(main, ["report", "--store", str(store_path)]).stdout
    assert "Not shown: hat: 3 other configuration(s) hidden (--all-variants, or --where NAME=VALUE, shows them)." in md
    assert "Rows: sgd, hat: default hyperparameters, fp32, 3 seeds (0, 1, 2)." in md
    rows, _ = _csv(store_path, "--all-variants")
    hat = {r["variant"]: r for r in rows if r["strategy"] == "hat"}
    assert set(hat) == {
        "hat (c=0.1, s_max=25.0)",
        "hat (c=0.75, s_max=25.0)",
        "hat (c=0.1, s_max=400.0)",
        "hat (c=0.75, s_max=400.0)",
    }
    one = hat["hat (c=0.1, s_max=25.0)"]
    assert int(one["seeds"]) == 1
    assert one["configuration"] == "hyperparameters c=0.1 (default 0.75), s_max=25 (default 400), fp32"
    assert float(one["rho<=T"]) == pytest.approx(hand_rho_upto("hat", 0, s_max=25.0, c=0.1)[-1], abs=1e-12)


def test_filters_select_seeds_and_keep_references(store_path):
    rows, _ = _csv(store_path, "--seeds", "0,2", "--strategy", "sgd")
    assert [r["strategy"] for r in rows] == ["sgd"]
    mean, std, _ = mean_std_ci([hand_rho_upto("sgd", s)[T - 1] for s in (0, 2)])
    assert float(rows[0]["rho<=T"]) == pytest.approx(mean, abs=1e-12)
    assert float(rows[0]["rho<=T std"]) == pytest.approx(std, abs=1e-12)
    rows, _ = _csv(store_path, "--tag", "nope")
    assert rows == []


def test_missing_references_name_the_commands_and_keep_accuracy(tmp_path):
    store = synthetic_store(tmp_path / "x.db")
    store.save(RunRecord("sgd-9", "sgd", SCENARIO, 9, {}, dict(PROTOCOL), dict(OPTIONS), "finished", matrix("sgd", 0)))
    rows, err = _csv(tmp_path / "x.db", "--strategy", "sgd")
    assert "cl-bench run --strategy random --scenario toy --seed 9 --max-train-per-task 50" in err
    assert "cl-bench run --strategy joint --scenario toy --seed 9 --max-train-per-task 50" in err
    (row,) = rows
    assert (int(row["seeds"]), int(row["rho seeds"])) == (4, 3)  # rho over seeds 0-2 only, nothing faked
    assert float(row["rho<=T"]) == pytest.approx(
        mean_std_ci([hand_rho_upto("sgd", s)[T - 1] for s in SEEDS])[0], abs=1e-12
    )
    accs = [hand_acc_upto("sgd", s)[T - 1] for s in SEEDS] + [hand_acc_upto("sgd", 0)[T - 1]]
    assert float(row["A<=T"]) == pytest.approx(sum(accs) / 4, abs=1e-12)


def test_without_any_reference_rho_is_na_and_figures_say_what_to_launch(tmp_path):
    synthetic_store(tmp_path / "x.db", references=False)
    res = CliRunner().invoke(
        main, ["report", "--store", str(tmp_path / "x.db"), "--strategy", "sgd", "--figures", str(tmp_path / "figs")]
    )
    assert res.exit_code == 0, res.output
    assert "| sgd | 3 (rho: 0) | n/a | n/a |" in res.stdout
    assert (
        "skipped fig3_rho_toy__max_train_per_task-50__epochs-2: no run has its matching Joint and Random "
        "references (6 launch command(s) above)" in res.stderr
    )
    assert "cl-bench run --strategy joint --scenario toy --seed 0 --max-train-per-task 50" in res.stderr
    assert (tmp_path / "figs" / "fig3_acc_toy__max_train_per_task-50__epochs-2.png").stat().st_size > 0
    assert not (tmp_path / "figs" / "fig3_rho_toy__max_train_per_task-50__epochs-2.png").exists()


def test_figures_command_writes_png_and_pdf_for_every_supported_figure(store_path, tmp_path):
    out = tmp_path / "figs"
    res = CliRunner().invoke(main, ["report", "--store", str(store_path), "--figures", str(out)])
    assert res.exit_code == 0, res.output
    stems = [
        "fig3_rho",
        "fig3_acc",
        "accuracy_matrices",
        "fig4_hat_grid",
        "fig5_capacity",
        "fig6_reuse",
        "fig7_compression",
    ]
    for stem in stems:
        for ext in ("png", "pdf"):
            p = out / f"{stem}_toy__max_train_per_task-50__epochs-2.{ext}"
            assert p.stat().st_size > 1000, p
    assert "skipped" not in res.stderr
    rows = list(csv.DictReader(io.StringIO((out / "table1.csv").read_text())))
    assert [r["strategy"] for r in rows] == ["sgd", "hat"]
    assert "\\toprule" in (out / "table1.tex").read_text() and "| sgd | 3 |" in (out / "table1.md").read_text()
    assert "## SGD on toy (max_train_per_task=50)" in (out / "accuracy_matrices.md").read_text()


def test_figure_notes_when_hat_data_is_absent(store_path):
    recs = [r for r in Store(store_path).query() if r.strategy != "hat"]
    notes = {i.name.split("_toy")[0]: i.note for i in build_figures(analyse(recs)) if i.figure is None}
    assert notes == {
        "fig4_hat_grid": "no HAT sweep (needs finished hat runs at >= 2 (s_max, c) settings)",
        "fig5_capacity": "no HAT run",
        "fig6_reuse": "no HAT run",
        "fig7_compression": "no HAT run",
    }


def test_main_variant_is_the_default_configuration():
    """The row is the registered defaults (HAT's s_max=400, c=0.75), whatever the seed counts of the
    sweep's other points."""
    var = variants(synthetic_records())
    mains = {v.label for v in var.values() if v.strategy == "hat" and v.main}
    assert mains == {"hat (c=0.75, s_max=400.0)"}
    recs = [r for r in synthetic_records() if not (r.strategy == "hat" and r.seed > 0)]  # 1 seed, as the sweep
    assert {v.label for v in variants(recs).values() if v.strategy == "hat" and v.main} == {"hat (c=0.75, s_max=400.0)"}


def test_bad_seeds_option_is_a_clear_error(store_path):
    res = CliRunner().invoke(main, ["report", "--store", str(store_path), "--seeds", "0,x"])
    assert res.exit_code != 0 and "--seeds takes integers" in res.output


def test_launch_commands_are_runnable_and_name_the_store(tmp_path):
    store = Store(tmp_path / "y.db")
    protocol = dict(PROTOCOL, clip_grad=None)  # an unset protocol field: `--set clip_grad=None` can't parse
    store.save(RunRecord("s", "sgd", SCENARIO, 0, {}, protocol, dict(OPTIONS), "finished", matrix("sgd", 0)))
    res = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "y.db")])
    joint = next(line for line in res.stderr.splitlines() if "--strategy joint" in line)
    assert "=None" not in joint and "--set epochs=2 --set lr=0.05" in joint
    assert joint.endswith(f"--store {tmp_path / 'y.db'}")


def test_undefined_rho_of_one_seed_keeps_the_others(tmp_path):
    """Joint no better than Random on a task of seed 1: Eq. 6 divides by zero for that seed only."""
    recs = synthetic_records()
    bad_joint = next(r for r in recs if r.strategy == "joint" and r.seed == 1)
    bad_joint.accuracy[2, 1] = matrix("random", 1)[1, 1]
    store = Store(tmp_path / "x.db")
    for r in recs:
        store.save(r)
    rows, err = _csv(tmp_path / "x.db", "--strategy", "sgd")
    assert "sgd seed 1 (sgd-1-): rho undefined: forgetting ratio undefined" in err
    (row,) = rows
    assert (int(row["seeds"]), int(row["rho seeds"])) == (3, 2)
    expected = [hand_rho_upto("sgd", s)[T - 1] for s in (0, 2)]
    assert float(row["rho<=T"]) == pytest.approx(sum(expected) / 2, abs=1e-12)


def test_single_seed_cells_show_no_spread(store_path):
    metrics = [m for s in analyse(Store(store_path).query()) for m in s.metrics]
    md = format_markdown(rho_table(metrics, all_variants=True))
    r2, rT = hand_rho_upto("hat", 0, s_max=25.0, c=0.1)[1:]
    acc = sum(matrix("hat", 0, 25.0, 0.1)[T - 1]) / T
    assert f"| hat (c=0.1, s_max=25.0) | 1 | {r2:.2f} | {rT:.2f} | {100 * acc:.2f} |" in md


def test_fig7_prefers_the_papers_compression_setting():
    recs = synthetic_records()
    comp = record("hat", 1, {"s_max": 400.0, "c": 1.5, "embedding_init": "uniform"}, monitoring=monitoring())
    (sec,) = analyse(recs)
    from cl_bench.report import hat_compression_run

    assert hat_compression_run(sec).record.run_id == "hat-0-400-0.75"  # main variant, seed 0
    (sec,) = analyse(recs + [comp])
    assert hat_compression_run(sec).record is comp
    (item,) = [i for i in build_figures([sec]) if i.name.startswith("fig7")]
    assert "c=1.5" in item.caption and "The paper's Fig. 7 uses" not in item.caption


def test_two_task_table_has_one_rho_column(tmp_path):
    """rho<=2 is rho<=T when T = 2 (split MNIST): one column, not the same one twice."""
    store = Store(tmp_path / "two.db")
    for r in synthetic_records():
        if r.accuracy is not None and r.hparams.get("s_max", 400.0) == 400.0:  # no sweep
            r.accuracy = r.accuracy[:2, :2]
            store.save(r)
    res = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "two.db")])
    assert "| strategy | seeds | rho<=2 | A<=2 (%) |" in res.stdout
    mean, std, ci = mean_std_ci([hand_rho_upto("sgd", s)[1] for s in SEEDS])
    acc = mean_std_ci([hand_acc_upto("sgd", s)[1] for s in SEEDS])
    assert (
        f"| sgd | 3 | {mean:.2f} ({std:.2f}) [+-{ci:.2f}] | {100 * acc[0]:.2f} ({100 * acc[1]:.2f}) "
        f"[+-{100 * acc[2]:.2f}] |" in res.stdout
    )
    tex = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "two.db"), "--latex"]).stdout
    assert "Approach & $n$ & $\\rho^{\\leq 2}$ & $A^{\\leq 2}$ (\\%) \\\\" in tex
