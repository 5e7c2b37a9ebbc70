"""Packaging: strategies/ and benchmarks/ install inside cl_bench, never as top-level packages."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cl_bench.benchmarks
import cl_bench.strategies

ROOT = Path(__file__).resolve().parents[1]


def test_installed_names(tmp_path):
    assert Path(cl_bench.strategies.__file__).parent == ROOT / "strategies"
    assert Path(cl_bench.benchmarks.__file__).parent == ROOT / "benchmarks"
    # From another folder (the repo root itself is on sys.path under `python -m pytest`), the install
    # provides cl_bench.strategies but no top-level `strategies` or `benchmarks`.
    probe = (
        "import importlib.util as u; import cl_bench.strategies, cl_bench.benchmarks; "
        "print(u.find_spec('strategies'), u.find_spec('benchmarks'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.stdout.split() == ["None", "None"], out.stdout


@pytest.mark.slow
def test_wheel_maps_the_folders_into_cl_bench(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("cl_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cl_bench/strategies/sgd.py" in names and "cl_bench/benchmarks/mnist.py" in names
    # `cl-bench sweep mini` (and smoke) work from an installed wheel
    assert {"cl_bench/presets/mini.yaml", "cl_bench/presets/smoke.yaml"} <= set(names)
    assert not [n for n in names if n.startswith(("strategies/", "benchmarks/", "tests/"))]
