"""Range checks at parse time: the protocol, strategy hyperparameters, scenario options and seeds refuse
out-of-range values the same way through the Python API, the CLI and sweep files, before any work."""

import math
import re

import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli import main
from cl_bench.ranges import Range
from cl_bench.registry import (
    all_strategies,
    build_scenario,
    get_strategy,
    option_ranges,
    parse_scenario_options,
    register_scenario,
)
from cl_bench.runner import RunConfig
from cl_bench.strategy import HparamError, describe_hparams
from cl_bench.sweep import SweepError, parse_sweep
from cl_bench.trainer import Protocol, protocol_from_dict


def no_data(tmp_path):
    """An empty data root: a check that is missing fails fast on the missing data, never trains."""
    return ["--data-root", str(tmp_path / "no-data")]


@register_scenario("tiny_ranges", "2 synthetic tasks (tests only)")
@option_ranges(noise=Range(at_least=0, below=1))
def _tiny(seed=0, data_root_path=None, download=False, noise: float = 0.0):
    return make_scenario(seed=seed)


# ---- the protocol ------------------------------------------------------------------------------------
BAD_PROTOCOL = [  # (setting, value, what the message says about the valid range)
    ("epochs", 0, "'epochs' must be an integer >= 1, got 0"),
    ("epochs", -3, "'epochs' must be an integer >= 1"),
    ("epochs", 2.0, "'epochs' must be an integer >= 1, got 2.0"),
    ("batch_size", -5, "'batch_size' must be an integer >= 1, got -5"),
    ("batch_size", 0, "'batch_size' must be an integer >= 1"),
    ("eval_batch_size", 0, "'eval_batch_size' must be an integer >= 1"),
    ("lr", -1.0, "'lr' must be a finite number > 0, got -1.0"),
    ("lr", 0.0, "'lr' must be a finite number > 0"),
    ("lr", math.nan, "'lr' must be a finite number > 0, got nan"),
    ("lr", math.inf, "'lr' must be a finite number > 0, got inf"),
    ("lr_factor", 1.0, "'lr_factor' must be a finite number > 1"),
    ("lr_factor", 0.5, "'lr_factor' must be a finite number > 1"),
    ("lr_factor", math.inf, "'lr_factor' must be a finite number > 1"),
    ("lr_patience", 0, "'lr_patience' must be an integer >= 1"),
    ("lr_min", -1e-4, "'lr_min' must be a finite number >= 0"),
    ("lr_min", math.nan, "'lr_min' must be a finite number >= 0"),
    ("lr_min", 0.1, "'lr_min' must be <= lr"),  # the default lr is 0.05: no epoch would run
    ("clip_grad", 0.0, "'clip_grad' must be none or a finite number > 0"),
    ("clip_grad", -1.0, "'clip_grad' must be none or a finite number > 0"),
    ("clip_grad", math.inf, "'clip_grad' must be none or a finite number > 0"),
    ("precision", "fp16", "'precision' must be one of 'fp32', 'bf16'"),
    ("channels_last", 1, "'channels_last' must be true or false"),
    ("eval_train_each_epoch", "yes", "'eval_train_each_epoch' must be true or false"),
]


@pytest.mark.parametrize("name, value, message", BAD_PROTOCOL)
def test_protocol_refuses_out_of_range_values_in_python(name, value, message):
    with pytest.raises(ValueError, match="protocol " + _re(message)):
        Protocol(**{name: value})
    with pytest.raises(ValueError, match=_re(message)):
        Protocol().replace(**{name: value})


