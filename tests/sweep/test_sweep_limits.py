"""Sweep size is counted before anything is expanded: a huge sweep is refused (and the limit can be
lifted); empty axes and task positions a scenario lacks are errors, not 0 runs."""

import textwrap
import tracemalloc

import pytest
import yaml
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.store import Store
from cl_bench.sweep import SweepError, parse_sweep
from cl_bench.sweep.plan import MAX_RUNS, Select, sweep_size


def sweep_of(text: str, **kw):
    return parse_sweep(yaml.safe_load(textwrap.dedent(text)), **kw)


def test_a_billion_seeds_is_refused_at_once_without_expanding_them():
    tracemalloc.start()
    with pytest.raises(SweepError, match=r"plans 1,000,000,000 runs, more than the limit of 100,000.*--max-runs"):
        sweep_of("scenario: split_mnist\nstrategies: [sgd]\nseeds: 1000000000\n")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6  # list(range(1e9)) needed 8 GB


def test_the_count_is_the_planned_runs_and_the_limit_can_be_lifted(tmp_path):
    text = """
        scenario: split_mnist
        strategies: {sgd: , ewc: {lamb: [1, 10, 100]}}
        protocol: {epochs: [1, 2]}
        references: true
        seeds: 3
    """
    # (1 + 3) points x 2 protocols x 3 seeds + (Joint x 2 protocols + Random) x 3 seeds
    expected = (1 + 3) * 2 * 3 + (2 + 1) * 3
    sweep = sweep_of(text, max_runs=expected)
    assert len(sweep.plan(Store(tmp_path / "s.db")).items) == expected
    with pytest.raises(SweepError, match=f"plans {expected} runs, more than the limit of {expected - 1}"):
        sweep_of(text, max_runs=expected - 1)
    assert sweep.seeds == range(3)


def test_with_select_the_count_bounds_the_plan():
    # search: 3 points on seed 0; then one point on 3 seeds (seed 0's run shared): at most 3 + 3
    assert sweep_size(1, [3], 1, 1, Select(0, "final_valid_acc", (0, 1, 2)), False) == 6
    assert sweep_size(2, [1], 1, 3, None, ["random"]) == 2 * (3 + 3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_a_bad_limit_is_an_error(bad):
    with pytest.raises(SweepError, match="max_runs must be an integer >= 1"):
        sweep_of("scenario: split_mnist\nstrategies: [sgd]\n", max_runs=bad)


@pytest.mark.parametrize(
    "text, message",
    [
        ("strategies: [sgd]\nprotocol: {epochs: []}", "protocol setting epochs has an empty list of values"),
        ("strategies: {}", "`strategies` names no strategy"),
        ("strategies: []", "`strategies` names no strategy"),
        ("strategies: {ewc: {lamb: []}}", "hyperparameter 'lamb' has an empty list of values"),
    ],
)
def test_empty_axes_are_errors_not_zero_runs(text, message):
    with pytest.raises(SweepError, match=message):
        sweep_of("scenario: split_mnist\n" + text)
    with pytest.raises(SweepError, match="`scenarios` names no scenario"):
        sweep_of("scenarios: []\nstrategies: [sgd]")


def test_task_positions_the_scenario_lacks_are_refused_before_any_data():
    with pytest.raises(SweepError, match=r"'tasks': position\(s\) 7 out of range: it has 2 task\(s\), positions 0..1"):
        sweep_of("scenario: {name: split_mnist, tasks: [7]}\nstrategies: [sgd]")
    with pytest.raises(SweepError, match=r"position\(s\) 3 out of range: it has 3 task"):
        sweep_of("scenario: {name: permuted_mnist, n_tasks: 3, tasks: [0, 3]}\nstrategies: [sgd]")
    sweep_of("scenario: {name: permuted_mnist, n_tasks: 3, tasks: [2]}\nstrategies: [sgd]")


def test_the_cli_refuses_a_huge_sweep_and_max_runs_lifts_it(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("scenario: split_mnist\nstrategies: [sgd]\nseeds: 200000\nprotocol: {epochs: 1, no_such: 2}\n")
    res = CliRunner().invoke(main, ["sweep", str(big), "--dry-run", "--store", str(tmp_path / "s.db")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"plans 200,000 runs, more than the limit of {MAX_RUNS:,}" in res.output
    # lifted: the next check (the protocol's settings) speaks, so the count was accepted
    res = CliRunner().invoke(
        main, ["sweep", str(big), "--dry-run", "--max-runs", "200000", "--store", str(tmp_path / "s.db")]
    )
    assert res.exit_code == 1 and "no_such" in res.output and "limit" not in res.output, res.output
    res = CliRunner().invoke(main, ["sweep", str(big), "--max-runs", "0"])
    assert res.exit_code == 2 and "--max-runs" in res.output
    assert "100,000" in CliRunner().invoke(main, ["sweep", "--help"]).output  # the help states MAX_RUNS
    assert MAX_RUNS == 100_000
