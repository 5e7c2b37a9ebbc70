"""`cl-bench bench` (cl_bench/bench.py): a smoke test of the output's structure, on tiny sizes.

No timing is asserted: numbers from a shared test machine mean nothing.
"""
import json

import pytest
import torch
from click.testing import CliRunner

from cl_bench import nets
from cl_bench.bench import base_network, bench_command, bare_epoch, synthetic_scenario
from cl_bench.strategy import get_strategy


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the command sets --threads for the whole process


def test_bench_hat_writes_every_repetition_median_and_ratio(tmp_path):
    out = tmp_path / "bench" / "hat.json"
    result = CliRunner().invoke(bench_command, [
        "--strategy", "hat", "--scenario", "synthetic-mlp", "--samples", "96", "--reps", "2",
        "--warmup", "32", "--batch-size", "32", "--task", "1", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "torch " + torch.__version__ in result.output and "1 threads" in result.output
    assert "device cpu" in result.output and "ratio hat / bare" in result.output
    data = json.loads(out.read_text())
    assert data["environment"]["torch"] == torch.__version__ and data["environment"]["threads"] == 1
    assert data["config"]["samples"] == 96 and data["config"]["task"] == 1
    assert data["config"]["network"] == "MLP" and data["config"]["hparams"]["s_max"] == 400.0
    # HAT's net is its 2x2000 MLP; the bare loop trains the same one, without the embeddings
    assert data["config"]["parameters"]["strategy"] - data["config"]["parameters"]["bare"] == 2 * 4000
    for key in ("strategy", "bare"):
        r = data[key]
        assert len(r["seconds"]) == 2 and all(s > 0 for s in r["seconds"])
        assert r["median_s"] == pytest.approx(sorted(r["seconds"])[0] / 2 + sorted(r["seconds"])[1] / 2)
        assert r["samples_per_s"] == pytest.approx(96 / r["median_s"])
        assert r["s_per_10k"] == pytest.approx(1e4 * r["median_s"] / 96)
    assert data["ratio"] == pytest.approx(data["strategy"]["median_s"] / data["bare"]["median_s"])
    assert data["command"].startswith("cl-bench bench --strategy hat --scenario synthetic-mlp")
    md = out.with_suffix(".md").read_text()
    assert "bare PyTorch loop" in md and "rep 2 (s)" in md and "Ratio of medians" in md


def test_bench_sgd_on_the_alexnet_and_bad_input(tmp_path):
    result = CliRunner().invoke(bench_command, [
        "-s", "sgd", "-c", "synthetic-alexnet", "--samples", "8", "--reps", "1", "--warmup", "0",
        "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "sgd train_epoch" in result.output and "bare PyTorch loop" in result.output
    bad = CliRunner().invoke(bench_command, ["-s", "hat", "-c", "synthetic-mlp", "--hp", "s_max=0.5",
                                             "--samples", "8", "--threads", "1"])
    assert bad.exit_code != 0 and "s_max" in bad.output
    unknown = CliRunner().invoke(bench_command, ["-s", "nope", "--samples", "8", "--threads", "1"])
    assert unknown.exit_code != 0 and "unknown strategy" in unknown.output


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