def test_protocol_accepts_the_edges_of_its_ranges():
    Protocol(
        epochs=1, batch_size=1, eval_batch_size=1, lr=1e30, lr_factor=1.01, lr_patience=1, lr_min=0.0, clip_grad=None
    )
    Protocol(lr=0.05, lr_min=0.05)  # lr == lr_min still trains until the first decay
    Protocol(lr=1, clip_grad=1)  # ints where floats are expected


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("epochs", "0", "protocol 'epochs' must be an integer >= 1, got 0"),
        ("lr", "-1", "protocol 'lr' must be a finite number > 0, got -1.0"),
        ("batch_size", "-5", "protocol 'batch_size' must be an integer >= 1, got -5"),
        ("lr", "nan", "protocol 'lr' must be a finite number > 0, got nan"),
        ("clip_grad", "0", "protocol 'clip_grad' must be none or a finite number > 0"),
    ],
)
def test_protocol_from_text_is_checked_too(name, text, message):
    with pytest.raises(ValueError, match=_re(message)):
        protocol_from_dict({name: text})
    with pytest.raises(ValueError, match=_re(message)):
        protocol_from_dict({name: text}, preset="quick")


@pytest.mark.parametrize(
    "setting, message",
    [
        ("epochs=0", "protocol 'epochs' must be an integer >= 1, got 0"),
        ("lr=-1", "protocol 'lr' must be a finite number > 0, got -1.0"),
        ("batch_size=-5", "protocol 'batch_size' must be an integer >= 1, got -5"),
        ("lr_factor=1", "protocol 'lr_factor' must be a finite number > 1"),
        ("lr_min=1", "protocol 'lr_min' must be <= lr"),
    ],
)
def test_cli_refuses_a_bad_protocol_before_creating_the_store(tmp_path, setting, message):
    store = tmp_path / "s.db"
    res = CliRunner().invoke(
        main, ["run", "-s", "sgd", "-c", "split_mnist", "--set", setting, "--store", str(store), *no_data(tmp_path)]
    )
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output
    assert not store.exists()


@pytest.mark.parametrize(
    "protocol, message",
    [
        ({"epochs": 0}, "protocol 'epochs' must be an integer >= 1, got 0"),
        ({"lr": [0.05, -1]}, "protocol 'lr' must be a finite number > 0, got -1.0"),
        ({"batch_size": -5}, "protocol 'batch_size' must be an integer >= 1, got -5"),
        ({"preset": "quick", "lr": "1e-5"}, "protocol 'lr_min' must be <= lr"),
    ],
)
def test_sweep_file_refuses_a_bad_protocol(protocol, message):
    with pytest.raises(SweepError, match=_re(message)):
        parse_sweep({"scenario": "tiny_ranges", "strategies": {"sgd": None}, "protocol": protocol})


# ---- strategy hyperparameters ---------------------------------------------------------------------------
BAD_HPARAMS = [  # (strategy, hyperparameter, value, what the message says about the valid range)
    ("ewc", "lamb", -1.0, "a finite number >= 0, got -1.0"),
    ("ewc", "lamb", math.inf, "a finite number >= 0, got inf"),
    ("ewc", "fisher_batch", 0, "an integer >= 1, got 0"),
    ("imm_mean", "lamb", -0.1, "a finite number >= 0"),
    ("imm_mode", "lamb", math.nan, "a finite number >= 0"),
    ("imm_mode", "fisher_batch", 0, "an integer >= 1"),
    ("lfl", "lamb", -1.0, "a finite number >= 0"),
    ("lwf", "lamb", -2.0, "a finite number >= 0"),
    ("lwf", "T", 0.0, "a finite number > 0, got 0.0"),
    ("hat", "s_max", 0.5, "a finite number >= 1"),
    ("hat", "s_max", math.inf, "a finite number >= 1"),
    ("hat", "c", -0.1, "a finite number >= 0"),
    ("hat", "thres_cosh", 0.0, "a finite number > 0"),
    ("hat", "thres_emb", -6.0, "a finite number > 0"),
    ("hat", "annealing", "linear", "one of 'reference', 'paper', got 'linear'"),
    ("hat", "embedding_init", "zeros", "one of 'normal', 'uniform'"),
    ("hat", "init", "kaiming", "one of 'default', 'xavier'"),
    ("pathnet", "modules", 0, "an integer >= 1"),
    ("pathnet", "active", 0, "an integer >= 1"),
    ("pathnet", "generations", 0, "an integer >= 1"),
    ("pathnet", "population", 0, "an integer >= 1"),
    ("pathnet", "mutation_step", -1, "an integer >= 0"),
    ("pathnet", "width_factor", -0.5, "a finite number >= 0"),
    ("pnn", "width_factor", -1.0, "a finite number >= 0"),
]


