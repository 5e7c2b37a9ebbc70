"""The sweep commands for scripts and users: a failed run is a non-zero exit with a summary; reading
commands never run a user's strategy file; user errors are one line, never a traceback."""

import textwrap

import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli import main
from cl_bench.registry import register_scenario


@register_scenario("tiny_cli", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, n_train=45, n_test=30, seed=seed)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *needles):
    """Exit status 1 with click's "Error: ..." and no exception escaping (so no traceback)."""
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Error: " in res.output and "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, res.output


def write(tmp_path, text, name="sweep.yaml"):
    file = tmp_path / name
    file.write_text(textwrap.dedent(text))
    return file


# ---- exit status -------------------------------------------------------------------------------------
def test_sweep_exits_non_zero_when_a_run_fails_and_says_so(tmp_path):
    ok = write(tmp_path, "{scenario: tiny_cli, strategies: {sgd: }, protocol: {epochs: 1}}", "ok.yaml")
    res = invoke("sweep", ok, "--store", tmp_path / "ok.db", "--workers", 0, "--quiet")
    assert res.exit_code == 0, res.output
    assert "1 run(s) finished, 0 failed in this call" in res.output

    bad = write(tmp_path, "{scenario: tiny_cli, strategies: {sgd: }, protocol: {epochs: 1, lr: [0.05, 1.0e+30]}}")
    store = tmp_path / "s.db"
    res = invoke("sweep", bad, "--store", store, "--workers", 0, "--quiet")
    assert res.exit_code == 1, res.output
    assert "1 run(s) finished, 1 failed in this call" in res.output
    assert "FAILED: 1 run(s) failed or diverged" in res.output and "diverged" in res.output
    res = invoke("sweep", bad, "--store", store, "--workers", 0, "--quiet")  # nothing to run, still failed
    assert res.exit_code == 1 and "0 run(s) finished, 0 failed in this call" in res.output
    assert "1 run(s) of this sweep are stored as failed" in res.output


# ---- reading commands never run user code -----------------------------------------------------------------
SIDE_EFFECT = """
from pathlib import Path
from dataclasses import dataclass
from cl_bench.strategy import Strategy, hparam

Path(__file__).with_suffix(".imported").touch()  # any code here runs only when the file is imported


class Marked(Strategy):
    name = "marked"

    @dataclass
    class Hparams:
        strength: float = hparam(0.5, "how much", grid=[0.1, 1.0], at_least=0.0)
        steps: int = 3
"""


def test_status_and_dry_run_do_not_import_a_strategy_file(tmp_path):
    strategy = tmp_path / "marked.py"
    strategy.write_text(SIDE_EFFECT)
    file = write(
        tmp_path,
        f"""
        scenario: tiny_cli
        strategies: {{"{strategy}:Marked": {{strength: paper}}}}
        protocol: {{epochs: 1}}
    """,
    )
    store = tmp_path / "s.db"
    res = invoke("sweep", file, "--store", store, "--dry-run")
    assert res.exit_code == 0 and "2 to run" in res.output, res.output
    res = invoke("sweep", file, "--store", store, "--workers", 0, "--quiet")
    assert res.exit_code == 0, res.output
    marker = strategy.with_suffix(".imported")
    assert marker.exists()  # running it imports it, of course
    marker.unlink()
    res = invoke("status", file, "--store", store)
    assert res.exit_code == 0 and "total: 2 finished, 0 failed, 0 pending" in res.output, res.output
    res = invoke("sweep", file, "--store", store, "--dry-run")
    assert res.exit_code == 0 and "0 to run, 2 in the store" in res.output, res.output
    assert not marker.exists()


def test_status_refuses_a_strategy_whose_hyperparameters_need_its_code(tmp_path):
    strategy = tmp_path / "computed.py"
    strategy.write_text(SIDE_EFFECT.replace("hparam(0.5,", "hparam(float('0.5'),"))
    file = write(tmp_path, f'{{scenario: tiny_cli, strategies: {{"{strategy}:Marked": }}}}')
    res = invoke("sweep", file, "--store", tmp_path / "s.db", "--dry-run")
    one_line_error(res, "computed.py, line 14", "without running")
    assert not strategy.with_suffix(".imported").exists()


