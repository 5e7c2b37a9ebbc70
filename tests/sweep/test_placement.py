"""Sweep workers placed on devices: devices x workers per device -> slots, each worker pinned to its
slot's device. Tested with fake devices on CPU (the placement, not the kernels)."""

import textwrap

import pytest
import torch
from click.testing import CliRunner
from conftest import requires_mnist

import cl_bench.sweep.placement as placement
from cl_bench.cli import main
from cl_bench.loggers import log_dir
from cl_bench.store import Store
from cl_bench.store.claims import live_claims
from cl_bench.sweep import (
    PlacementError,
    Scheduler,
    Slot,
    WorkerStartError,
    load_sweep,
    parse_devices,
    place_workers,
    run_sweep,
)
from cl_bench.sweep.local import _pin, run_local
from cl_bench.sweep.ray_backend import ray_gpus


@pytest.fixture
def two_gpus(monkeypatch):
    """torch sees two CUDA devices (only resolve_device's checks ask; nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ---- the placement function ------------------------------------------------------------------------------
def test_devices_times_workers_per_device_round_robin(two_gpus):
    slots = place_workers(devices=["cuda:0", "cuda:1"], workers_per_device=3, cores=12)
    assert [s.index for s in slots] == list(range(6))
    assert [s.device for s in slots] == ["cuda:0", "cuda:1"] * 3  # the first runs spread over the GPUs
    assert [s.label for s in slots] == ["cuda:0", "cuda:1"] * 3
    assert {s.threads for s in slots} == {2}  # the cores shared out over the 6 workers
    assert [s.cuda_index for s in slots] == [0, 1] * 3
    assert slots[3].name == "cuda:1 #4"
    assert [
        s.threads for s in place_workers(devices=["cuda:0", "cuda:1"], workers_per_device=3, threads=1, cores=12)
    ] == [1] * 6
    assert [s.device for s in place_workers(devices=["cuda:1"], cores=4)] == ["cuda:1"]  # 1 per device


def test_workers_per_device_on_the_one_device(two_gpus):
    slots = place_workers(device="cuda", workers_per_device=4, cores=8)
    assert [(s.device, s.threads) for s in slots] == [("cuda", 2)] * 4
    assert slots[0].cuda_index is None  # "cuda": the current device, left as it is
    assert [s.device for s in place_workers(workers_per_device=2, cores=2)] == ["cpu", "cpu"]


def test_without_devices_the_cpu_split_of_before():
    assert [(s.device, s.threads) for s in place_workers(cores=4)] == [("cpu", 1)] * 4  # one per core
    assert [(s.device, s.threads) for s in place_workers(workers=2, cores=4)] == [("cpu", 2)] * 2
    assert [(s.device, s.threads) for s in place_workers(workers=3, threads=2, cores=4)] == [("cpu", 2)] * 3
    [inline] = place_workers(workers=0, cores=4)  # in the calling process: every core
    assert (inline.device, inline.threads, inline.cuda_index) == ("cpu", 4, None)
    assert place_workers(workers=2, device="cpu", cores=4)[1] == Slot(1, "cpu", 2, "cpu")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"devices": ["cuda:0", "cuda:2"]}, "'cuda:2': only 2 CUDA device"),
        ({"devices": ["tpu:0"]}, "bad device 'tpu:0'"),
        ({"devices": ["mps"]}, "'mps' is not supported"),
        ({"device": "cuda:5"}, "'cuda:5': only 2 CUDA device"),
        ({"devices": ["cuda:0"], "device": "cuda:1"}, "give --device or --devices, not both"),
        ({"devices": ["cuda:0"], "workers": 4}, "give --workers-per-device instead of --workers"),
        ({"workers": 2, "workers_per_device": 2}, "give --workers or --workers-per-device, not both"),
        ({"devices": ["cuda:0", "cuda:0"]}, "lists a device twice (cuda:0)"),
        ({"devices": []}, "at least one device"),
        ({"devices": ["cuda:0"], "workers_per_device": 0}, "--workers-per-device must be >= 1"),
        ({"workers": -1}, "--workers must be >= 0"),
        ({"threads": 0}, "--threads must be >= 1"),
    ],
)
def test_bad_placements_are_clear_errors(two_gpus, kwargs, message):
    with pytest.raises(ValueError) as e:
        place_workers(cores=4, **kwargs)
    assert message in str(e.value)


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        place_workers(devices=["cuda:0", "cuda:1"], workers_per_device=2)


def test_parse_devices():
    assert parse_devices(None) is None
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    for bad in ("", " , ", "cuda:0,,cuda:1"):
        with pytest.raises(PlacementError):
            parse_devices(bad)


def test_a_worker_is_pinned_to_its_slot(monkeypatch):
    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    threads = torch.get_num_threads()
    try:
        _pin(Slot(0, "cuda:1", 3, "cuda:1"))
        assert made_current == [1] and torch.get_num_threads() == 3
        _pin(Slot(0, "cpu", 2, "cpu"))
        assert made_current == [1] and torch.get_num_threads() == 2  # a CPU slot leaves CUDA alone
    finally:
        torch.set_num_threads(threads)


def test_ray_asks_a_fraction_of_a_gpu_per_run():
    assert ray_gpus("cuda", 4) == 0.25 and ray_gpus("cuda:0", 1) == 1
    assert ray_gpus("cpu", 4) == 0


def test_ray_refuses_devices_before_anything_runs(tmp_path):
    file = tmp_path / "s.yaml"
    file.write_text("{scenario: split_mnist, strategies: {sgd: }}")
    with pytest.raises(PlacementError, match="Ray places each run on a GPU itself"):
        run_sweep(load_sweep(file), tmp_path / "runs.db", backend="ray", devices=["cuda:0"])
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "cpu", "--devices", "cpu"], "give --device or --devices, not both"),
        (["--workers", "2", "--workers-per-device", "2"], "give --workers or --workers-per-device, not both"),
        (["--devices", "cpu,cpu"], "lists a device twice"),
        (["--devices", "gpu0"], "bad device 'gpu0'"),
    ],
)
def test_cli_placement_errors_are_one_line(tmp_path, args, message):
    file = tmp_path / "s.yaml"
    file.write_text("{scenario: split_mnist, strategies: {sgd: }}")
    res = CliRunner().invoke(main, ["sweep", str(file), "--store", str(tmp_path / "runs.db"), *args])
    assert res.exit_code == 1 and "Error: " in res.output and "Traceback" not in res.output, res.output
    assert message in res.output, res.output
    assert not (tmp_path / "runs.db").exists()


# ---- end to end: worker processes on fake devices ------------------------------------------------------
RECORDER = '''
import os
import torch
from pathlib import Path
from cl_bench.strategy import Strategy
from cl_bench.sweep.local import worker_slot


class WhereAmI(Strategy):
    """SGD that notes which worker slot ran it, in which process, with how many threads."""
    name = "where_am_i"

    def before_task(self, t):
        slot = worker_slot()
        with open(Path(__file__).with_suffix(".log"), "a") as f:
            f.write(f"{slot.label} {os.getpid()} {torch.get_num_threads()} {self.device}\\n")
        super().before_task(t)
'''


@requires_mnist
@pytest.mark.slow
def test_local_sweep_spreads_runs_over_fake_devices_each_run_once(tmp_path, monkeypatch):
    # fake:0 and fake:1 are CPU aliases: the driver resolves them to cpu, the labels say which slot ran
    monkeypatch.setattr(placement, "resolve_device", lambda name: torch.device("cpu"))
    strategy = tmp_path / "where.py"
    strategy.write_text(RECORDER)
    file = tmp_path / "sweep.yaml"
    file.write_text(
        textwrap.dedent(f"""
        scenario: {{name: split_mnist, max_train_per_task: 20, tasks: [0]}}
        strategies: {{"{strategy}:WhereAmI": }}
        seeds: [0, 1, 2, 3]
        protocol: {{preset: quick, epochs: 1}}
        loggers: [jsonl]
    """)
    )
    store = tmp_path / "runs.db"
    outcomes = run_sweep(
        load_sweep(file), store, devices=["fake:0", "fake:1"], workers_per_device=1, threads=1, progress=False
    )
    assert sorted(o.status for o in outcomes) == ["finished"] * 4
    assert {o.worker for o in outcomes} == {"fake:0 #1", "fake:1 #2"}  # spread over both slots
    lines = [line.split() for line in strategy.with_suffix(".log").read_text().splitlines()]
    assert len(lines) == 4  # every run executed once (one task each)
    by_slot = {}
    for label, pid, threads, device in lines:
        by_slot.setdefault(label, set()).add(pid)
        assert (threads, device) == ("1", "cpu")
    assert set(by_slot) == {"fake:0", "fake:1"}
    assert all(len(pids) == 1 for pids in by_slot.values())  # each slot is one pinned process
    assert by_slot["fake:0"] != by_slot["fake:1"]
    runs = {r.run_id for r in Store(store).query()}
    assert len(runs) == 4
    assert {p.stem for p in log_dir(store).glob("*.jsonl")} == runs  # one log file per run, by its worker


@pytest.mark.slow
def test_a_worker_that_cannot_start_on_its_device_stops_the_sweep_and_frees_its_claims(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: there, making cuda:0 current fails in the worker")
    file = tmp_path / "s.yaml"
    file.write_text("{scenario: split_mnist, strategies: {sgd: }}")
    scheduler = Scheduler(load_sweep(file), Store(tmp_path / "runs.db"))
    with pytest.raises(WorkerStartError, match="gpu #1 died 3 times while starting"):
        run_local(scheduler, [Slot(0, "cuda:0", 1, "gpu")], None, checkpoints=False, progress=False)
    assert live_claims(scheduler.store) == []


def test_the_default_split_uses_the_free_cores_only(monkeypatch):
    import cl_bench.sweep.placement as placement

    monkeypatch.setattr(placement, "free_cores", lambda: 1)  # 2 cores, one kept busy by another process
    assert [(s.device, s.threads) for s in place_workers()] == [("cpu", 1)]  # workers x threads <= free
    assert [s.threads for s in place_workers(workers=0)] == [1]
    assert [s.threads for s in place_workers(workers=2, threads=2)] == [2, 2]  # what the user asks wins
