"""`cl-bench bench` (cl_bench/bench.py): a smoke test of the output's structure, on tiny sizes.

No timing is asserted: numbers from a shared test machine mean nothing.
"""

import json

import pytest
import torch
from click.testing import CliRunner

from cl_bench import nets
from cl_bench.cli.bench import bench_command
from cl_bench.registry import get_strategy
from cl_bench.tools.bench import bare_epoch, base_network, synthetic_scenario


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the command sets --threads for the whole process


def test_bench_several_strategies_write_repetitions_medians_and_ratios(tmp_path):
    out = tmp_path / "bench" / "mlp.json"
    result = CliRunner().invoke(
        bench_command,
        [
            "-s",
            "sgd",
            "-s",
            "hat",
            "-s",
            "ewc",
            "--scenario",
            "synthetic-mlp",
            "--samples",
            "96",
            "--reps",
            "2",
            "--warmup",
            "32",
            "--batch-size",
            "32",
            "--eval-batch-size",
            "40",
            "--task",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "torch " + torch.__version__ in result.output and "1 threads" in result.output
    assert "device cpu" in result.output and "train, x" in result.output and "scenario prepared" in result.output
    data = json.loads(out.read_text())
    assert data["environment"]["torch"] == torch.__version__ and data["environment"]["threads"] == 1
    c = data["config"]
    assert c["samples"] == 96 and c["task"] == 1 and c["strategies"] == ["sgd", "hat", "ewc"]
    assert c["hparams"]["hat"]["s_max"] == 400.0 and c["precision"] == "fp32" and not c["channels_last"]
    # HAT's net is its 2x2000 MLP, the baselines' the 3x800 one: each is timed against its own bare loop
    bare_hat, bare_sgd = data["bare_of"]["hat"], data["bare_of"]["sgd"]
    assert bare_hat != bare_sgd and data["bare_of"]["ewc"] == bare_sgd
    assert set(data["train"]) == {"sgd", "hat", "ewc", bare_hat, bare_sgd} == set(data["eval"])
    assert "5,612,020" in bare_hat and "1,925,620" in bare_sgd
    for what in ("train", "eval"):
        for r in data[what].values():
            assert len(r["seconds"]) == 2 and all(s > 0 for s in r["seconds"])
            assert r["median_s"] == pytest.approx(sum(r["seconds"]) / 2)
            assert r["samples_per_s"] == pytest.approx(96 / r["median_s"])
            assert r["s_per_10k"] == pytest.approx(1e4 * r["median_s"] / 96)
            assert len(r["cpu_seconds"]) == 2 and r["median_cpu_s"] == pytest.approx(sum(r["cpu_seconds"]) / 2)
        for name, bare in data["bare_of"].items():
            assert data[f"{what}_ratio"][name] == pytest.approx(
                data[what][name]["median_s"] / data[what][bare]["median_s"]
            )
            assert data[f"{what}_cpu_ratio"][name] == pytest.approx(
                data[what][name]["median_cpu_s"] / data[what][bare]["median_cpu_s"]
            )
    assert data["prepare_s"] >= 0
    assert data["command"].startswith(
        "cl-bench bench --strategy sgd --strategy hat --strategy ewc --scenario synthetic-mlp"
    )
    assert "--channels-last" not in data["command"] and "--precision fp32" in data["command"]
    md = out.with_suffix(".md").read_text()
    assert "| hat `train_epoch` | MLP 5,612,020" in md and "eval s/10k" in md and "vs bare (CPU time)" in md


def test_bench_sgd_on_the_alexnet_options_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "alexnet.json"
    result = CliRunner().invoke(
        bench_command,
        [
            "-s",
            "sgd",
            "-c",
            "synthetic-alexnet",
            "--samples",
            "8",
            "--reps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--channels-last",
            "--precision",
            "bf16",
            "--out",
            str(out),
            "--data-root",
            str(tmp_path / "this-machines-data"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    # the stored command names no folder of this machine: the data root is the reader's own, --out relative
    assert "--data-root" not in data["command"] and str(tmp_path) not in data["command"]
    assert data["command"].endswith("--out alexnet.json") or "--out alexnet.json " in data["command"]
    assert data["config"]["channels_last"] and data["config"]["precision"] == "bf16"
    assert "--channels-last" in data["command"] and "bf16, channels_last" in out.with_suffix(".md").read_text()
    bad = CliRunner().invoke(
        bench_command, ["-s", "hat", "-c", "synthetic-mlp", "--hp", "s_max=0.5", "--samples", "8", "--threads", "1"]
    )
    assert bad.exit_code != 0 and "s_max" in bad.output
    nobody = CliRunner().invoke(
        bench_command, ["-s", "sgd", "-c", "synthetic-mlp", "--hp", "s_max=400", "--samples", "8", "--threads", "1"]
    )
    assert nobody.exit_code != 0 and "no benchmarked strategy has" in nobody.output
    unknown = CliRunner().invoke(bench_command, ["-s", "nope", "--samples", "8", "--threads", "1"])
    assert unknown.exit_code != 0 and "unknown strategy" in unknown.output
    cuda = CliRunner().invoke(bench_command, ["--device", "cuda:7", "--samples", "8", "--threads", "1"])
    assert cuda.exit_code != 0 and "cuda" in cuda.output


def test_bare_loop_trains_the_plain_copy_of_the_strategy_net():
    torch.manual_seed(0)
    sc = synthetic_scenario("synthetic-mlp", 16, n_tasks=2)
    hat = get_strategy("hat")(sc)
    net = base_network(hat)
    assert isinstance(net, nets.MLP) and net is hat.model.net
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    bare_epoch(net, x, y, 1, 8, 0.05, torch.Generator().manual_seed(0))
    changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters())]
    assert changed[0] and changed[-1]  # body and head 1 moved: it trained
