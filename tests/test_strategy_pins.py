"""Every built-in strategy's results, bit for bit, as the code before the strategy interface v1 made
them (tests/pins/strategy_matrices.json, written by tests/pins/strategy_matrices.py at commit 68c933b;
its docstring says which rows were written again, and why): the accuracy matrix and every epoch's
training and validation loss on an MLP and a conv-net scenario."""

import json
from pathlib import Path

import pytest

PINS = Path(__file__).parent / "pins"


@pytest.fixture(scope="module")
def today():
    import importlib.util

    spec = importlib.util.spec_from_file_location("strategy_matrices", PINS / "strategy_matrices.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.matrices()


EXPECTED = json.loads((PINS / "strategy_matrices.json").read_text())


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_results_equal_the_pinned_ones_bit_for_bit(key, today):
    assert today[key]["accuracy"] == EXPECTED[key]["accuracy"]
    assert today[key]["losses"] == EXPECTED[key]["losses"]  # floats compared exactly


PAPER_STRATEGIES = {"sgd", "sgd_frozen", "ewc", "imm_mean", "imm_mode", "lwf", "lfl", "pathnet", "pnn", "hat"}


def test_the_pins_cover_every_strategy_of_the_paper_and_the_references_on_both_nets():
    """Every strategy that existed before the interface changed (those added since have no earlier results)."""
    from cl_bench.registry import all_strategies

    names = {k.split(" ")[1] for k in EXPECTED}
    assert names == PAPER_STRATEGIES | {"joint", "random"} and names <= set(all_strategies())
    assert {k.split(" ")[0] for k in EXPECTED} == {"pin_mlp", "pin_conv"}
