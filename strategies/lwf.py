"""LwF: Learning without Forgetting (Li & Hoiem, ECCV 2016, arXiv:1606.09282), as the HAT reference
ran it (github.com/joansj/hat; docs/faithfulness.md).

Training task t > 0 distils, on the new task's data, the outputs of every earlier head of the frozen
model after task t−1 (run in eval mode) into the same heads of the current model:

    L = CE(head_t(x), y) + λ Σ_{u<t} KD(head_u(x), head_u^old(x))      # LwF, as the authors' code

with the reference's KD (its ``utils.cross_entropy``): both softmaxes raised to the power 1/T and
renormalised (that is softmax(z/T)), 1e-5/n_classes added to the student's probabilities and
renormalised, then −Σ_c p_teacher log p_student averaged over the batch. As the reference: no T²
factor, no warm-up of the new head, no weight decay, T = 1 by default (the LwF paper uses the T² factor and a warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_bench.registry import register_strategy
from cl_bench.strategies.shared import KeepsPreviousModel
from cl_bench.strategy import hparam

STUDENT_EPS = 1e-5  # reference: added (divided by the number of classes) to the student's probabilities


def distillation(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """The reference's KD: mean over the batch of −Σ_c p_teacher,c log p_student,c."""
    student = F.softmax(student_logits, 1).pow(1 / T)  # Hinton et al.'s softened softmax, as the
    student = student / student.sum(1, keepdim=True)  # reference writes it: p^(1/T), renormalised
    teacher = F.softmax(teacher_logits, 1).pow(1 / T)
    teacher = teacher / teacher.sum(1, keepdim=True)
    student = student + STUDENT_EPS / student.shape[1]
    student = student / student.sum(1, keepdim=True)
    return -(teacher * student.log()).sum(1).mean()


@dataclass
class LwFHparams:
    lamb: float = hparam(2.0, "weight λ of the distillation loss", grid=[0.1, 0.5, 1, 2, 4, 8, 10], at_least=0)
    T: float = hparam(1.0, "distillation temperature", grid=[0.5, 1, 2, 4], above=0)


@register_strategy
class LwF(KeepsPreviousModel):
    """Cross-entropy on the new head plus distillation of the previous model's old heads."""

    name = "lwf"
    Hparams = LwFHparams
    clip_grad = 100.0  # the authors' code's clipping threshold for this method

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE on head t + λ Σ_{u<t} KD (also the validation loss, as in the reference)."""
        h = self.model.features(x)
        logits = self.model.heads[t](h)
        loss = F.cross_entropy(logits, y)
        if self.old is not None and t > 0:
            with torch.no_grad():
                h_old = self.old.features(x)
            for u in range(t):
                loss = loss + self.hp.lamb * distillation(self.model.heads[u](h), self.old.heads[u](h_old), self.hp.T)
        return loss, logits
