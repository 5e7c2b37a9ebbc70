"""Baselines I: SGD-F, EWC, IMM-mean, IMM-mode, LwF, LFL.

Each extra loss or merge is compared with a plain, independent computation (explicit per-batch loops,
hand-written formulas), and the behaviour that defines each method is asserted.
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_scenario
from torch import nn

from cl_bench import nets
from cl_bench import trainer as trainer_module
from cl_bench.registry import get_strategy
from cl_bench.scenario import Data
from cl_bench.strategies.imm_mean import mean_merge
from cl_bench.strategies.imm_mode import mode_merge
from cl_bench.strategies.lwf import distillation
from cl_bench.strategies.shared import cross_entropy_of, empirical_fisher
from cl_bench.trainer import Protocol, Trainer

ATOL = 1e-6


def build(name, scenario, small=True, **hp):
    """The strategy; with ``small``, its network is swapped for a 2x16 MLP of the same kind, so the
    tests take seconds (the methods only see ``strategy.model``)."""
    cls = get_strategy(name)
    torch.manual_seed(0)
    strategy = cls(scenario, cls.parse_hparams(hp))
    if small and isinstance(strategy.model, nets.MLP):
        n_in, heads = strategy.model.layers[0].in_features, [h.out_features for h in strategy.model.heads]
        strategy.model = type(strategy.model)(n_in, [16, 16], heads)  # keeps LFL's MLP class
    return strategy


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@torch.no_grad()
def perturb(model, scale=0.05, names=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if names is None or any(n.startswith(k) for k in names):
            p.add_(scale * torch.randn(p.shape, generator=g))


def batch(scenario, t, split="train"):
    data = Data.of(scenario.tasks[t], split, t)
    return data.batch(torch.arange(len(data)))[:2]


def loop_fisher(model, scenario, t, batch_size=20, extra_loss=None):
    """The reference's Fisher written plainly: consecutive batches, backward each, sum of
    batch_size * grad**2, divided by N (model assumed deterministic, e.g. without dropout)."""
    x, y = batch(scenario, t)
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for start in range(0, len(y), batch_size):
        model.zero_grad()
        loss = F.cross_entropy(model(x[start : start + batch_size], t), y[start : start + batch_size])
        if extra_loss is not None:
            loss = loss + extra_loss(model)
        loss.backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                fisher[n] += batch_size * p.grad**2
    model.zero_grad()
    return {n: f / len(y) for n, f in fisher.items()}


def assert_dicts_close(a, b, rtol=1e-5, atol=1e-9):
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=rtol, atol=atol, msg=n)


def run_tasks(strategy, scenario, epochs=2):
    trainer = Trainer(scenario, Protocol(epochs=epochs), seed=0)
    states = []
    for t in range(len(scenario.tasks)):
        strategy.before_task(t)
        strategy.train_task(t, trainer)
        strategy.after_task(t)
        states.append(params(strategy.model))
    return states


# ---- all six: registered, with the reference's clipping, end to end -------------------------------
@pytest.mark.parametrize(
    "name,clip", [("sgd_frozen", 1e4), ("ewc", 100), ("imm_mean", 1e4), ("imm_mode", 1e3), ("lwf", 100), ("lfl", 200)]
)
def test_registered_with_reference_clip_and_runs_end_to_end(name, clip, monkeypatch):
    scenario = make_scenario(n_tasks=2, n_train=50, n_test=20)
    strategy = build(name, scenario)
    assert strategy.clip_grad == clip
    used = []
    step = trainer_module.clip_and_step
    monkeypatch.setattr(
        trainer_module,
        "clip_and_step",
        lambda params, lr, max_norm: (used.append(max_norm), step(params, lr, max_norm)),
    )
    before = params(strategy.model)
    states = run_tasks(strategy, scenario, epochs=1)
    assert used and set(used) == {clip}  # the trainer clips every step at the method's threshold
    for t, state in enumerate(states):  # each task's training moved the weights
        assert any(not torch.equal(state[n], (before if t == 0 else states[t - 1])[n]) for n in state), t
    trainer = Trainer(scenario, Protocol(), seed=0)
    for t in range(2):  # the harness's accuracy is the plain share of argmax hits of head t in eval mode
        x, y = batch(scenario, t, "test")
        strategy.model.eval()
        with torch.no_grad():
            hits = (strategy.forward(x, t).argmax(1) == y).sum().item()
        assert trainer.test_accuracy(strategy, t) == hits / len(y)


# The authors' clipping threshold per approach (the default ``clipgrad`` of each of their approach classes).
AUTHORS_CLIP = {
    "sgd": 1e4,
    "sgd_frozen": 1e4,
    "ewc": 100,
    "imm_mean": 1e4,
    "imm_mode": 1e3,
    "lwf": 100,
    "lfl": 200,
    "pathnet": 1e3,
    "pnn": 1e4,
    "hat": 1e4,
    "joint": 1e4,
}


@pytest.mark.parametrize("name", sorted(AUTHORS_CLIP))
def test_every_trained_strategy_clips_at_the_authors_threshold(name):
    assert get_strategy(name).clip_grad == AUTHORS_CLIP[name]


# ---- SGD-F -----------------------------------------------------------------------------------------
def test_sgd_frozen_changes_only_the_current_head_after_task_1():
    scenario = make_scenario(n_tasks=3, n_train=60)
    strategy = build("sgd_frozen", scenario)
    init = params(strategy.model)
    after = run_tasks(strategy, scenario)
    body = [n for n in init if not n.startswith("heads.")]
    assert any(not torch.equal(init[n], after[0][n]) for n in body)  # task 1 trains the body
    for t in (1, 2):
        for n in init:
            if n.startswith(f"heads.{t}."):
                assert not torch.equal(after[t][n], after[t - 1][n]), n  # head t learns
            else:  # the body, earlier heads (no gradient) and later heads (untouched) stay
                assert torch.equal(after[t][n], after[t - 1][n]), n
    assert all(not p.requires_grad for p in strategy.model.body_parameters())
    assert all(p.requires_grad for p in strategy.model.heads.parameters())


def test_sgd_frozen_keeps_dropout_active_in_the_frozen_body():
    scenario = make_scenario(n_tasks=2, n_train=60)
    strategy = build("sgd_frozen", scenario)
    strategy.after_task(0)
    strategy.model.train()
    x, _ = batch(scenario, 1)
    assert not torch.equal(strategy.forward(x, 1), strategy.forward(x, 1))  # dropout still on


def test_sgd_frozen_state_round_trip_keeps_the_body_frozen_or_not():
    scenario = make_scenario(n_tasks=2)
    strategy, fresh = build("sgd_frozen", scenario), build("sgd_frozen", scenario)
    fresh.load_state(strategy.save_state())  # during task 1: nothing is frozen yet
    assert all(p.requires_grad for p in fresh.model.parameters())
    strategy.after_task(0)
    fresh.load_state(strategy.save_state())  # a run resumed after task 1 trains the heads only
    assert not any(p.requires_grad for p in fresh.model.body_parameters())
    assert all(p.requires_grad for p in fresh.model.heads.parameters())


# ---- EWC -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fisher_batch,n_train", [(20, 47), (1, 13)])
def test_empirical_fisher_matches_a_plain_per_batch_loop(fisher_batch, n_train):
    scenario = make_scenario(n_tasks=2, n_train=n_train)  # 47 = 2 batches of 20 + a last one of 7
    strategy = build("ewc", scenario)
    model = no_dropout(strategy.model)
    fisher = empirical_fisher(model, cross_entropy_of(model, 0), Data.of(scenario.tasks[0], "train", 0), fisher_batch)
    assert_dicts_close(fisher, loop_fisher(model, scenario, 0, fisher_batch))
    assert fisher["heads.0.weight"].abs().sum() > 0 and fisher["heads.1.weight"].abs().sum() == 0


def test_empirical_fisher_runs_in_train_mode_and_restores_the_mode():
    scenario = make_scenario(n_tasks=1, n_train=30)
    model = build("ewc", scenario).model.eval()
    seen = []
    ce = cross_entropy_of(model, 0)

    def spy(p, x, y):
        seen.append(model.training)
        return ce(p, x, y)

    empirical_fisher(model, spy, Data.of(scenario.tasks[0], "train", 0))
    assert seen and all(seen) and not model.training


def test_ewc_penalty_is_zero_at_the_anchor_and_the_plain_formula_elsewhere():
    """Value and gradient of EWC's loss against CE + λ Σ F (θ* − θ)² / 2 and CE' + λ F (θ − θ*), with F the
    per-batch loop's Fisher and θ* the weights after task 1, both taken by the test, not from the strategy."""
    scenario = make_scenario(n_tasks=2)
    strategy = build("ewc", scenario, lamb=3000.0)
    model = no_dropout(strategy.model).eval()
    anchor, fisher = params(model), loop_fisher(model, scenario, 0)
    strategy.after_task(0)
    x, y = batch(scenario, 1)
    loss, logits = strategy.loss(x, y, 1)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), abs=ATOL)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    ce_grads = torch.autograd.grad(F.cross_entropy(model(x, 1), y), list(model.parameters()), allow_unused=True)
    # the penalty's gradient vanishes at θ* too
    for p, g, g_ce in zip(model.parameters(), grads, ce_grads, strict=True):
        assert torch.allclose(g, torch.zeros_like(p) if g_ce is None else g_ce, atol=1e-8)
    perturb(model)
    loss, logits = strategy.loss(x, y, 1)
    expected = sum((fisher[n] * (anchor[n] - p.detach()) ** 2).sum() / 2 for n, p in model.named_parameters())
    assert expected > 0
    assert (loss - F.cross_entropy(logits, y)).item() == pytest.approx(3000.0 * expected.item(), rel=1e-5)
    names, plist = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss, plist)
    ce_grads = torch.autograd.grad(F.cross_entropy(model(x, 1), y), plist, allow_unused=True)
    moved = 0
    for n, p, g, g_ce in zip(names, plist, grads, ce_grads, strict=True):
        pull = 3000.0 * fisher[n] * (p.detach() - anchor[n])  # d/dθ of λ F (θ* − θ)² / 2
        torch.testing.assert_close(g - (0 if g_ce is None else g_ce), pull, rtol=1e-4, atol=1e-7, msg=n)
        moved += pull.abs().max() > 1e-4
    assert moved >= len(names) // 2  # the pull is far above the tolerance on most tensors


