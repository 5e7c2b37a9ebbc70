"""Avalanche interop: cl-bench scenarios as Avalanche benchmarks, Avalanche strategies as cl-bench strategies.

Needs the ``[avalanche]`` extra (avalanche-lib 0.6.0). Avalanche is imported only inside functions
(``library.import_avalanche``), so ``import cl_bench`` and the CLI never load it;
``cl_bench.registry.get_strategy`` imports this package only for names starting ``avalanche:`` (the
prefix hook ``strategy_class``, declared as an entry point in setup.cfg).

**Export** (``export``). ``to_avalanche(scenario)`` is a task-incremental Avalanche benchmark with the
scenario's splits as streams (``train_stream``, ``valid_stream``, ``test_stream``), one experience per
task, task label = task index, holding float tensors normalised by cl-bench's own code path
(``Data.of(task, split, t).batch``), so a sample is bit-for-bit what cl-bench trains on.

**Import** (``strategies``). ``--strategy avalanche:NAME`` (``AVALANCHE_STRATEGIES``) runs Avalanche's
strategy class inside the cl-bench runner: the accuracy matrix, rho and the store are the same as for
built-in strategies. Hyperparameters are the class's scalar constructor arguments (``hparams``;
``-p ewc_lambda=5000``), plus ``net``, the cl-bench network variant. What maps onto the cl-bench
protocol (the HAT authors' training protocol):

| cl-bench protocol | in the Avalanche run |
|---|---|
| network | the strategy's cl-bench net (``nets.build_network``), through ``network.task_aware_net`` |
| plain SGD, lr, batch size, epochs cap | ``torch.optim.SGD(lr)``, ``train_mb_size``, ``train_epochs`` |
| global grad-norm clipping | in ``before_update``, at the threshold of the cl-bench counterpart |
| per-epoch validation, lr / 3 after 5 bad epochs, stop at lr < 1e-4 | ``Trainer.end_epoch``, ``Plateau`` (plugin) |
| best-validation weights restored | the plugin's ``after_training_exp``, before the method's own hooks |
| evaluation, accuracy matrix | ``predict(x, t)`` on the cl-bench test splits |

What does not map: the validation loss is the plain cross-entropy of the task's head (Avalanche adds
its regularisers to the loss only inside the training loop, so the regularised validation loss the
reference early-stops on is not available); batches are shuffled by Avalanche's DataLoader (torch's
global generator, not the trainer's); the forward passes are fp32 (no ``precision=bf16``); and a run
has no per-task checkpoint (no ``state_dict``): a killed run restarts. Method-level differences (EWC's
Fisher, LwF's distillation, LFL's penalty) are documented in ``examples/avalanche_crosscheck.py`` and
the README.
"""

from cl_bench.avalanche_interop.export import task_dataset, to_avalanche
from cl_bench.avalanche_interop.hparams import FRAMEWORK_ARGS, describe
from cl_bench.avalanche_interop.library import INSTALL_HINT, PREFIX, AvalancheNotInstalled, import_avalanche
from cl_bench.avalanche_interop.network import PAD_LOGIT, task_aware_net
from cl_bench.avalanche_interop.protocol_plugin import protocol_plugin
from cl_bench.avalanche_interop.strategies import (
    ALIASES,
    AVALANCHE_STRATEGIES,
    AvalancheSpec,
    AvalancheStrategy,
    strategy_class,
    strategy_names,
)

__all__ = [
    "ALIASES",
    "AVALANCHE_STRATEGIES",
    "FRAMEWORK_ARGS",
    "INSTALL_HINT",
    "PAD_LOGIT",
    "PREFIX",
    "AvalancheNotInstalled",
    "AvalancheSpec",
    "AvalancheStrategy",
    "describe",
    "import_avalanche",
    "protocol_plugin",
    "strategy_class",
    "strategy_names",
    "task_aware_net",
    "task_dataset",
    "to_avalanche",
]
