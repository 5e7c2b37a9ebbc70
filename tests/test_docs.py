"""The documentation: the sweep-file reference lists exactly the keys the schema accepts (names, types,
defaults, grids), its examples are valid sweeps, and the site builds with ``mkdocs build --strict``."""

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cl_bench.registry import COMMON_OPTIONS, all_scenarios, all_strategies, scenario_options
from cl_bench.sweep import Select, parse_sweep
from cl_bench.sweep.spec import SWEEP_KEYS
from cl_bench.trainer import PRESETS, Protocol
from cl_bench.values import parse_like

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "sweep-files.md"


def section(heading: str) -> str:
    """The text under ``heading`` (a whole line of the page) up to the next heading of any level."""
    lines = PAGE.read_text().splitlines()
    assert heading in lines, f"{PAGE.name} has no heading {heading!r}"
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


def table(heading: str) -> dict[str, dict[str, str]]:
    """The first table under ``heading``: {key (the first column's code span): {column: cell}}."""
    rows = [line for line in section(heading).splitlines() if line.startswith("|")]
    if not rows:
        return {}
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    header, body = split[0], split[2:]
    out = {}
    for cells in body:
        key = re.fullmatch(r"`([^`]+)`", cells[0])
        assert key, f"{heading}: first cell {cells[0]!r} is not a `key`"
        assert key.group(1) not in out, f"{heading}: {key.group(1)} listed twice"
        out[key.group(1)] = dict(zip(header, cells))
    return out


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"expected a `code` cell, got {cell!r}"
    return match.group(1)


def assert_default(cell: str, expected, where: str) -> None:
    """A default cell is YAML that the one parser reads as the code's default."""
    raw = yaml.safe_load(code(cell))
    if isinstance(expected, tuple):
        expected = list(expected)
    parsed = raw if raw is None else parse_like(raw, expected, where)
    assert parsed == expected, f"{where}: the page says {code(cell)}, the code {expected!r}"


def assert_type(cell: str, default, where: str) -> None:
    if default is None:
        return  # an optional value: its type is written out in words
    name = "list" if isinstance(default, (list, tuple)) else type(default).__name__
    assert cell.split()[0] == name, f"{where}: type {cell!r}, the code's default is a {name}"


def builtin_scenarios() -> list[str]:
    return [n for n, s in all_scenarios().items() if s.build.__module__.startswith("cl_bench.benchmarks")]


def builtin_strategies() -> dict:
    return {n: c for n, c in all_strategies().items() if c.__module__.startswith("cl_bench.strategies")}


def test_top_level_keys():
    assert list(table("## Top-level keys")) == list(SWEEP_KEYS)


def test_scenario_options():
    common = table("#### Options every scenario takes")
    assert list(common) == list(COMMON_OPTIONS)
    for key, row in common.items():
        assert_default(row["default"], None, key)
    for name in builtin_scenarios():
        rows = table(f"#### `{name}` options")
        options = scenario_options(name)
        assert list(rows) == list(options), f"scenario {name}"
        for key, row in rows.items():
            assert_type(row["type"], options[key], f"{name} option {key}")
            assert_default(row["default"], options[key], f"{name} option {key}")


def test_strategy_hyperparameters():
    for name, cls in builtin_strategies().items():
        rows = table(f"#### `{name}`")
        fields = {f.name: f for f in cls.hparam_fields()}
        assert list(rows) == list(fields), f"strategy {name}"
        if not fields:
            assert "No hyperparameters." in section(f"#### `{name}`")
        for key, row in rows.items():
            f, where = fields[key], f"{name} hyperparameter {key}"
            assert_type(row["type"], f.default, where)
            assert_default(row["default"], f.default, where)
            grid = f.metadata.get("grid")
            if grid is None:
                assert row["paper grid"] == "-", where
            else:
                listed = yaml.safe_load(code(row["paper grid"]))
                assert [parse_like(v, g, where) for v, g in zip(listed, grid)] == grid and len(listed) == len(grid), (
                    f"{where}: grid {listed}, the code {grid}"
                )


def test_protocol_keys():
    rows = table("## `protocol`")
    fields = {f.name: f.default for f in dataclasses.fields(Protocol)}
    assert list(rows) == ["preset", *fields]
    assert code(rows["preset"]["default"]) == "paper"
    assert rows["preset"]["type"] == f"str (one of {', '.join(repr(p) for p in PRESETS)})"
    for key, default in fields.items():
        assert_type(rows[key]["type"], default, f"protocol {key}")
        assert_default(rows[key]["default"], default, f"protocol {key}")


def test_select_keys():
    rows = table("## `select`")
    fields = {f.name: f.default for f in dataclasses.fields(Select)}
    assert list(rows) == list(fields)
    for key, default in fields.items():
        assert_default(rows[key]["default"], default, f"select {key}")


def test_every_example_is_a_valid_sweep(monkeypatch):
    monkeypatch.chdir(ROOT)  # an example names examples/l2_anchor.py relative to the repository root
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 8
    for block in blocks:
        sweep = parse_sweep(yaml.safe_load(block), source="docs/sweep-files.md example")
        assert sweep.cells


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings_handlers")),
    reason="mkdocs, mkdocs-material or mkdocstrings[python] not installed (the `docs` extra)",
)
def test_site_builds_strictly(tmp_path):
    """Broken links, missing snippets (examples/l2_anchor.py) and docstrings mkdocstrings cannot read fail."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    out = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # Material's end-of-life banner
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "sweep-files" / "index.html").is_file()
    concepts = (tmp_path / "site" / "concepts" / "index.html").read_text()
    assert "L2Anchor" in concepts  # the example strategy, included from its file
