"""PathNet (Fernando et al., 2017, arXiv:1701.08734), as the HAT reference codes it
(github.com/joansj/hat: network ``alexnet_pathnet``, approach ``pathnet``).

Each of the L layers of the base body (AlexNet: L = 5; MLP: L = 3) is replaced by
M modules, narrow copies of that layer (conv -> ReLU -> Dropout [-> MaxPool], or fc -> ReLU ->
Dropout). A path picks N modules per layer (an L x N matrix of module indices; a module may appear
twice after mutation, and then counts twice); a layer's output is the *sum* of its N modules'
outputs, and every module of the next layer reads that sum. Each task has its own head.

Per task t, a tournament genetic algorithm over P paths (as the authors' code):

1. modules not in any earlier task's best path are reset to their initial weights (t > 0);
2. each path starts as N distinct random modules per layer, with its own lr, patience and best loss;
3. per generation, each path (unless its lr fell below lr_min) trains ``epochs // G`` epochs of the
   protocol; only its modules that are not in an earlier best path train (plus head t). After every
   epoch, the validation loss drives that path's lr schedule, and a new lowest loss over all paths and
   generations stores the model and makes that path the winner. A decay of the path's lr decided
   during a generation takes effect at the path's next generation: the reference builds the path's
   optimiser once per generation, so its epochs all train at the lr the generation started with
   (``immediate_lr_decay=True`` applies a decay from the next epoch, as ``Trainer.fit`` does, and as
   cl-bench did before 0.2.0);
4. after each generation the stored best model is restored, and every other path becomes a copy of
   the winner with each gene mutated with probability 1/(N L) by adding U{-2..2} modulo M; it takes
   the winner's lr, with patience reset and best loss infinite;
5. the task stops after G generations or when every path's lr is below lr_min; the winner is the
   task's best path, whose modules stay frozen from then on. Task tau is evaluated with its path.

The layer-by-layer description of the base bodies (``Block``, ``base_blocks``) is shared with
cl_bench.strategies.pnn, which builds its columns from the same description.

The fitness is the validation loss (``trainer.data(t, "valid")``), never the test set. The protocol's
budget is at most P x G x (epochs // G) epochs per task: 400 with the paper's 200 epochs (the paper says
only that the number of training updates is matched).
With fewer protocol epochs than generations the reference would train nothing (epochs // G = 0);
here the GA then runs ``epochs`` generations of one epoch per path (budget P x epochs), with a warning.

Module width: int(factor x base width) per layer, with the reference's factor for its three (M, N)
configurations on the AlexNet (0.258 for M=16, N=3: conv 16, 33, 66, fc 528, 528). The
reference has no MLP PathNet; its analogue here uses the module width whose total parameter count
(M modules per layer plus heads) is closest to the base 3x800 MLP's:

==========================================  =================  ===============  ===========
scenario (M = 16, N = 3)                    module widths      PathNet params   base params
==========================================  =================  ===============  ===========
split_mnist (2 tasks x 5 classes)           117 x 3            1,912,492        1,917,610
permuted_mnist (10 tasks x 10 classes)      120 x 3            1,983,940        1,989,700
AlexNet, 8 tasks x 10 classes, 3x32x32      16,33,66,528,528   6,979,584        6,667,792
AlexNet, mixture heads (293 classes)        16,33,66,528,528   7,092,261        7,104,229
==========================================  =================  ===============  ===========

That is -0.27%, -0.29%, +4.68% and -0.17% of the base; the mixture row is the authors' count.
Each run stores its widths and counts in ``monitoring``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.nets import Block, activate, base_blocks, count_parameters_of, layer_inputs, make_layer, matched_widths
from cl_bench.registry import register_strategy
from cl_bench.strategy import HparamError, Strategy, TaskData, hparam
from cl_bench.trainer import Plateau, snapshot

# The authors' (M, N) configurations and their width factors on the AlexNet.
REFERENCE_WIDTH_FACTOR = {("alexnet", 16, 3): 0.258, ("alexnet", 10, 3): 0.325, ("alexnet", 20, 5): 0.231}

Path = tuple[tuple[int, ...], ...]  # L x N module indices


class PathNetwork(nn.Module):
    """``layers[l][k]``: module k of layer l; ``heads[t]``: task t's head (on no path)."""

    def __init__(
        self,
        blocks: Sequence[Block],
        widths: Sequence[int],
        input_shape: Sequence[int],
        head_sizes: Sequence[int],
        n_modules: int,
    ):
        super().__init__()
        self.blocks, self.widths = list(blocks), list(widths)
        sizes, n_features = layer_inputs(blocks, widths, input_shape)
        self.dropouts = nn.ModuleList(nn.Dropout(b.dropout) for b in blocks)
        self.layers = nn.ModuleList(
            nn.ModuleList(make_layer(b, n, w) for _ in range(n_modules)) for b, n, w in zip(blocks, sizes, widths)
        )
        self.heads = nn.ModuleList(nn.Linear(n_features, n) for n in head_sizes)

    def forward(self, x: Tensor, t: int, path: Path) -> Tensor:
        h = x
        for l, block in enumerate(self.blocks):
            if block.kind == "fc":
                h = h.flatten(1)
            outs = [activate(block, self.layers[l][k](h), self.dropouts[l]) for k in path[l]]
            h = outs[0]
            for o in outs[1:]:
                h = h + o  # as the authors' code: a layer's output is the sum of its modules' outputs
        return self.heads[t](h)


