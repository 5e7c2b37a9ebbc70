"""GPM, Gradient Projection Memory (Saha, Garg & Roy, ICLR 2021), as the authors' code does it
(github.com/sahagobinda/GPM: ``main_pmnist.py`` for the MLP, ``main_cifar100.py`` for the AlexNet),
on the base network of the scenario.

After each task (best weights restored, eval mode), every masked layer l (``model.layers``; not the
heads) gets a representation matrix R_l of its inputs on random training samples: an fc layer's input
vectors as columns; a conv layer's input patches, unfolded at every output position (columns of
C_in x k x k, the layout of ``weight.view(out, -1)``). Samples as the code: 300 for the MLP (every
layer); 125 for the AlexNet, of which conv1 uses 24 and conv2-3 100.

The basis M_l of each layer grows by the energy threshold eps_l (Eqs. 5, 8-9):

- after the first task, SVD R = U S V^T and keep the first r columns of U, r = the number of prefix
  sums of S^2 / sum S^2 strictly below eps_l (``np.sum(np.cumsum(ratio) < threshold)``);
- later, with total = sum S^2 of R, project R_hat = R - M M^T R, SVD R_hat; starting from the
  energy already in the basis, (total - sum S_hat^2) / total, add R_hat's directions one by one
  (each adds S_hat_i^2 / total) while the accumulated energy is below eps_l; append them to M (at most
  as many columns as rows); a layer that needs none is left as it is.

Thresholds: the code's: MLP (its PMNIST script) 0.95 for the first layer and 0.99 for the others,
fixed; AlexNet (its CIFAR-100 script) 0.97 for every layer, + 0.003 per task.

While task t > 0 trains, after each backward pass every body weight's gradient g (as a matrix
out x in) becomes g - g M M^T: orthogonal to the inputs earlier tasks saw. The code's nets have no
biases and it freezes every 1-D parameter (BatchNorm) after the first task; the base nets here have
biases and no BatchNorm, so their biases train with task 0 only. Heads: one per task, unprojected.
GPM does not promise bitwise zero forgetting (the bases keep a share eps of the energy), so its run
has no such test. Not the code: the protocol's plain SGD at lr 0.05 and Plateau schedule (the code:
lr 0.01, factor 2 on CIFAR, 5 epochs on PMNIST), SVD in float64 (the code: numpy float32 for fc,
float64 for conv); docs/faithfulness.md. Monitoring: the basis size per task and layer
(``monitoring()["gpm"]``), the share of each layer's input space later tasks may no longer use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench.registry import register_strategy
from cl_bench.strategies.packnet import layer_names
from cl_bench.strategy import HparamError, Strategy, TaskData, hparam

SAMPLES = {"mlp": (300, None), "alexnet": (125, (24, 100, 100))}  # the code's sample counts (conv: per layer)


# ---- pure functions -----------------------------------------------------------------------------------
def representation(layer: nn.Module, inputs: Tensor) -> Tensor:
    """R_l: one column per input vector (fc) or per unfolded input patch (conv), float64."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(inputs, layer.kernel_size)  # (n, C k k, positions)
        return patches.transpose(0, 1).reshape(patches.shape[1], -1).double()
    return inputs.reshape(inputs.shape[0], -1).T.double()


def grow_basis(basis: Tensor | None, rep: Tensor, threshold: float) -> Tensor:
    """The basis after one more task (see the module docstring); ``basis`` None before the first."""
    if basis is None:
        U, S, _ = torch.linalg.svd(rep, full_matrices=False)
        ratio = S**2 / (S**2).sum()
        r = int((torch.cumsum(ratio, 0) < threshold).sum())
        return U[:, :r]
    total = (torch.linalg.svdvals(rep) ** 2).sum()
    hat = rep - basis @ (basis.T @ rep)
    U, S, _ = torch.linalg.svd(hat, full_matrices=False)
    ratio = S**2 / total
    accumulated = float((total - (S**2).sum()) / total)
    r = 0
    for share in ratio.tolist():
        if accumulated >= threshold:
            break
        accumulated += share
        r += 1
    if r == 0:
        return basis
    grown = torch.cat([basis, U[:, :r]], 1)
    return grown[:, : grown.shape[0]]


def project_out(grad: Tensor, projection: Tensor) -> Tensor:
    """g - g M M^T, g seen as (out, in) (a conv's (out, C k k))."""
    flat = grad.reshape(grad.shape[0], -1)
    return (flat - flat @ projection).reshape(grad.shape)


