"""Sweep workers never outlive their driver, even one killed while its workers are still starting."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import requires_mnist

ROOT = Path(__file__).resolve().parents[2]
CL_BENCH = Path(sys.executable).with_name("cl-bench")
SWEEP = """
scenario: {name: split_mnist, max_train_per_task: 20, tasks: [0]}
strategies: {sgd: }
seeds: [0, 1, 2, 3]
protocol: {preset: quick, epochs: 1}
"""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def cmdline(pid: int) -> bytes:
    """A process's command line; empty once it has exited (a short-lived child may go between listing and reading)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
@requires_mnist
def test_workers_exit_when_the_driver_is_killed_while_they_start(tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(SWEEP)
    driver = subprocess.Popen(
        [
            str(CL_BENCH),
            "sweep",
            str(file),
            "--store",
            str(tmp_path / "runs.db"),
            "--workers",
            "2",
            "--threads",
            "1",
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and driver.poll() is None:
            workers = [p for p in children(driver.pid) if b"spawn_main" in cmdline(p)]
            if workers:  # a worker exists but is still importing: the driver dies now
                break
            time.sleep(0.02)
        else:
            pytest.fail("the sweep never started a worker")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 30  # a worker still starting needs a few seconds to notice
        while group_alive(driver.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not group_alive(driver.pid), "a worker outlived its killed driver"
    finally:
        if group_alive(driver.pid):
            os.killpg(driver.pid, signal.SIGKILL)
