"""How many intra-op threads torch uses for a run: from the cores actually free, not every core.

torch's default is one OpenMP thread per core. Beside other busy processes those threads spin-wait for
each other: measured on a 2-core machine beside one busy process, a small run took 19x longer with 2
threads than with 1 (reports/bench/threads.md). ``set_run_threads`` therefore counts the cores this
process may use (``os.sched_getaffinity``; a SLURM task's ``SLURM_CPUS_PER_TASK``), takes away the
ones the load average says are busy, and uses the rest (at least one). A thread count the user chose
always wins: ``--threads`` (``requested``), else ``OMP_NUM_THREADS`` when set. A busy machine is said
once per process on stderr.
"""

from __future__ import annotations

import os
import sys

import torch

_said = False  # the busy-machine note is printed once per process


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, within a SLURM task its CPUs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    return max(1, cores)


def busy_cores() -> int:
    """Cores other processes keep busy, from the 1-minute load average (0 where there is none)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0
    return max(0, round(load))


def free_cores() -> int:
    """Usable cores not kept busy by other processes; at least 1."""
    return max(1, usable_cores() - busy_cores())


def _omp_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def set_run_threads(requested: int | None) -> int:
    """Set torch's intra-op threads for a run and return the count. ``requested`` (``--threads``) wins;
    else ``OMP_NUM_THREADS`` if set; else the free cores (``free_cores``), with a note on stderr, once
    per process, when that is fewer than the usable cores. ``requested`` <= 0 is a ValueError."""
    global _said
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested <= 0:
            raise ValueError(f"--threads must be an integer >= 1, got {requested!r}")
        threads = requested
    elif (omp := _omp_threads()) is not None:
        threads = omp
    else:
        cores, threads = usable_cores(), free_cores()
        if threads < cores and not _said:
            _said = True
            print(
                f"cl-bench: this machine is busy (load average {os.getloadavg()[0]:.2f} on {cores} cores): "
                f"using {threads} torch thread(s); --threads N chooses",
                file=sys.stderr,
                flush=True,
            )
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
