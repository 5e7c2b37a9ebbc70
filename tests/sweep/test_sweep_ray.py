"""The Ray backend: the same sweep on a local Ray gives the same store as the local backend."""

import sys
import textwrap

import numpy as np
import pytest
from conftest import requires_mnist

from cl_bench.store import Store
from cl_bench.sweep import load_sweep, run_sweep

ray = pytest.importorskip("ray")

SWEEP = """
name: ray-test
scenario: {name: split_mnist, max_train_per_task: 100}
strategies: {sgd: }
seeds: [0, 1]
protocol: {preset: quick, epochs: 1, lr: [0.05, 1.0e+30]}   # lr 1e30 diverges: stored as failed
"""


def test_core_does_not_import_ray():
    import subprocess

    code = "import cl_bench.cli, cl_bench.sweep, sys; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@requires_mnist
@pytest.mark.slow
def test_ray_sweep_writes_the_same_records_on_the_driver(tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(textwrap.dedent(SWEEP))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcomes = run_sweep(load_sweep(file), tmp_path / "ray.db", backend="ray", threads=1, progress=False)
        assert ray.is_initialized()  # a session it did not start is left running
    finally:
        ray.shutdown()
    assert sorted(o.status for o in outcomes) == ["failed", "failed", "finished", "finished"]
    run_sweep(load_sweep(file), tmp_path / "local.db", workers=0, threads=1, progress=False)
    on_ray = {r.run_id: r for r in Store(tmp_path / "ray.db").query()}
    local = {r.run_id: r for r in Store(tmp_path / "local.db").query()}
    assert sorted(on_ray) == sorted(local)
    for run_id, rec in local.items():
        assert on_ray[run_id].status == rec.status
        if rec.status == "finished":
            np.testing.assert_array_equal(on_ray[run_id].accuracy, rec.accuracy)
        else:
            assert on_ray[run_id].error.startswith("diverged")
    assert not (tmp_path / "ray.db.checkpoints").exists()
