"""A user strategy file is imported once per run and never by a reading command; its runs are stored and
reported under its class's ``name``, wherever the file is run from; two classes cannot share a name."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli import main
from cl_bench.registry import register_scenario
from cl_bench.store import Store

CL_BENCH = Path(sys.executable).with_name("cl-bench")

STRATEGY = textwrap.dedent("""
    import os
    from dataclasses import dataclass

    from cl_bench.strategy import Strategy, TaskData, hparam

    with open(os.environ["IMPORTS_FILE"], "a") as f:  # a side effect at import: counts executions
        f.write("imported\\n")


    @dataclass
    class L1AnchorHparams:
        strength: float = hparam(0.01, "weight of the L1 pull")


    class L1Anchor(Strategy[L1AnchorHparams]):
        name = "l1_anchor"
        keeps = ("anchor",)

        def setup(self):
            self.anchor = None

        def after_task(self, task: TaskData):
            self.anchor = [p.detach().clone() for p in self.model.parameters()]
""")


@register_scenario("tiny_user_files", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, seed=seed)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mystrat").mkdir()
    (tmp_path / "mystrat" / "l1_anchor.py").write_text(STRATEGY)
    imports = tmp_path / "imports.txt"
    imports.touch()
    monkeypatch.setenv("IMPORTS_FILE", str(imports))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def imports(project) -> int:
    return len((project / "imports.txt").read_text().splitlines())


def run(spec, store, *extra):
    return CliRunner().invoke(
        main, ["run", "-s", spec, "-c", "tiny_user_files", "--epochs", "1", "--store", str(store), "--quiet", *extra]
    )


def test_a_run_imports_the_file_once_and_stores_it_under_its_name(project):
    res = run("mystrat/l1_anchor.py:L1Anchor", project / "runs.db")
    assert res.exit_code == 0, res.output
    assert imports(project) == 1
    (record,) = Store(project / "runs.db").query()
    assert record.strategy == "l1_anchor"
    assert record.identity["strategy_class"] == "l1_anchor.py:L1Anchor"  # no folder of this machine
    assert record.identity["hparam_defaults"] == {"strength": 0.01}


def test_the_same_class_run_from_another_folder_is_the_same_run(project, monkeypatch):
    assert run("mystrat/l1_anchor.py:L1Anchor", project / "runs.db").exit_code == 0
    monkeypatch.chdir(project / "mystrat")
    res = run("l1_anchor.py:L1Anchor", project / "runs.db", "--tag", "again")
    assert res.exit_code == 0, res.output
    assert "already in the store (tag added)" in res.output
    (record,) = Store(project / "runs.db").query()
    assert "again" in record.tags


def test_two_classes_claiming_one_name_in_a_store_is_an_error(project):
    assert run("mystrat/l1_anchor.py:L1Anchor", project / "runs.db").exit_code == 0
    (project / "other.py").write_text(STRATEGY.replace("class L1Anchor(", "class Other("))
    res = run("other.py:Other", project / "runs.db")
    assert res.exit_code == 1
    assert "name 'l1_anchor' of other.py:Other is already taken" in res.output
    assert "l1_anchor.py:L1Anchor" in res.output


def test_a_file_cannot_take_a_registered_strategy_s_name(project):
    (project / "fake.py").write_text(STRATEGY.replace('name = "l1_anchor"', 'name = "ewc"'))
    res = run("fake.py:L1Anchor", project / "runs.db")
    assert res.exit_code == 1 and "name 'ewc' is a registered strategy's" in res.output


def test_reading_commands_never_import_the_file(project):
    store = project / "runs.db"
    assert run("mystrat/l1_anchor.py:L1Anchor", store).exit_code == 0
    assert imports(project) == 1
    (project / "sweep.yaml").write_text(
        "scenario: {name: split_mnist, max_train_per_task: 20}\n"
        "strategies: {mystrat/l1_anchor.py:L1Anchor: {strength: [0.01, 0.1]}}\n"
    )
    (run_id,) = [r.run_id for r in Store(store).query()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    commands = [
        ["report", "--store", str(store)],
        ["report", "--store", str(store), "--csv"],
        ["runs", "list", "--store", str(store)],
        ["runs", "list", "--store", str(store), "--strategy", "l1_anchor"],
        ["runs", "show", run_id, "--store", str(store)],
        ["status", "sweep.yaml", "--store", str(store)],
        ["sweep", "sweep.yaml", "--store", str(store), "--dry-run"],
    ]
    for command in commands:  # each in a fresh interpreter: nothing imported before
        res = subprocess.run([str(CL_BENCH), *command], capture_output=True, text=True, env=env, cwd=project)
        assert res.returncode == 0, (command, res.stdout, res.stderr)
        assert imports(project) == 1, command
    listed = subprocess.run(
        [str(CL_BENCH), "runs", "list", "--store", str(store), "--strategy", "l1_anchor"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
    ).stdout
    assert run_id in listed