# ---- the genetic algorithm's operators (pure functions of tensors and a generator) ---------------
def random_path(n_layers: int, n_modules: int, n_active: int, generator: torch.Generator) -> Tensor:
    """N distinct modules per layer, drawn uniformly (reference: shuffle 0..M-1, take N)."""
    return torch.stack([torch.randperm(n_modules, generator=generator)[:n_active] for _ in range(n_layers)])


def mutate(path: Tensor, n_modules: int, probability: float, step: int, generator: torch.Generator) -> Tensor:
    """Each gene, with ``probability``, moves by a uniform integer in [-step, step], modulo M (as the authors' code).

    Draws, in this order: one uniform per gene (hit if < probability), one step per gene."""
    hit = torch.rand(path.shape, generator=generator) < probability
    delta = torch.randint(-step, step + 1, path.shape, generator=generator)
    return torch.where(hit, (path + delta) % n_modules, path)


def next_generation(
    paths: Sequence[Tensor], winner: int, n_modules: int, probability: float, step: int, generator: torch.Generator
) -> list[Tensor]:
    """The winner survives unchanged; every other path becomes a mutated copy of it."""
    return [
        paths[winner].clone() if i == winner else mutate(paths[winner], n_modules, probability, step, generator)
        for i in range(len(paths))
    ]


def as_path(path: Tensor) -> Path:
    return tuple(tuple(row) for row in path.tolist())


# ---- the strategy ---------------------------------------------------------------------------------
@dataclass
class PathNetHparams:
    modules: int = hparam(
        16, "M: modules per layer (reference configs (M, N): (16, 3), (10, 3), (20, 5))", grid=[10, 16, 20], at_least=1
    )
    active: int = hparam(3, "N: modules per layer in a path (at most M)", grid=[3, 5], at_least=1)
    generations: int = hparam(
        20,
        "G: generations per task; a path trains protocol epochs // G epochs "
        "per generation (at most `epochs` generations)",
        grid=[5, 10, 20, 50, 100, 200],
        at_least=1,
    )
    population: int = hparam(2, "P: paths in the tournament (reference: 2)", at_least=1)
    mutation_step: int = hparam(
        2, "a mutated gene moves by a uniform integer in [-step, step] (reference: 2)", at_least=0
    )
    width_factor: float = hparam(
        0.0,
        "Module width = int(width_factor x base width); 0 = the reference's factor for (M, N) on the "
        "AlexNet, else the width whose total parameter count is closest to the base network's",
        at_least=0,
    )
    immediate_lr_decay: bool = hparam(
        False,
        "True: a path's lr decay applies from its next epoch; False: from its next generation, as "
        "the reference (its optimiser keeps the lr the generation started with)",
    )


