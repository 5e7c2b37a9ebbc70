"""A report never crashes on a store: runs of a user strategy file stored by 0.1 under the relative path
they were launched with, read from another folder (the whole report, --html and --figures), are one
strategy under the name the class declares, whatever path string named the file; a strategy whose file
cannot be read here is reported under its class's name, a plugin under its stored name."""

from __future__ import annotations

import csv
import io
import textwrap

import pytest
from click.testing import CliRunner
from test_report import DATA, OPTIONS, PROTOCOL, SCENARIO, SEEDS, matrix

from cl_bench.cli import main
from cl_bench.report import normalise_records, strategy_key, strategy_label
from cl_bench.store import RunRecord, Store

PLUGIN = textwrap.dedent("""
    from dataclasses import dataclass
    from cl_bench.strategy import Strategy, hparam

    @dataclass
    class Hp:
        lamb: float = hparam(1.0, "strength")

    class Anchor(Strategy):
        name = "anchor"
        Hparams = Hp
""")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """<tmp>/proj/plugins/anchor.py, and the store <tmp>/proj/reports/runs.db whose runs named the file by
    three path strings (launched from <tmp>/proj); the report then runs from <tmp>/elsewhere."""
    proj = tmp_path / "proj"
    (proj / "plugins").mkdir(parents=True)
    (proj / "plugins" / "anchor.py").write_text(PLUGIN)
    (proj / "reports").mkdir()
    store = Store(proj / "reports" / "runs.db")
    names = ["plugins/anchor.py:Anchor", "./plugins/anchor.py:Anchor", f"{proj}/plugins/../plugins/anchor.py:Anchor"]
    for seed, name in zip(SEEDS, names):
        store.save(
            RunRecord(
                f"anchor-{seed}",
                name,
                SCENARIO,
                seed,
                {"lamb": 1.0},
                dict(PROTOCOL),
                dict(OPTIONS),
                "finished",
                matrix("sgd", seed),
                data=DATA,
            )
        )
        for ref in ("joint", "random"):
            store.save(
                RunRecord(
                    f"{ref}-{seed}",
                    ref,
                    SCENARIO,
                    seed,
                    {},
                    dict(PROTOCOL),
                    dict(OPTIONS),
                    "finished",
                    matrix(ref, seed),
                    data=DATA,
                )
            )
    store.save(
        RunRecord(
            "gone-0",
            "gone/missing.py:Nope",
            SCENARIO,
            0,
            {"k": 2},
            dict(PROTOCOL),
            dict(OPTIONS),
            "finished",
            matrix("sgd", 0) * 0.9,
            data=DATA,
        )
    )
    store.save(
        RunRecord(
            "plugin-0",
            "someplugin:Thing",
            SCENARIO,
            0,
            {},
            dict(PROTOCOL),
            dict(OPTIONS),
            "finished",
            matrix("sgd", 0) * 0.8,
            data=DATA,
        )
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return proj


def test_one_file_named_three_ways_is_one_strategy_from_another_folder(project):
    store = str(project / "reports" / "runs.db")
    res = CliRunner().invoke(main, ["report", "--store", store, "--csv"])
    assert res.exit_code == 0, res.output
    rows = {r["strategy"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    key = "anchor"  # the name the class declares, read from the file without running it
    assert set(rows) == {key, "Nope", "someplugin:Thing"}
    assert rows[key]["seed list"] == "0,1,2" and rows[key]["configuration"] == "default hyperparameters, fp32"
    assert strategy_label(key) == "anchor"
    assert "defaults unknown: its file is not found here" in rows["Nope"]["configuration"]
    assert "defaults unknown: not readable here" in rows["someplugin:Thing"]["configuration"]
    for name in ("Nope", "someplugin:Thing"):  # not readable: reported under their names
        assert rows[name]["configuration"].endswith("its only configuration")
    md = CliRunner().invoke(main, ["report", "--store", store]).stdout
    assert "| anchor | 3 |" in md and "| gone/missing.py:Nope | 1 |" not in md  # names, never paths
    assert "| Nope | 1 |" in md and "| someplugin:Thing | 1 |" in md


def test_html_and_figures_do_not_crash_either(project, tmp_path):
    store = str(project / "reports" / "runs.db")
    res = CliRunner().invoke(
        main, ["report", "--store", store, "--html", str(tmp_path / "r.html"), "--figures", str(tmp_path / "figs")]
    )
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert "anchor</td>" in html and "Nope</td>" in html
    assert (tmp_path / "figs" / f"fig3_acc_{SCENARIO}__max_train_per_task-50__epochs-2.png").exists()


def test_strategy_keys(tmp_path):
    (tmp_path / "s.py").write_text(PLUGIN)
    assert strategy_key("sgd") == "sgd" and strategy_key("avalanche:EWC") == "avalanche:EWC"
    resolved = "anchor"  # the name its class declares, read without running the file
    assert strategy_key("s.py:Anchor", [tmp_path]) == strategy_key(f"{tmp_path}/./s.py:Anchor") == resolved
    assert strategy_key("nowhere/../x.py:A", [tmp_path]) == "A"  # not found: the class's name
    (rec,) = normalise_records([RunRecord("r", "s.py:Anchor", "toy", 0, {}, {}, {}, "finished")], tmp_path / "runs.db")
    assert rec.strategy == resolved