@pytest.mark.parametrize("strategy, name, value, message", BAD_HPARAMS)
def test_hparams_out_of_range_are_refused_at_parse_time(strategy, name, value, message):
    cls = get_strategy(strategy)
    expected = f"hyperparameter {name!r} of {strategy!r} must be {message}"
    with pytest.raises(HparamError, match=_re(expected)):
        cls.parse_hparams({name: value})
    with pytest.raises(HparamError, match=_re(expected)):  # text, as the CLI and YAML give it
        cls.parse_hparams({name: str(value)})
    with pytest.raises(HparamError, match=_re(expected)):  # an Hparams built in Python: the constructor
        cls(make_scenario(), cls.Hparams(**{name: value}))


@pytest.mark.parametrize("strategy, name, value, message", BAD_HPARAMS)
def test_sweep_file_refuses_out_of_range_hparams(strategy, name, value, message):
    default = getattr(get_strategy(strategy).Hparams(), name)
    with pytest.raises(SweepError, match=_re(f"{name!r} of {strategy!r} must be {message}")):
        parse_sweep({"scenario": "tiny_ranges", "strategies": {strategy: {name: [default, value]}}})


def test_cli_refuses_out_of_range_hparams(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "run",
            "-s",
            "ewc",
            "-c",
            "split_mnist",
            "-p",
            "lamb=-1",
            "--store",
            str(tmp_path / "s.db"),
            *no_data(tmp_path),
        ],
    )
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "hyperparameter 'lamb' of 'ewc' must be a finite number >= 0, got -1.0" in res.output


def test_pathnet_needs_active_modules_at_most_modules():
    cls = get_strategy("pathnet")
    with pytest.raises(HparamError, match="N must be <= M"):
        cls.parse_hparams({"modules": 4, "active": 5})
    with pytest.raises(SweepError, match="N must be <= M"):
        parse_sweep({"scenario": "tiny_ranges", "strategies": {"pathnet": {"modules": 4, "active": [3, 5]}}})
    assert cls.parse_hparams({"modules": 4, "active": 4}).active == 4


def test_declared_ranges_are_listed_with_the_hyperparameters():
    fields = {f.name: f for f in get_strategy("ewc").hparam_fields()}
    assert str(fields["fisher_batch"].metadata["range"]) == ">= 1"
    assert str(fields["lamb"].metadata["range"]) == ">= 0"
    assert "fisher_batch: int = 20 (>= 1)" in describe_hparams(get_strategy("ewc"))
    assert "annealing: str = 'reference' (one of 'reference', 'paper')" in describe_hparams(get_strategy("hat"))
    assert "(>= 0)" not in describe_hparams(get_strategy("ewc")).split("lamb")[0]  # nothing before the first


def test_defaults_and_declared_grids_are_in_range():
    for cls in all_strategies().values():
        cls.parse_hparams({})
        for f in cls.hparam_fields():
            for value in f.metadata.get("grid") or []:
                cls.parse_hparams({f.name: value})


