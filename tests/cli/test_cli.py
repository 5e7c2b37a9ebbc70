"""The command line: a run end to end, listing, the report, and the errors users meet."""

from click.testing import CliRunner
from conftest import requires_mnist

from cl_bench.cli import main

TINY = ["--scenario", "split_mnist", "--max-train-per-task", "200", "--epochs", "1"]


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_strategies_hparams_and_scenarios():
    out = invoke("list").output
    for name in ("sgd", "joint", "random", "split_mnist", "permuted_mnist"):
        assert name in out


@requires_mnist
def test_run_three_references_then_report(tmp_path):
    store = str(tmp_path / "s.db")
    for strategy in ("sgd", "joint", "random"):
        res = invoke("run", "--strategy", strategy, *TINY, "--store", store)
        assert res.exit_code == 0, res.output
        assert "| after \\ on |" in res.output
    res = invoke("report", "--store", store)
    assert res.exit_code == 0 and "| sgd | 1 |" in res.output
    csv = invoke("report", "--store", store, "--csv").output
    header = csv.splitlines()[0].split(",")
    assert {"scenario", "strategy", "seeds", "rho<=2", "rho<=T", "A<=T"} <= set(header)


@requires_mnist
def test_report_without_references_says_what_to_launch(tmp_path):
    store = str(tmp_path / "s.db")
    invoke("run", "--strategy", "sgd", *TINY, "--store", store)
    res = invoke("report", "--store", store)  # click >= 8.2: output holds stdout and stderr
    assert "cl-bench run --strategy joint --scenario split_mnist --seed 0 --max-train-per-task 200" in res.output


def test_errors_list_valid_names(tmp_path):
    res = CliRunner().invoke(main, ["run", "--strategy", "nope", *TINY, "--store", str(tmp_path / "s.db")])
    assert res.exit_code != 0 and "valid: " in res.output and "sgd" in res.output
    res = CliRunner().invoke(
        main, ["run", "--strategy", "sgd", "--scenario", "nope", "--store", str(tmp_path / "s.db")]
    )
    assert res.exit_code != 0 and "split_mnist" in res.output
    res = CliRunner().invoke(
        main, ["run", "--strategy", "sgd", *TINY, "-p", "lamb=3", "--store", str(tmp_path / "s.db")]
    )
    assert res.exit_code != 0 and "has no hyperparameter lamb" in res.output


def test_missing_data_says_where_and_how(tmp_path):
    res = CliRunner().invoke(
        main, ["run", "--strategy", "sgd", *TINY, "--data-root", str(tmp_path), "--store", str(tmp_path / "s.db")]
    )
    assert res.exit_code != 0 and "Looked at" in res.output and "--download" in res.output


@requires_mnist
def test_diverging_run_exits_non_zero_and_is_stored_failed(tmp_path):
    store = str(tmp_path / "s.db")
    res = CliRunner().invoke(
        main, ["run", "--strategy", "sgd", *TINY, "--set", "lr=1e30", "--set", "clip_grad=1e30", "--store", store]
    )
    assert res.exit_code == 1 and "stored as failed" in res.output and "not finite" in res.output
