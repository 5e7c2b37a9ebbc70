"""Accuracy matrices and per-epoch losses of every built-in strategy on small synthetic scenarios
(MLP and AlexNet-like conv net, 3 tasks, a few epochs), as ``python tests/pins/strategy_matrices.py
OUT.json`` writes them. The committed ``strategy_matrices.json`` was written by the code before the
strategy interface v1 (commit 68c933b), except the MLP rows of EWC and IMM-mode (``faithful=False``,
the two that compute an empirical Fisher): those were written again after the Fisher's faster CPU
path (commit 468ec01), which sums the same terms in another order (losses moved by at most 8.5e-8,
accuracies unchanged). tests/test_strategy_pins.py recomputes them all with today's code: a
refactoring must leave every result bit for bit equal on CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest's make_scenario
from conftest import make_scenario  # noqa: E402

from cl_bench.registry import register_scenario  # noqa: E402
from cl_bench.runner import RunConfig, execute  # noqa: E402
from cl_bench.trainer import Protocol  # noqa: E402

STRATEGIES = [
    "sgd",
    "sgd_frozen",
    "ewc",
    "imm_mean",
    "imm_mode",
    "lwf",
    "lfl",
    "pathnet",
    "pnn",
    "hat",
    "joint",
    "random",
]
HPARAMS = {"pathnet": {"generations": 2, "population": 2}, "imm_mode": {"faithful": False}}
PROTOCOL = Protocol(epochs=4, lr_patience=1, batch_size=16)


@register_scenario("pin_mlp", "3 synthetic tasks on the MLP (tests only)")
def _pin_mlp(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=3, seed=seed)


@register_scenario("pin_conv", "2 synthetic tasks on the conv net (tests only)")
def _pin_conv(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, shape=(3, 32, 32), arch="alexnet", n_train=48, n_test=30, seed=seed)


def matrices(scenarios=("pin_mlp", "pin_conv")) -> dict[str, list]:
    torch.set_num_threads(1)
    out = {}
    for scenario in scenarios:
        for name in STRATEGIES:
            config = RunConfig(name, scenario, 3, HPARAMS.get(name, {}), PROTOCOL)
            record = execute(config, None)
            out[f"{scenario} {name}"] = {
                "accuracy": [[None if v != v else float(v) for v in row] for row in record.accuracy],
                # every epoch's losses: the whole training trajectory, to the last bit
                "losses": [[h["train_loss"], h["valid_loss"]] for h in record.history],
            }
    return out


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(matrices(), indent=1) + "\n")
