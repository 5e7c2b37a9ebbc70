"""Claims: one process at a time runs a configuration; dead claims are taken over; two sweeps on one
store run each configuration exactly once."""

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_scenario, requires_mnist

from cl_bench.cli import main
from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig, execute
from cl_bench.store import Store, claims
from cl_bench.store.claims import Owner, RunBusy
from cl_bench.trainer import Protocol

ROOT = Path(__file__).resolve().parents[1]
CL_BENCH = Path(sys.executable).with_name("cl-bench")


@register_scenario("tiny_claims", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, n_train=45, n_test=30, seed=seed)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claim_is_exclusive_renewable_and_released(tmp_path):
    store = Store(tmp_path / "s.db")
    a, b = Owner.here(), Owner.here()
    assert claims.claim(store, "run", a) is None
    held = claims.claim(store, "run", b)
    assert held is not None and held.owner == a.token and held.pid == os.getpid()
    assert claims.claim(store, "run", a) is None  # its own: renewed
    claims.release(store, "run", b)  # not b's to release
    assert claims.claim(store, "run", b) is not None
    assert [c.run_id for c in claims.live_claims(store)] == ["run"]
    claims.release(store, "run", a)
    assert claims.claim(store, "run", b) is None


def test_dead_claims_are_taken_over(tmp_path):
    store = Store(tmp_path / "s.db")
    me = Owner.here()
    crashed = Owner("crashed", socket.gethostname(), dead_pid())  # kill -9'd on this host: at once
    assert claims.claim(store, "a", crashed) is None
    assert claims.claim(store, "a", me) is None
    elsewhere = Owner("elsewhere", "another-host", 1)  # another host: only once its heartbeat expired
    assert claims.claim(store, "b", elsewhere) is None
    assert claims.claim(store, "b", me) is not None
    assert claims.claim(store, "c", elsewhere, ttl=-1.0) is None
    assert claims.claim(store, "c", me) is None
    claims.heartbeat(store, me, ttl=-1.0)  # as if its heartbeat had stopped long ago: expired
    assert claims.claim(store, "a", elsewhere) is None


def test_the_heartbeat_keeps_claims_alive_and_stops_with_its_block(tmp_path):
    store = Store(tmp_path / "s.db")
    me = Owner.here()
    assert claims.claim(store, "run", me, ttl=0.5) is None
    with claims.Heartbeat(store, me, interval=0.05):
        time.sleep(1.0)
        [held] = claims.live_claims(store)  # renewed for CLAIM_TTL_S by each beat, so not expired
        assert held.expires > time.time() + 60
    claims.heartbeat(store, me, ttl=0.1)
    time.sleep(0.3)
    assert claims.live_claims(store) == []  # no beat since the block ended: expired


def test_a_run_claimed_by_a_live_process_is_not_run_again(tmp_path):
    store = Store(tmp_path / "s.db")
    config = RunConfig("sgd", "tiny_claims", 0, protocol=Protocol(epochs=1))
    other = Owner("other-sweep", socket.gethostname(), os.getppid())  # alive
    assert claims.claim(store, config.run_id(), other) is None
    with pytest.raises(RunBusy, match="being run by another process"):
        execute(config, store)
    assert store.query() == []
    res = CliRunner().invoke(
        main,
        ["run", "--strategy", "sgd", "--scenario", "tiny_claims", "--epochs", "1", "--store", str(tmp_path / "s.db")],
    )
    assert res.exit_code == 1 and "being run by another process" in res.output
    claims.release(store, config.run_id(), other)
    assert execute(config, store).status == "finished"
    assert claims.live_claims(store) == []  # released when it ended


COUNTED = '''
import os
import time
from pathlib import Path
from cl_bench.strategy import Strategy


class Counted(Strategy):
    """Appends its pid and seed to `<this file>.log` each time a run starts."""
    name = "counted"

    def before_task(self, t):
        if t == 0:
            with open(Path(__file__).with_suffix(".log"), "a") as f:
                f.write(f"{os.getpid()} {self.scenario.seed}\\n")
            time.sleep(0.3)  # long enough for the other sweep to reach the same run
'''


@requires_mnist
def test_two_sweeps_on_one_store_run_each_configuration_exactly_once(tmp_path):
    strategy = tmp_path / "counted.py"
    strategy.write_text(COUNTED)
    file = tmp_path / "sweep.yaml"
    file.write_text(
        textwrap.dedent(f"""
        name: twice
        scenario: {{name: split_mnist, max_train_per_task: 20, tasks: [0]}}
        strategies: {{"{strategy}:Counted": }}
        seeds: [0, 1, 2, 3, 4, 5]
        protocol: {{preset: quick, epochs: 1}}
    """)
    )
    store = tmp_path / "runs.db"
    Store(store)
    env = {**os.environ, "CL_BENCH_DATA": os.environ["CL_BENCH_DATA"]}
    cmd = [str(CL_BENCH), "sweep", str(file), "--store", str(store), "--threads", "1", "--quiet"]
    sweeps = [
        subprocess.Popen(
            [*cmd, "--workers", workers], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for workers in ("1", "0")
    ]
    outputs = [p.communicate(timeout=300)[0] for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], outputs
    starts = strategy.with_suffix(".log").read_text().split()
    seeds = sorted(int(s) for s in starts[1::2])
    assert seeds == [0, 1, 2, 3, 4, 5], outputs  # each configuration executed exactly once
    assert len(Store.open_read(store).query("status = 'finished'")) == 6
    done = [
        int(line.split(": ")[1].split()[0])
        for out in outputs
        for line in out.splitlines()
        if line.startswith("sweep twice: ") and "run(s) finished" in line
    ]
    assert sum(done) == 6, outputs
    assert claims.live_claims(Store.open_read(store)) == []