def test_ewc_fisher_is_a_running_mean_over_tasks():
    scenario = make_scenario(n_tasks=3, n_train=25)
    strategy = build("ewc", scenario)
    model = no_dropout(strategy.model)
    expected = None
    for t in range(3):
        perturb(model, seed=t)  # stands in for training on task t
        new = loop_fisher(model, scenario, t)
        expected = new if expected is None else {n: (new[n] + t * expected[n]) / (t + 1) for n in new}
        strategy.after_task(t)
        assert_dicts_close(strategy.fisher, expected)
        assert_dicts_close(strategy.anchor, params(model))


# ---- IMM-mean --------------------------------------------------------------------------------------
@pytest.mark.parametrize("faithful", [True, False])
def test_imm_mean_of_identical_models_is_that_model(faithful):
    scenario = make_scenario(n_tasks=2)
    strategy = build("imm_mean", scenario, faithful=faithful)
    strategy.after_task(0)
    before = params(strategy.model)
    strategy.after_task(1)
    assert_dicts_close(params(strategy.model), before, rtol=0, atol=1e-7)


@pytest.mark.parametrize("t", [1, 2])
def test_imm_mean_faithful_averages_the_new_head_with_its_init_and_corrected_keeps_it(t):
    scenario = make_scenario(n_tasks=3)
    faithful, corrected = build("imm_mean", scenario), build("imm_mean", scenario, faithful=False)
    for s in (faithful, corrected):
        for u in range(t):
            s.after_task(u)
        previous = params(s.model)
        perturb(s.model, names=["layers.", f"heads.{t}."])  # training task t moves body and head t
        current = params(s.model)
        s.after_task(t)
    mean = {n: (current[n] + t * previous[n]) / (t + 1) for n in current}  # IMM Eq. 3, α = 1/(t+1)
    assert_dicts_close(params(faithful.model), mean)
    head = f"heads.{t}."
    assert_dicts_close(params(corrected.model), {n: current[n] if n.startswith(head) else mean[n] for n in current})
    assert not torch.allclose(mean[head + "weight"], current[head + "weight"])


