"""The devices the tests of this folder run on: the CPU always, and the device under test
(``$CL_BENCH_TEST_DEVICE``, default ``cuda``; ``cl-bench doctor --device`` sets it) when torch sees a
GPU; without one those cases are skipped with the reason.

A module, not a conftest.py: a second conftest.py would take the name ``conftest`` that the tests'
``from conftest import ...`` read (tests/conftest.py).
"""

import os

import pytest
import torch

UNDER_TEST = os.environ.get("CL_BENCH_TEST_DEVICE") or "cuda"
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(
    not HAS_CUDA, reason=f"no CUDA GPU: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees none"
)
ON_GPU = torch.device(UNDER_TEST).type == "cuda"  # False: only the CPU is under test (doctor --device cpu)
GPU = UNDER_TEST if ON_GPU else "cuda"  # the CUDA device of the CUDA-only tests

# Every test parametrised over DEVICES runs on the CPU; on the GPU too where there is one.
DEVICES = [pytest.param("cpu", id="cpu")] + ([pytest.param(GPU, id="cuda", marks=needs_cuda)] if ON_GPU else [])

# (device a checkpoint is written on, device it is resumed on)
DEVICE_PAIRS = [pytest.param("cpu", "cpu", id="cpu-cpu")] + (
    [
        pytest.param(a, b, id=f"{torch.device(a).type}-{torch.device(b).type}", marks=needs_cuda)
        for a, b in ((GPU, "cpu"), ("cpu", GPU), (GPU, GPU))
    ]
    if ON_GPU
    else []
)
