"""One parser for typed values: the same text means the same value on the CLI, in sweep files and
in hyperparameters, and a value of the wrong type is an error that names the field."""

import pytest
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.registry import get_strategy, parse_scenario_options
from cl_bench.strategy import HparamError
from cl_bench.trainer import protocol_from_dict
from cl_bench.values import BadValue, parse_assignments, parse_like, parse_value


@pytest.mark.parametrize(
    "raw, kind, expected",
    [
        ("true", bool, True),
        ("No", bool, False),
        ("on", bool, True),
        ("0", bool, False),
        (1, bool, True),
        (True, bool, True),
        ("10", int, 10),
        (10.0, int, 10),
        ("1e3", int, 1000),
        (7, int, 7),
        ("1e-4", float, 1e-4),
        (3, float, 3.0),
        (" 0.5 ", float, 0.5),
        ("abc", str, "abc"),
        ("none", None, None),
        (None, None, None),
        ("2.5", None, 2.5),
        ([1, 2], list, [1, 2]),
    ],
)
def test_accepted_values(raw, kind, expected):
    value = parse_value(raw, kind, "x")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "raw, kind",
    [
        (
            "maybe",
            bool,
        ),
        (2, bool),
        ("1.7", int),
        (1.7, int),
        (True, int),
        ("abc", float),
        (False, float),
        (3, str),
        ("inf", int),
        ("x", None),
        ("1,2", list),
    ],
)
def test_rejected_values_name_the_field(raw, kind):
    with pytest.raises(BadValue, match="epochs must be"):
        parse_value(raw, kind, "epochs")


def test_parse_like_takes_the_type_of_the_default():
    assert parse_like("3", 5, "n") == 3 and parse_like("3", 5.0, "n") == 3.0 and parse_like("3", None, "n") == 3.0


def test_assignments():
    assert parse_assignments(["a=1", "b-c = x"], "--set") == {"a": "1", "b_c": "x"}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(BadValue, match="--set"):
            parse_assignments(bad, "--set")


def test_every_surface_applies_the_same_rules():
    """epochs=1.7 and a bool 'maybe' are errors everywhere (the CLI once read them as 1 and false)."""
    with pytest.raises(BadValue, match="'epochs' must be int"):
        protocol_from_dict({"epochs": "1.7"})
    with pytest.raises(BadValue, match="'epochs' must be int"):
        protocol_from_dict({"epochs": 1.7})
    assert protocol_from_dict({"epochs": "10", "eval_train_each_epoch": "yes"}).epochs == 10
    with pytest.raises(HparamError, match="'recursive_laterals' of 'pnn' must be bool"):
        get_strategy("pnn").parse_hparams({"recursive_laterals": "maybe"})
    with pytest.raises(HparamError, match="'generations' of 'pathnet' must be int"):
        get_strategy("pathnet").parse_hparams({"generations": "1.7"})
    with pytest.raises(BadValue, match="'max_train_per_task' must be int"):
        parse_scenario_options("split_mnist", {"max_train_per_task": "1.5"})
    assert parse_scenario_options("split_mnist", {"tasks": "0,1"}) == {"tasks": [0, 1]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "epochs=1.7"], "'epochs' must be int"),
        (["--set", "eval_train_each_epoch=maybe"], "must be bool"),
        (["--set", "nonsense=1"], "unknown protocol setting"),
        (["--set", "epochs"], "NAME=VALUE"),
        (["-o", "seed=3"], "has no option seed"),
    ],
)
def test_cli_rejects_before_any_work(args, message, tmp_path):
    result = CliRunner().invoke(
        main, ["run", "-s", "sgd", "-c", "split_mnist", "--store", str(tmp_path / "s.db"), *args]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.db").exists()  # refused before the store was even opened