def test_imm_mean_merge_of_hand_made_models_is_their_exact_running_mean():
    """mean-IMM with equal weights: θ_{<t+1} = (θ_t + t θ_{<t}) / (t+1), the previous model standing for t tasks
    (the authors' ``(model + model_old * t) / (t+1)``). Any other convex weights fail from t = 2 on."""
    current = {"w": torch.tensor([1.0, 2.0, -4.0]), "head": torch.tensor([8.0])}
    previous = {"w": torch.tensor([4.0, -1.0, 2.0]), "head": torch.tensor([5.0])}
    one = mean_merge(current, previous, 1)
    assert {n: v.tolist() for n, v in one.items()} == {"w": [2.5, 0.5, -1.0], "head": [6.5]}
    two = mean_merge(current, previous, 2)
    assert {n: v.tolist() for n, v in two.items()} == {"w": [3.0, 0.0, 0.0], "head": [6.0]}
    kept = mean_merge(current, previous, 2, frozenset({"head"}))
    assert kept["head"].tolist() == [8.0] and kept["w"].tolist() == [3.0, 0.0, 0.0]


@pytest.mark.parametrize("faithful", [True, False])
def test_imm_mean_strategy_merges_hand_made_constant_models(faithful):
    """Models whose every weight is 1, then 4, then 7 after tasks 1, 2, 3: the merged weights are 1,
    (4 + 1)/2 = 2.5 and (7 + 2·2.5)/3 = 4; corrected, the new head keeps its trained value."""
    scenario = make_scenario(n_tasks=3)
    strategy = build("imm_mean", scenario, faithful=faithful)
    model = strategy.model

    def fill(v):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(v)

    for t, (value, merged) in enumerate([(1.0, 1.0), (4.0, 2.5), (7.0, 4.0)]):
        fill(value)
        strategy.after_task(t)
        for n, p in model.named_parameters():
            if not faithful and n.startswith(f"heads.{t}.") and t > 0:
                want = value  # corrected: the new head is not averaged with its untrained init
            elif not faithful and n.startswith("heads.1.") and t == 2:
                want = (7.0 + 2 * 4.0) / 3  # head 1 was kept at 4 after task 2, then averaged as any weight
            else:
                want = merged
            assert torch.all(p == want), (t, n, want)
            assert torch.equal(strategy.previous[n], p.detach())  # the L2 target of the next task