@register_strategy
class PathNet(Strategy[PathNetHparams]):
    """PathNet: a tournament GA over paths of modules; each task's best path is frozen."""

    name = "pathnet"
    clip_grad = 1000.0  # the authors' code's clipping threshold for this method

    def setup(self) -> None:
        self.widths, self.base_parameters = self.model.widths, self.model.base_parameters
        n_layers = len(self.model.blocks)
        self.mutation_probability = 1.0 / (self.hp.active * n_layers)  # the authors' 1 / (N L)
        self.initial_state = [
            [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in layer] for layer in self.model.layers
        ]
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,))))  # seeded run
        self.paths: dict[int, Path] = {}  # the path forward uses per task: candidate while training t
        self.best_paths: dict[int, Path] = {}
        self.ga_log: dict[int, list[dict]] = {}

    @classmethod
    def check_hparams(cls, hp: PathNetHparams) -> None:
        super().check_hparams(hp)
        if hp.active > hp.modules:
            raise HparamError(
                f"pathnet: a path picks N = {hp.active} distinct modules of M = {hp.modules} at "
                f"start: N must be <= M (hyperparameters 'active' <= 'modules')"
            )

    def build_model(self) -> nn.Module:
        hp, sc = self.hp, self.scenario
        blocks, heads = base_blocks(sc), [task.n_classes for task in sc.tasks]

        def build(widths):
            return PathNetwork(blocks, widths, sc.input_shape, heads, hp.modules)

        base_parameters = count_parameters_of(lambda: nets.build_network(sc))
        factor = hp.width_factor or REFERENCE_WIDTH_FACTOR.get((sc.arch, hp.modules, hp.active))
        if factor:
            widths = [max(1, int(factor * b.width)) for b in blocks]
        else:
            widths = matched_widths(blocks, lambda w: count_parameters_of(lambda: build(w)), base_parameters)
        model = build(widths)
        model.base_parameters = base_parameters  # what its widths were matched to (monitoring)
        return model

    # ---- which modules a task uses and trains -----------------------------------------------------
    def forward(self, x: Tensor, t: int) -> Tensor:
        return self.model(x, t, self.paths[t])

    def frozen(self, t: int) -> list[set[int]]:
        """Per layer, the modules of the best paths of tasks < t."""
        return [set().union(*(self.best_paths[u][l] for u in range(t))) for l in range(len(self.model.blocks))]

    def trainable_parameters(self, t: int) -> list[nn.Parameter]:
        """The active path's modules outside earlier best paths, and head t."""
        params = []
        for l, used in enumerate(self.frozen(t)):
            for k in sorted(set(self.paths[t][l]) - used):
                params.extend(self.model.layers[l][k].parameters())
        return params + list(self.model.heads[t].parameters())

    def use_path(self, t: int, path: Tensor) -> None:
        """Make ``path`` task t's active path; only its trainable modules keep requires_grad."""
        self.paths[t] = as_path(path)
        for layer in self.model.layers:
            layer.requires_grad_(False)
        for p in self.trainable_parameters(t):
            p.requires_grad_(True)

    def before_task(self, task: TaskData) -> None:
        """Reset the modules outside every earlier best path to their initial weights (as the authors' code)."""
        for l, used in enumerate(self.frozen(task.index)):
            for k, module in enumerate(self.model.layers[l]):
                if k not in used:
                    module.load_state_dict(self.initial_state[l][k])

    # ---- the tournament ---------------------------------------------------------------------------
    def train_task(self, task: TaskData, trainer) -> None:
        hp, p, t = self.hp, task.protocol, task.index
        generations = min(hp.generations, p.epochs)
        if generations < hp.generations:  # the reference would train 0 epochs: keep its P x epochs budget
            warnings.warn(
                f"PathNet: protocol epochs // generations = {p.epochs} // {hp.generations} = 0; "
                f"running {generations} generations of 1 epoch per path instead",
                stacklevel=2,
            )
        epochs = p.epochs // generations  # the authors' nepochs // G per path per generation
        train, valid = task.train, task.valid  # fitness: validation loss
        P, L = hp.population, len(self.model.blocks)
        paths = [random_path(L, hp.modules, hp.active, self.generator) for _ in range(P)]
        schedules = [Plateau.start(p) for _ in range(P)]  # each path's own lr schedule (the protocol's)
        winner, best_overall, best_state = 0, math.inf, snapshot(self.model)
        self.ga_log[t] = []
        n_epochs = 0
        for g in range(generations):
            if all(s.stopped for s in schedules):
                break
            for i in range(P):
                if schedules[i].stopped:
                    continue
                self.use_path(t, paths[i])
                generation_lr = schedules[i].lr  # the reference's optimiser for this path and generation
                for _ in range(epochs):
                    lr = schedules[i].lr if hp.immediate_lr_decay else generation_lr
                    log = trainer.epoch(self, t, train, valid, lr, n_epochs)
                    n_epochs += 1
                    if log.valid_loss < best_overall:  # the stored model and winner over all paths
                        best_overall, best_state, winner = log.valid_loss, snapshot(self.model), i
                    schedules[i].update(log.valid_loss)
                    if schedules[i].stopped:
                        break
            self.model.load_state_dict(best_state)  # as the authors' code: restore the best model per generation
            self.ga_log[t].append(
                {
                    "generation": g + 1,
                    "epochs": n_epochs,
                    "winner": winner,
                    "best_valid_loss": best_overall,
                    "paths": [path.tolist() for path in paths],
                }
            )
            paths = next_generation(
                paths, winner, hp.modules, self.mutation_probability, hp.mutation_step, self.generator
            )
            schedules = [s if i == winner else schedules[winner].restart() for i, s in enumerate(schedules)]
        self.use_path(t, paths[winner])
        self.best_paths[t] = self.paths[t]

    # ---- state a resumed run needs beyond the model (cl_bench.runner.checkpoint) ---------------------------
    def save_state(self) -> dict:
        return {
            "best_paths": {t: torch.tensor(path) for t, path in self.best_paths.items()},
            "generator": self.generator.get_state(),
            "ga_log": self.ga_log,
        }

    def load_state(self, state: dict) -> None:
        self.best_paths = {int(t): as_path(path) for t, path in state["best_paths"].items()}
        self.paths = dict(self.best_paths)
        self.generator.set_state(state["generator"])
        self.ga_log = {int(t): log for t, log in state["ga_log"].items()}

    def monitoring(self) -> dict:
        return {
            "module_widths": self.widths,
            "parameters": nets.count_parameters(self.model),
            "base_parameters": self.base_parameters,
            "best_paths": {str(t): [list(row) for row in path] for t, path in self.best_paths.items()},
            "generations": {str(t): log for t, log in self.ga_log.items()},
        }