# ---- user errors ---------------------------------------------------------------------------------------
BAD_SWEEPS = {
    "protocol is a number": ("{scenario: tiny_cli, strategies: {sgd: }, protocol: 5}", "protocol"),
    "protocol is a list": ("{scenario: tiny_cli, strategies: {sgd: }, protocol: [1, 2]}", "protocol"),
    "protocol is text": ("{scenario: tiny_cli, strategies: {sgd: }, protocol: fast}", "protocol"),
    "negative epochs": ("{scenario: tiny_cli, strategies: {sgd: }, protocol: {epochs: -3}}", "epochs"),
    "a mapping as a value": ("{scenario: tiny_cli, strategies: {sgd: }, protocol: {lr: {a: 1}}}", "lr"),
    "a list as a scenario name": ("{scenario: {name: [1]}, strategies: {sgd: }}", "scenario"),
    "tags are a number": ("{scenario: tiny_cli, strategies: {sgd: }, tags: 5}", "tags"),
    "grid is a number": ("{scenario: tiny_cli, strategies: {ewc: 3}}", "ewc"),
    "strategies is a number": ("{scenario: tiny_cli, strategies: 3}", "strategies"),
    "seeds are text": ("{scenario: tiny_cli, strategies: {sgd: }, seeds: abc}", "seeds"),
    "name is a list": ("{name: [a], scenario: tiny_cli, strategies: {sgd: }}", "name"),
    "select is a list": ("{scenario: tiny_cli, strategies: {sgd: }, select: [1]}", "select"),
    "references are a number": ("{scenario: tiny_cli, strategies: {sgd: }, references: 3}", "references"),
}


@pytest.mark.parametrize("name", list(BAD_SWEEPS))
def test_bad_values_in_a_sweep_file_are_one_line_errors(tmp_path, name):
    text, needle = BAD_SWEEPS[name]
    file = write(tmp_path, text)
    for command in ("sweep", "status"):
        one_line_error(
            invoke(command, file, "--store", tmp_path / "s.db", "--dry-run")
            if command == "sweep"
            else invoke(command, file),
            str(file),
            needle,
        )


def test_binary_and_non_utf8_sweep_files_are_one_line_errors(tmp_path):
    binary = tmp_path / "image.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("scenario: tiny_cli\nstrategies: {sgd: }\ntags: [caf\xe9]\n".encode("latin-1"))
    for file in (binary, latin):
        one_line_error(invoke("status", file), str(file))
        one_line_error(invoke("sweep", file, "--dry-run"), str(file))


def test_a_broken_store_file_is_a_one_line_error(tmp_path):
    store = tmp_path / "broken.db"
    store.write_bytes(b"not a database at all " * 50)
    file = write(tmp_path, "{scenario: tiny_cli, strategies: {sgd: }, protocol: {epochs: 1}}")
    one_line_error(invoke("status", file, "--store", store), "not a")
    one_line_error(invoke("sweep", file, "--store", store, "--workers", 0), "not a")
    one_line_error(invoke("sweep", file, "--store", store, "--dry-run"), "not a")
    one_line_error(invoke("run", "--strategy", "sgd", "--scenario", "tiny_cli", "--store", store), "not a")


def test_a_strategy_file_with_a_syntax_error_names_the_file_and_line(tmp_path):
    strategy = tmp_path / "broken.py"
    strategy.write_text("from cl_bench.strategy import Strategy\n\nclass Broken(Strategy)\n    name = 'x'\n")
    res = invoke("run", "--strategy", f"{strategy}:Broken", "--scenario", "tiny_cli", "--store", tmp_path / "s.db")
    one_line_error(res, f"{strategy}, line 3", "SyntaxError")
    file = write(tmp_path, f'{{scenario: tiny_cli, strategies: {{"{strategy}:Broken": }}}}')
    one_line_error(invoke("sweep", file, "--store", tmp_path / "s.db", "--workers", 0), f"{strategy}, line 3")
    one_line_error(invoke("sweep", file, "--store", tmp_path / "s.db", "--dry-run"), f"{strategy}, line 3")
    failing = tmp_path / "failing.py"
    failing.write_text("import nothing_of_that_name\n")
    one_line_error(
        invoke("run", "--strategy", f"{failing}:X", "--scenario", "tiny_cli", "--store", tmp_path / "s.db"),
        f"{failing}, line 1",
        "ModuleNotFoundError",
    )
