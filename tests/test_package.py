"""Packaging: strategies/ and benchmarks/ install inside cl_bench, never as top-level packages."""
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cl_bench.benchmarks
import cl_bench.strategies

ROOT = Path(__file__).resolve().parents[1]


def test_installed_names():
    assert Path(cl_bench.strategies.__file__).parent == ROOT / "strategies"
    assert Path(cl_bench.benchmarks.__file__).parent == ROOT / "benchmarks"
    for top_level in ("strategies", "benchmarks"):
        spec = importlib.util.find_spec(top_level)
        assert spec is None or ROOT not in Path(spec.origin or "").parents, top_level


@pytest.mark.slow
def test_wheel_maps_the_folders_into_cl_bench(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("cl_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cl_bench/strategies/sgd.py" in names and "cl_bench/benchmarks/mnist.py" in names
    assert not [n for n in names if n.startswith(("strategies/", "benchmarks/", "tests/"))]
