"""Finding strategies by name: a broken third-party plugin is skipped with a warning, never fatal."""

import pytest

from cl_bench import registry


class BrokenEntryPoint:
    name, value = "broken_method", "their_pkg.module:Broken"

    def load(self):
        raise ImportError("No module named 'their_pkg'")


def test_a_broken_strategy_entry_point_warns_and_every_other_strategy_stays_usable(monkeypatch):
    monkeypatch.setattr(registry, "_DISCOVERED", False)
    monkeypatch.setattr(registry, "STRATEGIES", dict(registry.STRATEGIES))
    monkeypatch.setattr(registry, "entry_points", lambda group=None, name=None: [BrokenEntryPoint()])
    with pytest.warns(UserWarning, match="'broken_method' .*failed to load and is skipped.*their_pkg"):
        names = registry.all_strategies()
    assert {"sgd", "hat", "ewc"} <= set(names) and "broken_method" not in names
    assert registry.get_strategy("sgd").name == "sgd"


def test_an_unknown_prefix_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown strategy prefix 'nope:'.*avalanche:"):
        registry.get_strategy("nope:EWC")