def test_imm_mean_l2_transfer_is_the_plain_formula():
    scenario = make_scenario(n_tasks=2)
    strategy = build("imm_mean", scenario, lamb=0.5)
    model = strategy.model.eval()
    strategy.after_task(0)
    x, y = batch(scenario, 1)
    loss, logits = strategy.loss(x, y, 1)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), abs=ATOL)
    anchor = params(model)
    perturb(model)
    loss, logits = strategy.loss(x, y, 1)
    l2 = sum(((anchor[n] - p.detach()) ** 2).sum() / 2 for n, p in model.named_parameters())
    assert (loss - F.cross_entropy(logits, y)).item() == pytest.approx(0.5 * l2.item(), rel=1e-5)


# ---- IMM-mode --------------------------------------------------------------------------------------
def test_imm_mode_faithful_never_merges():
    scenario = make_scenario(n_tasks=2)
    strategy = build("imm_mode", scenario)
    strategy.after_task(0)
    perturb(strategy.model)
    current = params(strategy.model)
    strategy.after_task(1)
    assert_dicts_close(params(strategy.model), current, rtol=0, atol=0)  # the authors' merge is a no-op
    assert_dicts_close(strategy.previous, current, rtol=0, atol=0)


def test_imm_mode_corrected_is_the_fisher_weighted_mean():
    scenario = make_scenario(n_tasks=3, n_train=25)
    strategy = build("imm_mode", scenario, faithful=False, lamb=1.0)
    model = no_dropout(strategy.model)
    theta0 = params(model)
    fisher0 = loop_fisher(model, scenario, 0)
    strategy.after_task(0)
    assert_dicts_close(params(model), theta0, rtol=0, atol=0)  # nothing to merge after task 1
    perturb(model, names=["layers.", "heads.1."])
    theta1 = params(model)
    # The reference's Fisher of task 1 differentiates its criterion: CE + λ L2 toward θ_0.
    fisher1 = loop_fisher(
        model,
        scenario,
        1,
        extra_loss=lambda m: 1.0 * sum(((p - theta0[n]) ** 2).sum() for n, p in m.named_parameters()) / 2,
    )
    strategy.after_task(1)
    merged = params(model)
    for n in theta1:
        total = fisher0[n] + fisher1[n]
        mode = (fisher1[n] * theta1[n] + fisher0[n] * theta0[n]) / total
        expected = torch.where(total > 0, mode, theta1[n])
        torch.testing.assert_close(merged[n], expected, rtol=1e-4, atol=1e-7, msg=n)
    assert torch.equal(merged["heads.2.weight"], theta1["heads.2.weight"])  # zero Fisher: kept
    assert not torch.allclose(merged["layers.0.weight"], theta1["layers.0.weight"])
    assert_dicts_close(strategy.fisher, {n: fisher0[n] + fisher1[n] for n in fisher0}, rtol=1e-4)


