"""No host-device synchronisation per training step on CUDA (skipped without a GPU).

A sync stalls the Python thread until the GPU has caught up, so the next kernels cannot be queued
while the current ones run: one per step costs a large part of a small network's throughput.

- Between the first step's ``before_batch`` and the last step's ``after_step`` of an epoch, every
  operation must be sync-free: torch's sync debug mode is "error" in that window. The epoch's two
  syncs lie outside it (the shuffled order copied to the GPU, the mean loss read back).
- Over whole epochs, the number of syncs must not grow with the number of batches.

HAT samples its capacity usage (Fig. 5) ten times per epoch; its mask counts stay on the device and
are read once per epoch (strategies/hat.py ``after_epoch``), so HAT is held to the same rules.
"""

import warnings

import pytest
import torch
from device_params import GPU, needs_cuda

from cl_bench.tools import device_checks as dc
from cl_bench.trainer import Trainer

pytestmark = needs_cuda
STRATEGIES = ["sgd", "ewc", "hat"]
PROTOCOL = dc.TINY_PROTOCOL.replace(batch_size=16)


def on_task_1(strategy, n_train):
    """``strategy`` on the GPU with task 0 finished untrained (EWC's penalty and HAT's masks are on)."""
    sc = dc.tiny_scenario(n_train=n_train).to(GPU)
    algo = dc.build(strategy, sc, torch.device(GPU), dropout=True)
    algo.before_task(0)
    algo.after_task(0)
    algo.before_task(1)
    trainer = Trainer(sc, PROTOCOL)
    return algo, trainer, trainer.data(1, "train")


def sync_errors_inside_the_steps(monkeypatch, algo):
    """Sync debug mode "error" from the first step's before_batch to the last step's after_step."""
    before, after, where = algo.before_batch, algo.after_step, {}

    def before_batch(info):
        before(info)
        where["info"] = info
        if info.index == 0:
            torch.cuda.set_sync_debug_mode("error")

    def after_step(t):
        after(t)
        if where["info"].index == where["info"].n_batches - 1:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(algo, "before_batch", before_batch)
    monkeypatch.setattr(algo, "after_step", after_step)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_sync_inside_an_epochs_steps(monkeypatch, strategy):
    algo, trainer, data = on_task_1(strategy, 160)
    trainer.train_epoch(algo, 1, data, 0.05)  # warm-up: allocations, cuBLAS/cuDNN handles
    torch.cuda.synchronize()
    sync_errors_inside_the_steps(monkeypatch, algo)
    try:
        loss = trainer.train_epoch(algo, 1, data, 0.05, epoch=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss > 0


def syncs_in_an_epoch(algo, trainer, data) -> int:
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_epoch(algo, 1, data, 0.05)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_syncs_per_epoch_do_not_grow_with_its_batches(strategy):
    counts = []
    for n_train in (320, 640):  # 20 and 40 batches: HAT samples its capacity 10 times in both
        algo, trainer, data = on_task_1(strategy, n_train)
        trainer.train_epoch(algo, 1, data, 0.05)  # warm-up
        counts.append(syncs_in_an_epoch(algo, trainer, data))
    assert counts[0] == counts[1], f"{strategy}: {counts[0]} syncs in 20 batches, {counts[1]} in 40"
    assert counts[0] <= 2, f"{strategy}: {counts[0]} syncs per epoch (expected: the order's copy, the loss)"