# ---- scenario options and seeds -----------------------------------------------------------------------
BAD_OPTIONS = [  # (scenario, option, text, message)
    ("split_mnist", "max_train_per_task", "0", "option 'max_train_per_task' must be an integer >= 1, got 0"),
    ("split_mnist", "max_train_per_task", "-10", "option 'max_train_per_task' must be an integer >= 1"),
    ("split_mnist", "tasks", "0,0", "option 'tasks' names position(s) 0 more than once"),
    ("split_mnist", "tasks", "-1", "option 'tasks' position must be an integer >= 0, got -1"),
    ("split_mnist", "valid_fraction", "1", "option 'valid_fraction' must be a finite number in [0, 1), got 1.0"),
    ("split_mnist", "valid_fraction", "-0.1", "option 'valid_fraction' must be a finite number in [0, 1)"),
    ("permuted_mnist", "n_tasks", "0", "option 'n_tasks' must be an integer in [1, 10], got 0"),
    ("permuted_mnist", "n_tasks", "11", "option 'n_tasks' must be an integer in [1, 10], got 11"),
    ("mixture", "valid_fraction", "1.5", "option 'valid_fraction' must be a finite number in [0, 1)"),
    ("mixture", "valid_split", "random", "option 'valid_split' must be one of 'reference', 'stratified'"),
    ("cifar", "valid_fraction", "1", "option 'valid_fraction' must be a finite number in [0, 1)"),
    ("cifar", "valid_split", "random", "option 'valid_split' must be one of 'reference', 'stratified'"),
    ("tiny_ranges", "noise", "1", "option 'noise' must be a finite number in [0, 1)"),
]


@pytest.mark.parametrize("scenario, option, text, message", BAD_OPTIONS)
def test_scenario_options_out_of_range_are_refused_when_parsed(scenario, option, text, message):
    with pytest.raises(ValueError, match=_re(f"scenario {scenario!r} {message}")):
        parse_scenario_options(scenario, {option: text})
    with pytest.raises(SweepError, match=_re(message)):
        parse_sweep({"scenario": {"name": scenario, option: text}, "strategies": {"sgd": None}})


@pytest.mark.parametrize("scenario, option, text, message", BAD_OPTIONS)
def test_build_scenario_checks_before_loading_any_data(tmp_path, scenario, option, text, message):
    with pytest.raises(ValueError, match=_re(message)):  # an empty data root: nothing to load anyway
        build_scenario(scenario, data_root=tmp_path, **{option: _typed(option, text)})


def test_empty_task_list_is_refused():
    with pytest.raises(ValueError, match="option 'tasks' must name at least one task position"):
        parse_scenario_options("split_mnist", {"tasks": []})
    with pytest.raises(ValueError, match="option 'tasks' must name at least one task position"):
        build_scenario("tiny_ranges", tasks=[])
    assert len(build_scenario("tiny_ranges", tasks=[1], max_train_per_task=1).tasks) == 1


def test_a_builder_called_directly_checks_its_declared_ranges():
    with pytest.raises(ValueError, match="'noise' must be a finite number in \\[0, 1\\), got 2.0"):
        _tiny(noise=2.0)
    assert len(_tiny(noise=0.5).tasks) == 2


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--max-train-per-task", "0", "option 'max_train_per_task' must be an integer >= 1, got 0"),
        ("--tasks", "0,0", "option 'tasks' names position(s) 0 more than once"),
        ("-o", "valid_fraction=1.5", "option 'valid_fraction' must be a finite number in [0, 1), got 1.5"),
        ("--seed", "-1", "seed must be an integer in [0, 4294967295], got -1"),
    ],
)
def test_cli_refuses_bad_options_and_seeds_before_creating_the_store(tmp_path, option, value, message):
    store = tmp_path / "s.db"
    res = CliRunner().invoke(
        main, ["run", "-s", "sgd", "-c", "split_mnist", option, value, "--store", str(store), *no_data(tmp_path)]
    )
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output
    assert not store.exists()


@pytest.mark.parametrize("seed", [-1, 2**32, True, 1.0])
def test_run_config_refuses_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be an integer in \\[0, 4294967295\\]"):
        RunConfig("sgd", "tiny_ranges", seed)
    RunConfig("sgd", "tiny_ranges", 2**32 - 1)


def _re(text: str) -> str:
    """``text`` as a literal for pytest's ``match``."""
    return re.escape(text)


def _typed(option: str, text: str):
    """The Python value of an option given as text in BAD_OPTIONS."""
    if option == "tasks":
        return [int(i) for i in text.split(",")]
    if option in ("max_train_per_task", "n_tasks"):
        return int(text)
    return text if option == "valid_split" else float(text)