def test_imm_mode_merge_of_hand_made_models_is_the_fisher_weighted_mean():
    """(F_new θ + F_old θ_prev) / (F_new + F_old) per element; where both Fishers are 0 the current value."""
    theta = {"w": torch.tensor([1.0, 2.0, 5.0, -3.0])}
    previous = {"w": torch.tensor([3.0, 4.0, 9.0, 6.0])}
    f_new, f_old = {"w": torch.tensor([1.0, 0.0, 0.0, 2.0])}, {"w": torch.tensor([3.0, 2.0, 0.0, 1.0])}
    # (1·1 + 3·3)/4, (0·2 + 2·4)/2, no Fisher: kept, (2·(-3) + 1·6)/3
    assert mode_merge(theta, previous, f_new, f_old)["w"].tolist() == [2.5, 4.0, 5.0, 0.0]


def test_imm_mode_corrected_merge_of_identical_models_is_that_model():
    theta = {"w": torch.randn(4, 3)}
    f_new, f_old = {"w": torch.rand(4, 3)}, {"w": torch.rand(4, 3)}
    f_old["w"][0] = 0
    f_new["w"][0] = 0
    torch.testing.assert_close(mode_merge(theta, theta, f_new, f_old)["w"], theta["w"])


# ---- LwF -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 4.0])
def test_lwf_distillation_is_the_reference_kd(T):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(7, 5, generator=g) * 3, torch.randn(7, 5, generator=g) * 3
    # p^(1/T) renormalised is softmax(z/T); adding ε/n and renormalising divides by 1+ε.
    q = (F.softmax(student / T, 1) + 1e-5 / 5) / (1 + 1e-5)
    expected = -(F.softmax(teacher / T, 1) * q.log()).sum(1).mean()
    assert distillation(student, teacher, T).item() == pytest.approx(expected.item(), rel=1e-5)


def mlp_logits(weights, x, u):
    """Head u of the small 2-layer MLP written out from a dict of its weights (eval mode: no dropout)."""
    h = x.reshape(len(x), -1)
    for l in range(2):
        h = torch.relu(h @ weights[f"layers.{l}.weight"].T + weights[f"layers.{l}.bias"])
    return h @ weights[f"heads.{u}.weight"].T + weights[f"heads.{u}.bias"]


def test_lwf_loss_distils_every_old_head_of_the_model_after_the_previous_task():
    """A student away from its teacher: the loss is CE of head 2 + λ Σ_{u<2} KD(student u, teacher u) with
    the teacher's logits computed from the weights the test kept after task 2, and KD written out."""
    scenario = make_scenario(n_tasks=3)
    strategy = build("lwf", scenario, lamb=0.7, T=2.0)
    model = strategy.model.eval()
    strategy.after_task(0)
    perturb(model, scale=0.3, seed=3)
    teacher = params(model)
    strategy.after_task(1)
    perturb(model, scale=0.3, seed=4)
    student = params(model)
    x, y = batch(scenario, 2)
    loss, logits = strategy.loss(x, y, 2)
    expected = F.cross_entropy(mlp_logits(student, x, 2), y)
    for u in range(2):
        p = torch.softmax(mlp_logits(teacher, x, u) / 2.0, 1)
        q = torch.softmax(mlp_logits(student, x, u) / 2.0, 1)
        q = (q + 1e-5 / 3) / (q + 1e-5 / 3).sum(1, keepdim=True)
        kd = -(p * q.log()).sum(1).mean()
        assert kd > (-(p * p.log()).sum(1).mean()) + 1e-3  # the student is measurably away from the teacher
        expected = expected + 0.7 * kd
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_lwf_with_the_student_equal_to_the_teacher():
    """With the old model equal to the current one, both in eval mode, each old head's KD term is the
    teacher's (ε-smoothed) entropy, not 0, but its gradient vanishes (up to O(ε)): the distillation
    term is stationary at the teacher, so LwF's loss is the CE plus a constant there."""
    scenario = make_scenario(n_tasks=3)
    strategy = build("lwf", scenario, lamb=2.0)
    model = strategy.model.eval()
    strategy.after_task(0)
    strategy.after_task(1)
    assert not strategy.old.training and not any(p.requires_grad for p in strategy.old.parameters())
    x, y = batch(scenario, 2)
    loss, logits = strategy.loss(x, y, 2)
    entropies = 0
    for u in range(2):
        p = F.softmax(model(x, u), 1).detach()
        entropies = entropies - (p * ((p + 1e-5 / 3) / (1 + 1e-5)).log()).sum(1).mean()
    assert entropies > 0.1
    assert loss.item() == pytest.approx((F.cross_entropy(logits, y) + 2.0 * entropies).item(), rel=1e-5)
    loss.backward()
    for u in range(2):
        assert model.heads[u].weight.grad.abs().max() < 1e-4  # only the O(ε) term
    assert model.heads[2].weight.grad.abs().max() > 1e-3


