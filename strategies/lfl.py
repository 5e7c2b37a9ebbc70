"""LFL: Less-Forgetting Learning (Jung et al., 2016, arXiv:1607.00122), as the HAT reference ran it
(github.com/joansj/hat; docs/faithfulness.md).

Training task t > 0 keeps the current model's last hidden representation h (the input of the heads)
close to the one of the frozen model after task t−1, on the new task's data:

    L = CE(head_t(h), y) + λ Σ_{n in batch} Σ_j (h_old,nj − h_nj)² / 2     # LFL, as the authors' code

The sum runs over the batch, not a mean, exactly as the reference. The old model runs in eval mode,
the current one in train mode (dropout on in the layers below h). The network is the reference's
``alexnet_lfl`` (``nets.build_network(variant="lfl")``): the AlexNet-like net without dropout on fc2,
so that h is not perturbed by dropout.

MLP setups (split/permuted MNIST): the reference cannot run LFL there (its ``run.py`` gives every
non-HAT approach the plain ``mlp``, whose forward returns no features, so LFL's
``outputs, h = model(x)`` fails). Here LFL uses the 3x800 baseline MLP with the same change as
``alexnet_lfl``: no dropout after the last hidden layer, whose output is h.

Validation loss: the authors' code evaluates in batches of 64 (its training batch size B) and
averages the batch losses weighted by batch size, so a sample's penalty p_n = Σ_j (h_old − h)²/2
counts λ·|b|/N, with |b| the size of its evaluation batch: B for all but the last, smaller batch.
The trainer evaluates in larger batches (1,024, a multiple of B, so B-batches start at the same
samples); in eval mode each sample's penalty is therefore weighted by the size of the B-batch it
would have been in, which gives the authors' validation loss exactly (tested). An evaluation batch
size that is not a multiple of B misplaces the partial batch (it is weighted as if the data ended
there). Training batches use the plain sum over the batch, as the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.registry import register_strategy
from cl_bench.strategies.shared import KeepsPreviousModel
from cl_bench.strategy import TaskData, hparam


@dataclass
class LFLHparams:
    lamb: float = hparam(
        0.05,
        "weight λ of the feature-distance penalty (reference: 'none of them really worked')",
        grid=[1e-1, 5e-2, 1e-2, 5e-3, 1e-3, 5e-4, 1e-4, 5e-5],
        at_least=0,
    )


@register_strategy
class LFL(KeepsPreviousModel):
    """Cross-entropy plus an L2 penalty between the old and the new model's last hidden features."""

    name = "lfl"
    Hparams = LFLHparams
    clip_grad = 200.0  # the authors' code's clipping threshold for this method

    def setup(self) -> None:
        self.train_batch_size = 64  # the reference's; set from the protocol in train_task

    def build_model(self) -> nn.Module:
        return nets.build_network(self.scenario, variant="lfl")  # no dropout on the penalised features

    def train_task(self, task: TaskData, trainer) -> None:
        self.train_batch_size = task.protocol.batch_size
        super().train_task(task, trainer)

    def chunk_weights(self, n: int, device: torch.device) -> Tensor:
        """For a validation batch of n samples: the size of the training-size batch each sample falls in
        (B for all but a last partial batch of n % B samples, which weigh n % B each)."""
        weights = torch.full((n,), float(self.train_batch_size), device=device)
        rest = n % self.train_batch_size
        if rest:
            weights[n - rest :] = rest
        return weights

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE on head t + λ Σ_batch Σ_units (h_old − h)²/2 (also the validation loss)."""
        h = self.model.features(x)
        logits = self.model.heads[t](h)
        loss = F.cross_entropy(logits, y)
        if self.old is not None:
            with torch.no_grad():
                h_old = self.old.features(x)
            per_sample = (h_old - h).pow(2).flatten(1).sum(1) / 2
            if self.model.training:
                penalty = per_sample.sum()  # summed over the batch too, as the authors' code
            else:  # the authors' validation loss, as if evaluated in batches of the training size
                penalty = (self.chunk_weights(len(x), x.device) * per_sample).sum() / len(x)
            loss = loss + self.hp.lamb * penalty
        return loss, logits
