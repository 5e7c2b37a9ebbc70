"""The thread policy (cl_bench.threads): the free cores by default, --threads always wins, a busy
machine said once on stderr. The machine's state is set through what the module reads."""

import os

import pytest
import torch

from cl_bench import threads


@pytest.fixture
def machine(monkeypatch):
    """Set the usable cores and the 1-minute load average the policy sees."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(threads, "_said", False)
    before = torch.get_num_threads()

    def set_(cores: int, load: float):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))

    yield set_
    torch.set_num_threads(before)


def test_an_idle_machine_uses_every_usable_core(machine, capsys):
    machine(4, 0.2)
    assert threads.set_run_threads(None) == 4 == torch.get_num_threads()
    assert capsys.readouterr().err == ""


def test_a_busy_machine_leaves_the_busy_cores_and_says_so_once(machine, capsys):
    machine(2, 1.02)  # one busy process on 2 cores
    assert threads.set_run_threads(None) == 1 == torch.get_num_threads()
    assert threads.set_run_threads(None) == 1
    err = capsys.readouterr().err
    assert err.count("busy") == 1 and "load average 1.02 on 2 cores" in err and "--threads" in err
    machine(2, 7.0)  # overloaded: still one thread
    assert threads.set_run_threads(None) == 1


def test_threads_requested_win_and_bad_ones_name_the_flag(machine, monkeypatch, capsys):
    machine(2, 1.5)
    assert threads.set_run_threads(2) == 2 == torch.get_num_threads()
    assert capsys.readouterr().err == ""  # the user chose: no note
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="--threads"):
            threads.set_run_threads(bad)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.set_run_threads(None) == 2  # an explicit OMP_NUM_THREADS is a choice too


def test_a_slurm_task_counts_its_own_cpus(machine, monkeypatch):
    machine(16, 0.0)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert threads.usable_cores() == 3 and threads.set_run_threads(None) == 3
