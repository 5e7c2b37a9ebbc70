"""examples/quickstart.ipynb runs top to bottom (nbclient), at its own reduced scale, in a fresh folder."""

import importlib.util
from pathlib import Path

import pytest

from cl_bench.benchmarks.catalogue import locate
from cl_bench.data import data_root

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"

pytestmark = [
    pytest.mark.slow,  # ~20 s: a kernel, four runs and a small sweep on MNIST
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("nbclient", "nbformat", "ipykernel")),
        reason="nbclient, nbformat or ipykernel not installed (the `docs` extra)",
    ),
    pytest.mark.skipif(locate("mnist", data_root()) is None, reason="MNIST not under the data root ($CL_BENCH_DATA)"),
]


def test_quickstart_runs(tmp_path, monkeypatch):
    import nbformat  # optional: the `docs` extra
    from nbclient import NotebookClient

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment, data root included
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "quickstart.db").is_file()  # the store is written where the notebook runs
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "hat: finished" in text and "rho<=T" in text
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures
