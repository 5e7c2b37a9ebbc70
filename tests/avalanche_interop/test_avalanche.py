"""Avalanche interop (cl_bench.avalanche_interop): export, avalanche:NAME strategies, lazy import."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_scenario, requires_mnist, synthetic

from cl_bench import avalanche_interop as ai
from cl_bench.cli import main
from cl_bench.registry import get_strategy
from cl_bench.scenario import Data
from cl_bench.store import Store
from cl_bench.strategy import HparamError
from cl_bench.trainer import Protocol, Trainer

pytest.importorskip("avalanche")


def samples(dataset):
    """(x, y, t) of every sample of an Avalanche dataset, stacked."""
    xs, ys, ts = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.tensor(ys), torch.tensor(ts)


def test_export_has_the_scenarios_samples_labels_and_task_ids():
    scenario = make_scenario(n_tasks=3, n_classes=4, shape=(3, 5, 5))
    for task, mean, std in zip(
        scenario.tasks,
        [(0.1, 0.5, 0.9), (0.3, 0.2, 0.1), (0.5, 0.5, 0.5)],
        [(0.2, 0.3, 0.4), (0.5, 0.25, 0.1), (1.0, 0.5, 0.25)],
    ):
        task.mean, task.std = mean, std  # per-channel constants, so a channel mix-up would show
    bench = ai.to_avalanche(scenario)
    assert set(bench.streams) == {"train", "valid", "test"}
    for split in ("train", "valid", "test"):
        stream = getattr(bench, f"{split}_stream")
        assert len(stream) == 3
        for t, (task, exp) in enumerate(zip(scenario.tasks, stream)):
            assert exp.current_experience == t and exp.task_label == t and exp.task_labels == [t]
            assert set(exp.classes_in_this_experience) == set(getattr(task, split).y.tolist())
            x, y, tid = samples(exp.dataset)
            raw = getattr(task, split)
            torch.testing.assert_close(y, raw.y, rtol=0, atol=0)
            assert (tid == t).all()
            bx, _, _ = Data.of(task, split, t).batch(torch.arange(len(raw)))
            torch.testing.assert_close(x, bx, rtol=0, atol=0)  # cl-bench's own floats, bit for bit
            mean = torch.tensor(task.mean).view(1, 3, 1, 1)
            std = torch.tensor(task.std).view(1, 3, 1, 1)
            torch.testing.assert_close(x, (raw.x.float() / 255 - mean) / std)  # and what they mean


def test_export_valid_stream_is_the_train_stream_where_the_task_validates_on_train():
    scenario = synthetic("mlp", (1, 4, 4), [3, 5])  # valid = train, as the MNIST setups
    bench = ai.to_avalanche(scenario)
    for t in range(2):
        assert bench.valid_stream[t].dataset is bench.train_stream[t].dataset
        assert bench.test_stream[t].dataset is not bench.train_stream[t].dataset
    with pytest.raises(ValueError, match="unknown split"):
        ai.to_avalanche(scenario, streams=("train", "validation"))


def test_mixed_task_batches_go_through_their_own_heads():
    scenario = synthetic("mlp", (1, 4, 4), [3, 5])
    net = get_strategy("sgd")(scenario).model.eval()
    model = ai.task_aware_net(net)
    x = torch.randn(6, 1, 4, 4)
    tasks = torch.tensor([0, 1, 1, 0, 1, 0])
    out = model(x, tasks)
    assert out.shape == (6, 5)
    for i, u in enumerate(tasks.tolist()):
        logits = net(x[i : i + 1], u)[0]
        torch.testing.assert_close(out[i, : len(logits)], logits)
        assert (out[i, len(logits) :] == ai.PAD_LOGIT).all()
    torch.testing.assert_close(model(x, torch.ones(6, dtype=torch.long)), net(x, 1))  # one task: no padding


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid: avalanche:Naive, avalanche:EWC, .*avalanche:LFL"):
        get_strategy("avalanche:Foo")
    with pytest.raises(ValueError, match="did you mean avalanche:EWC"):
        get_strategy("avalanche:ewc")
    with pytest.raises(ValueError, match="did you mean avalanche:SynapticIntelligence"):
        get_strategy("avalanche:SI")
    res = CliRunner().invoke(main, ["run", "-s", "avalanche:Foo", "-c", "split_mnist"])
    assert res.exit_code != 0 and "avalanche:Naive" in res.output and "Traceback" not in res.output


def test_hyperparameters_are_the_constructors_scalar_arguments():
    cls = get_strategy("avalanche:EWC")
    hp = cls.parse_hparams({"ewc_lambda": "5000", "mode": "online", "decay_factor": "0.9"})
    assert (hp.ewc_lambda, hp.mode, hp.decay_factor, hp.keep_importance_data, hp.net) == (
        5000.0,
        "online",
        0.9,
        False,
        "base",
    )
    assert cls.parse_hparams({"ewc_lambda": 1, "decay_factor": "none"}).decay_factor is None
    with pytest.raises(HparamError, match="needs -p ewc_lambda=FLOAT"):
        cls.parse_hparams({})
    with pytest.raises(HparamError, match="no hyperparameter lamb; it accepts: ewc_lambda: float"):
        cls.parse_hparams({"ewc_lambda": 1, "lamb": 2})
    with pytest.raises(HparamError, match="must be float"):
        cls.parse_hparams({"ewc_lambda": "strong"})
    lfl = get_strategy("avalanche:LFL")
    assert lfl.parse_hparams({"lambda_e": 1}).net == "lfl"  # cl-bench's LFL network by default
    assert (lfl.clip_grad, cls.clip_grad, get_strategy("avalanche:Naive").clip_grad) == (
        get_strategy("lfl").clip_grad,
        get_strategy("ewc").clip_grad,
        get_strategy("sgd").clip_grad,
    )


def test_protocol_schedule_and_best_weights_restore():
    """lr / factor after ``patience`` epochs without a better validation loss, stop below lr_min, and
    the best-validation weights in the model when the task ends: replayed from the logged losses."""
    scenario = make_scenario(n_train=60, learnable=False)  # random labels: validation loss stalls
    protocol = Protocol(lr=0.5, lr_factor=4.0, lr_patience=2, lr_min=0.02, epochs=30)
    cls = get_strategy("avalanche:Naive")
    torch.manual_seed(0)
    strategy = cls(scenario, cls.parse_hparams({}))
    trainer = Trainer(scenario, protocol)
    strategy.train_task(0, trainer)
    lrs, losses = [h.lr for h in trainer.history], [h.valid_loss for h in trainer.history]
    lr, patience, best, stopped = protocol.lr, protocol.lr_patience, np.inf, False
    for epoch, loss in enumerate(losses):
        assert lrs[epoch] == pytest.approx(lr)
        if loss < best:
            best, patience = loss, protocol.lr_patience
        else:
            patience -= 1
            if patience <= 0:
                lr, patience = lr / protocol.lr_factor, protocol.lr_patience
                stopped = lr < protocol.lr_min
                if stopped:
                    break
    assert stopped and len(losses) == epoch + 1 < protocol.epochs  # the run stopped on lr, not the cap
    assert len(set(lrs)) > 1 and np.argmin(losses) < len(losses) - 1  # decays; the best is not the last
    valid_loss, _ = trainer.evaluate(strategy, 0, trainer.data(0, "valid"))
    assert valid_loss == pytest.approx(min(losses), rel=1e-6)


def test_methods_snapshot_the_restored_weights_and_lfl_trains_the_new_head():
    scenario = make_scenario(learnable=False)
    torch.manual_seed(0)
    cls = get_strategy("avalanche:EWC")
    ewc = cls(scenario, cls.parse_hparams({"ewc_lambda": 10.0}))
    trainer = Trainer(scenario, Protocol(lr=0.5, epochs=4))
    ewc.train_task(0, trainer)
    losses = [h.valid_loss for h in trainer.history]
    assert np.argmin(losses) < len(losses) - 1  # the restored weights are not the last epoch's
    plugin = next(p for p in ewc.avalanche.plugins if type(p).__name__ == "EWCPlugin")
    for name, p in ewc.avalanche.model.named_parameters():  # EWC's anchor = the restored best weights
        torch.testing.assert_close(plugin.saved_params[0][name].data, p.detach(), rtol=0, atol=0)

    cls = get_strategy("avalanche:LFL")
    lfl = cls(scenario, cls.parse_hparams({"lambda_e": 1.0}))
    trainer = Trainer(scenario, Protocol(epochs=3))
    head = lfl.model.heads[1].weight.detach().clone()
    lfl.train_task(0, trainer)
    assert not lfl.model.heads[1].weight.requires_grad  # Avalanche's LFL froze "the last Linear"
    lfl.train_task(1, trainer)
    assert not torch.equal(lfl.model.heads[1].weight, head)  # ... which is task 2's head: it trained


@requires_mnist
def test_cli_runs_an_avalanche_strategy_into_the_store(tmp_path):
    store = tmp_path / "runs.db"
    res = CliRunner().invoke(
        main,
        [
            "run",
            "-s",
            "avalanche:Naive",
            "-c",
            "split_mnist",
            "--seed",
            "1",
            "--max-train-per-task",
            "300",
            "--set",
            "epochs=2",
            "--threads",
            "1",
            "--store",
            str(store),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    (rec,) = Store(store).query()
    assert (rec.strategy, rec.status, rec.accuracy.shape) == ("avalanche:Naive", "finished", (2, 2))
    assert np.isnan(rec.accuracy[0, 1]) and np.isfinite(rec.accuracy[np.tril_indices(2)]).all()
    assert rec.accuracy[0, 0] > 0.5 and rec.accuracy[1, 1] > 0.5  # learned (chance: 0.2)
    assert [(h["task"], h["epoch"], h["lr"]) for h in rec.history] == [
        (0, 1, 0.05),
        (0, 2, 0.05),
        (1, 1, 0.05),
        (1, 2, 0.05),
    ]
    assert rec.monitoring["avalanche"]["class"].endswith(".Naive")
    report = CliRunner().invoke(main, ["report", "--store", str(store)])
    assert report.exit_code == 0 and "avalanche:Naive" in report.output


def run_python(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_the_core_and_the_cli_never_import_avalanche():
    out = run_python(
        "import sys, cl_bench, cl_bench.cli\n"
        "from cl_bench.registry import all_strategies, get_strategy\n"
        "all_strategies(); get_strategy('ewc')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'avalanche'))"
    )
    assert out == "[]"


def test_missing_avalanche_says_how_to_install_it():
    out = run_python(
        "import sys; sys.modules['avalanche'] = None\n"
        "from cl_bench.registry import get_strategy\n"
        "try:\n    get_strategy('avalanche:EWC')\n"
        "except ValueError as e:\n    print(type(e).__name__, e)"
    )
    # the command for how this cl-bench is installed: this checkout, editable
    assert out.startswith("AvalancheNotInstalled") and "pip install -e '" in out and "[avalanche]'" in out