def authors_thresholds(arch: str, n_layers: int, t: int) -> list[float]:
    if arch == "mlp":
        return [0.95] + [0.99] * (n_layers - 1)
    return [0.97 + 0.003 * t] * n_layers


# ---- the strategy -------------------------------------------------------------------------------------
@dataclass
class GPMHparams:
    threshold: float = hparam(
        0.0,
        "eps for every layer; 0 = the code's (MLP: 0.95 first layer, 0.99 others; AlexNet: 0.97)",
        grid=[0.9, 0.95, 0.97, 0.99],
        at_least=0,
        below=1,
    )
    threshold_increase: float = hparam(
        -1.0, "added to eps per task; -1 = the code's (MLP: 0, AlexNet: 0.003)", at_least=-1, below=1
    )
    samples: int = hparam(0, "samples of the representation; 0 = the code's (MLP 300, AlexNet 125)", at_least=0)


@register_strategy
class GPM(Strategy[GPMHparams]):
    """GPM (not in the paper): gradients projected out of earlier tasks' input subspaces (energy threshold)."""

    name = "gpm"
    keeps = ("bases", "sizes", "seed_base")

    @classmethod
    def check_hparams(cls, hp: GPMHparams) -> None:
        super().check_hparams(hp)
        if hp.threshold_increase < 0 and hp.threshold_increase != -1:
            raise HparamError(f"gpm: threshold_increase must be >= 0 or -1 (the code's), got {hp.threshold_increase}")

    def setup(self) -> None:
        self.bases: list[Tensor | None] = [None] * len(self.model.layers)
        # which of the code's setups applies, from the network (hooks do not read the scenario)
        self.arch = "alexnet" if any(isinstance(m, nn.Conv2d) for m in self.model.layers) else "mlp"
        self.sizes: list[list[int]] = []  # per task, the basis size per layer
        self.seed_base = int(torch.randint(2**31 - 1, (1,)))  # a seeded run's; + t per task
        self.rebuild()

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.rebuild()

    def rebuild(self) -> None:
        self.projections = [None if b is None else (b @ b.T).float() for b in self.bases]

    def thresholds(self, t: int) -> list[float]:
        hp, arch, L = self.hp, self.arch, len(self.model.layers)
        base = authors_thresholds(arch, L, 0) if hp.threshold == 0 else [hp.threshold] * L
        step = (0.0 if arch == "mlp" else 0.003) if hp.threshold_increase == -1 else hp.threshold_increase
        return [min(b + step * t, 1.0) for b in base]

    # ---- training ---------------------------------------------------------------------------------
    def after_backward(self, t: int) -> None:
        if t == 0:
            return
        for m, P in zip(self.model.layers, self.projections):
            if m.weight.grad is not None and P is not None:
                m.weight.grad.copy_(project_out(m.weight.grad, P))
            if m.bias is not None and m.bias.grad is not None:
                m.bias.grad.zero_()  # the code freezes 1-D parameters after the first task

    @torch.no_grad()
    def after_task(self, task: TaskData) -> None:
        t, layers = task.index, self.model.layers
        n, per_layer = SAMPLES[self.arch]
        n = min(self.hp.samples or n, len(task.train))
        g = torch.Generator().manual_seed(self.seed_base + t)
        idx = torch.randperm(len(task.train), generator=g)[:n].to(task.train.y.device)
        x, _, _ = task.train.batch(idx)
        inputs: list[Tensor] = []
        hooks = [m.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach())) for m in layers]
        self.model.eval()
        try:
            self.model(x, t)
        finally:
            for h in hooks:
                h.remove()
        for l, (m, h) in enumerate(zip(layers, inputs)):
            if per_layer is not None and l < len(per_layer) and not self.hp.samples:
                h = h[: per_layer[l]]
            rep = representation(m, h.float())
            self.bases[l] = grow_basis(self.bases[l], rep, self.thresholds(t)[l])
        self.sizes.append([b.shape[1] for b in self.bases])
        self.rebuild()

    def monitoring(self) -> dict[str, Any]:
        dims = [b.shape[0] for b in self.bases if b is not None]
        return {
            "gpm": {
                "layers": layer_names(self.model),
                "input_dims": dims,
                "basis_sizes": self.sizes,
                "thresholds": [self.thresholds(t) for t in range(len(self.sizes))],
            }
        }