def test_lwf_without_distillation_weight_is_plain_cross_entropy():
    scenario = make_scenario(n_tasks=2)
    strategy = build("lwf", scenario, lamb=0.0)
    strategy.model.eval()
    strategy.after_task(0)
    perturb(strategy.model)
    x, y = batch(scenario, 1)
    loss, _ = strategy.loss(x, y, 1)
    assert loss.item() == pytest.approx(F.cross_entropy(strategy.model(x, 1), y).item(), abs=ATOL)


def test_lwf_teacher_stays_in_eval_mode_while_the_student_trains():
    scenario = make_scenario(n_tasks=2)
    strategy = build("lwf", scenario)
    strategy.after_task(0)
    strategy.model.train()
    x, _ = batch(scenario, 1)
    assert not strategy.old.training
    with torch.no_grad():
        assert torch.equal(strategy.old(x, 0), strategy.old(x, 0))  # no dropout in the teacher


# ---- LFL -------------------------------------------------------------------------------------------
def mlp_hidden(model, x):
    """The last hidden layer of the 3-layer MLP, written out (eval mode: no dropout)."""
    h = x.reshape(len(x), -1)
    for fc in model.layers:
        h = torch.relu(h @ fc.weight.T + fc.bias)
    return h


def test_lfl_penalty_is_zero_when_the_model_is_unchanged_and_the_plain_formula_otherwise():
    scenario = make_scenario(n_tasks=2, n_train=90)
    strategy = build("lfl", scenario, lamb=0.05)
    model = strategy.model.eval()
    strategy.after_task(0)
    x, y = batch(scenario, 1)
    loss, logits = strategy.loss(x, y, 1)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), abs=ATOL)
    with torch.no_grad():
        h_old = mlp_hidden(model, x)
    perturb(model, names=["layers."], scale=0.02)
    with torch.no_grad():
        d = ((h_old - mlp_hidden(model, x)) ** 2).sum() / 2  # summed over batch and units
    assert d > 0
    # eval mode: per-sample value of the authors' evaluation batches of 64 (here 64 + 26 of the 90)
    with torch.no_grad():
        p = ((h_old - mlp_hidden(model, x)) ** 2).sum(1) / 2
    loss, logits = strategy.loss(x, y, 1)
    expected = 0.05 * (64 * p[:64].sum() + 26 * p[64:].sum()).item() / 90
    assert (loss - F.cross_entropy(logits, y)).item() == pytest.approx(expected, rel=1e-4)
    # train mode (dropout disabled to be deterministic): the plain batch sum, as the reference trains
    no_dropout(model).train()
    loss, logits = strategy.loss(x, y, 1)
    assert (loss - F.cross_entropy(logits, y)).item() == pytest.approx(0.05 * d.item(), rel=1e-4)


