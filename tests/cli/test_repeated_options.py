"""An option that takes one value, given twice, is a usage error (click alone keeps the last silently)."""

import pytest
from click.testing import CliRunner

from cl_bench.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "--store", "a.db", "--store", "b.db"], "--store given twice"),
        (["run", "-s", "sgd", "-c", "split_mnist", "--seed", "1", "--seed=2"], "--seed given twice"),
        (["run", "-s", "sgd", "-c", "split_mnist", "--strategy", "ewc"], "-s and --strategy both given"),
        (["run", "-s", "sgd", "-c", "split_mnist", "--download", "--no-download"], "--download and --no-download"),
    ],
)
def test_a_single_value_option_given_twice_is_refused(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output
    assert not list(tmp_path.iterdir())  # refused before anything was created


def test_repeatable_options_stay_repeatable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "-s", "nope", "-c", "split_mnist", "--tag", "a", "--tag", "b"])
    assert "given twice" not in result.output and "unknown strategy 'nope'" in result.output
