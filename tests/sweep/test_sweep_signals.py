"""A sweep driver stops cleanly on SIGTERM (what SLURM and `kill` send) as on Ctrl-C, and prints batch-log
lines (no control characters) when stderr is not a terminal."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import make_scenario

from cl_bench.registry import register_scenario
from cl_bench.store import Store

HERE = Path(__file__).resolve().parent


@register_scenario("tiny_signals", "2 synthetic tasks (tests only; the driver process imports this module)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, seed=seed)


WAITS = '''
import time
from pathlib import Path
from cl_bench.strategy import Strategy


class Waits(Strategy):
    """Seed 1 waits in its second task until the file `go` exists; the others run through."""
    name = "waits"
    keeps = ()

    def before_task(self, task):
        super().before_task(task)
        if getattr(task, "index", task) == 1 and self.scenario.seed == 1:
            here = Path(__file__).parent
            (here / "waiting").touch()
            deadline = time.time() + 60
            while not (here / "go").exists() and time.time() < deadline:
                time.sleep(0.1)
'''


def test_sigterm_stops_a_local_sweep_cleanly_and_a_rerun_finishes_it(tmp_path):
    (tmp_path / "waits.py").write_text(WAITS)
    file = tmp_path / "sweep.yaml"
    file.write_text(
        textwrap.dedent(f"""
        scenario: tiny_signals
        strategies: {{"{tmp_path / "waits.py"}:Waits": }}
        seeds: [0, 1, 2]
        protocol: {{preset: quick, epochs: 1}}
    """)
    )
    code = "import test_sweep_signals; from cl_bench.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    cmd = [sys.executable, "-c", code, "sweep", str(file), "--store", str(tmp_path / "runs.db"), "--workers", "1"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "waiting").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "waiting").exists(), "seed 1 never reached its second task"
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert "interrupted: runs in flight stop" in err and "Traceback" not in err
    assert "\r" not in err and "\x1b" not in err  # stderr is a pipe: plain lines only
    assert "finished: " in err and "[1/3 done, 0 failed" in err  # seed 0's batch-log line, with the counts
    assert [r.seed for r in Store(tmp_path / "runs.db").query()] == [0]
    (tmp_path / "go").touch()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed: " in again.stderr and "after task 1 of 2" in again.stderr  # seed 1, from its checkpoint
    assert sorted(r.seed for r in Store(tmp_path / "runs.db").query()) == [0, 1, 2]
