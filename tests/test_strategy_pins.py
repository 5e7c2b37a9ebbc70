"""Every built-in strategy's results, bit for bit, as the code before the strategy interface v1 made
them (tests/pins/strategy_matrices.json, written by tests/pins/strategy_matrices.py at commit 68c933b):
the accuracy matrix and every epoch's training and validation loss on an MLP and a conv-net scenario."""

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


def test_the_pins_cover_every_built_in_strategy_on_both_nets():
    from cl_bench.registry import all_strategies

    names = {k.split(" ")[1] for k in EXPECTED}
    assert names == {n for n in all_strategies() if ":" not in n}
    assert {k.split(" ")[0] for k in EXPECTED} == {"pin_mlp", "pin_conv"}
