"""The SLURM options (sweep file `slurm:` key and `cl-bench sweep` flags): every bad value is a one-line
error naming the key or flag, before anything is submitted; a missing extra is one line with the install
command. No cluster needed."""

import importlib.util
import textwrap

import pytest
import yaml
from click.testing import CliRunner
from conftest import make_scenario

import cl_bench.loggers.base as logger_base
from cl_bench.cli.sweep import sweep_command
from cl_bench.registry import register_scenario
from cl_bench.sweep import SweepError, parse_sweep
from cl_bench.sweep.slurm_options import SlurmOptions, parse_time


@register_scenario("tiny_slurm_options", "1 synthetic task (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=1, seed=seed)


def sweep_with(slurm: str):
    text = f"{{scenario: tiny_slurm_options, strategies: {{sgd: }}, slurm: {slurm}}}"
    return parse_sweep(yaml.safe_load(text), source="s.yaml")


def test_the_sweep_files_slurm_key_is_parsed_and_flags_override_it():
    sweep = sweep_with('{partition: gpu, time: "1-02:00:00", cpus: 4, gpus: 1, mem: 16G, max_parallel: 8, '
                       'sbatch: {qos: high}, setup: "module load cuda"}')  # fmt: skip
    assert sweep.slurm == SlurmOptions("gpu", 26 * 60, 4, 1, "16G", 8, (("qos", "high"),), ("module load cuda",))
    merged = sweep.slurm.merged(partition="debug", time="90", max_parallel=None, sbatch=("account=lab",))
    assert (merged.partition, merged.time, merged.max_parallel) == ("debug", 90, 8)
    assert merged.sbatch == (("account", "lab"),) and merged.cpus == 4
    assert [parse_time(t, "t") for t in (90, "45:30", "02:00:00", "2-00")] == [90, 46, 120, 2880]


@pytest.mark.parametrize(
    ("slurm", "message"),
    [
        ("[gpu]", "s.yaml: slurm: expected a mapping"),
        ("{partiton: gpu}", "unknown key(s) partiton; accepted: partition, time"),
        ("{time: soon}", "s.yaml: slurm.time: a time limit is minutes or D-HH:MM:SS"),
        ("{time: 0}", "slurm.time: the time limit must be at least one minute"),
        ("{cpus: 0}", "slurm.cpus: expected an integer >= 1"),
        ("{gpus: -1}", "slurm.gpus: expected an integer >= 0"),
        ("{max_parallel: two}", "slurm.max_parallel: expected an integer >= 1"),
        ("{mem: lots}", "slurm.mem: expected a memory size like 16G"),
        ("{sbatch: {array: 0-3}}", "--array is set by cl-bench"),
        ("{sbatch: {'bad key': 1}}", "'bad key' is not an sbatch option name"),
        ("{setup: [1, 2]}", "slurm.setup: expected shell lines"),
    ],
)
def test_a_bad_slurm_key_is_a_clear_error(slurm, message):
    with pytest.raises(SweepError) as error:
        sweep_with(slurm)
    assert message in str(error.value) and "\n" not in str(error.value)


def write(tmp_path, slurm="{}"):
    file = tmp_path / "s.yaml"
    file.write_text(textwrap.dedent(f"{{scenario: tiny_slurm_options, strategies: {{sgd: }}, slurm: {slurm}}}"))
    return str(file)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "slurm", "--time", "soon"], "--time: a time limit is minutes or D-HH:MM:SS"),
        (["--backend", "slurm", "--max-parallel", "0"], "--max-parallel: expected an integer >= 1"),
        (["--backend", "slurm", "--cpus", "x"], "--cpus: expected an integer >= 1"),
        (["--backend", "slurm", "--sbatch", "output=x"], "--sbatch: --output is set by cl-bench"),
        (["--backend", "slurm", "--workers", "2"], "give --max-parallel (tasks at once), --cpus and --gpus"),
        (["--partition", "gpu"], "--partition only apply to --backend slurm (got --backend local)"),
    ],
)
def test_bad_slurm_flags_are_one_line_errors_before_anything_runs(tmp_path, args, message):
    res = CliRunner().invoke(sweep_command, [write(tmp_path), "--store", str(tmp_path / "r.db"), *args])
    assert res.exit_code == 1 and message in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.db.slurm").exists()  # nothing submitted


def test_a_missing_extra_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        logger_base.importlib.util, "find_spec", lambda n, *a: None if n in ("submitit", "ray") else real(n, *a)
    )
    for backend, extra, package in (("slurm", "slurm", "submitit"), ("ray", "ray", "ray")):
        res = CliRunner().invoke(
            sweep_command, [write(tmp_path), "--store", str(tmp_path / "r.db"), "--backend", backend]
        )
        assert res.exit_code == 1, res.output
        assert res.output.strip().splitlines() == [
            f"Error: --backend {backend} needs the {package} package, which is not installed: "
            f"{logger_base.install_command(extra)}"
        ]