def test_lfl_validation_loss_does_not_depend_on_the_evaluation_batch_size():
    scenario = make_scenario(n_tasks=2, n_train=150)
    strategy = build("lfl", scenario)
    strategy.after_task(0)
    perturb(strategy.model, names=["layers."], scale=0.02)
    valid = Data.of(scenario.tasks[1], "train", 1)
    small = Trainer(scenario, Protocol(eval_batch_size=64)).evaluate(strategy, 1, valid)[0]
    large = Trainer(scenario, Protocol(eval_batch_size=1024)).evaluate(strategy, 1, valid)[0]
    assert small == pytest.approx(large, rel=1e-5)


def authors_lfl_validation_loss(strategy, valid, t, lamb, batch_size):
    """Transcribed from the authors' evaluation: batches of their training batch size in order, each
    batch's loss CE mean + λ Σ_n p_n (the penalty summed over the batch), averaged over batches weighted
    by their size."""
    model, old = strategy.model.eval(), strategy.old
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(valid), batch_size):
            x, y, _ = valid.batch(torch.arange(start, min(start + batch_size, len(valid))))
            ce = F.cross_entropy(model(x, t), y)
            penalty = ((mlp_hidden(old, x) - mlp_hidden(model, x)) ** 2).sum() / 2
            total += (ce + lamb * penalty).item() * len(x)
    return total / len(valid)


def test_lfl_validation_loss_is_the_authors_batch_weighted_mean():
    """150 samples make the authors' evaluation batches of 64, 64 and 22."""
    scenario = make_scenario(n_tasks=2, n_train=150)
    strategy = build("lfl", scenario, lamb=0.05)
    strategy.after_task(0)
    perturb(strategy.model, names=["layers."], scale=0.02)
    valid = Data.of(scenario.tasks[1], "train", 1)
    reference = authors_lfl_validation_loss(strategy, valid, 1, 0.05, 64)
    ours = Trainer(scenario, Protocol(eval_batch_size=1024)).evaluate(strategy, 1, valid)[0]
    assert ours == pytest.approx(reference, rel=1e-5)


def test_lfl_validation_batches_are_the_protocol_s_training_batches():
    """Trained with batches of 32, the authors' evaluation runs in batches of 32 (4 of 32 and one of 22 for
    150 samples), which weighs each sample's penalty half as much as batches of 64 would."""
    scenario = make_scenario(n_tasks=2, n_train=150)
    strategy = build("lfl", scenario, lamb=0.05)
    strategy.after_task(0)
    trainer = Trainer(scenario, Protocol(batch_size=32, epochs=1, eval_batch_size=1024), seed=0)
    strategy.train_task(1, trainer)
    perturb(strategy.model, names=["layers."], scale=0.02)
    valid = Data.of(scenario.tasks[1], "train", 1)
    reference = authors_lfl_validation_loss(strategy, valid, 1, 0.05, 32)
    assert trainer.evaluate(strategy, 1, valid)[0] == pytest.approx(reference, rel=1e-5)
    assert authors_lfl_validation_loss(strategy, valid, 1, 0.05, 64) > reference * 1.01


def test_lfl_features_have_no_dropout_on_the_mlp_and_alexnet():
    strategy = build("lfl", make_scenario(n_tasks=2), small=False)
    model = strategy.model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 1.0  # everything below the last hidden layer is zeroed...
    h = model.features(torch.randn(4, 1, 6, 6))
    torch.testing.assert_close(h, torch.relu(model.layers[-1].bias).expand(4, -1))  # ...but h is not
    alex = build("lfl", make_scenario(n_tasks=2, n_train=6, n_test=3, shape=(3, 32, 32), arch="alexnet"), small=False)
    assert isinstance(alex.model.drop_fc2, nn.Identity)  # the authors' alexnet_lfl
    sgd = build("sgd", make_scenario(n_tasks=2), small=False)
    assert [p.shape for p in sgd.model.parameters()] == [p.shape for p in strategy.model.parameters()]


@pytest.mark.slow
def test_empirical_fisher_on_the_alexnet_matches_the_loop():
    scenario = make_scenario(n_tasks=2, n_train=7, n_test=3, shape=(3, 32, 32), arch="alexnet")
    model = no_dropout(build("ewc", scenario, small=False).model)
    fisher = empirical_fisher(model, cross_entropy_of(model, 1), Data.of(scenario.tasks[1], "train", 1), 3)
    assert_dicts_close(fisher, loop_fisher(model, scenario, 1, batch_size=3), rtol=1e-4, atol=1e-10)
