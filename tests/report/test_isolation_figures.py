"""HAT's weight-mask peers (PackNet, WSN) beside HAT in Figs. 5-6: the report draws each one's capacity
after every task and its weight reuse, and the drawn values are the runs' stored monitoring.

The peers' monitoring comes from real (tiny) PackNet and WSN runs on a synthetic 3-task scenario, stored
with test_report's synthetic store (HAT monitoring on seed 0); the expected values are read back from the
store here, by strategy and seed, and HAT's from its hand-made trace, without the report's helpers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import synthetic
from test_report import DATA, OPTIONS, PROTOCOL, SCENARIO, T, matrix, synthetic_store

from cl_bench.cli import main
from cl_bench.report import analyse, build_figures, plots
from cl_bench.report.style import KNOWN_COLORS
from cl_bench.store import RunRecord, Store
from cl_bench.strategies.packnet import PackNet
from cl_bench.strategies.wsn import WSN
from cl_bench.trainer import Protocol, Trainer

SLUG = "toy__max_train_per_task-50__epochs-2"
HAT_LABEL = "HAT (s_max=400, c=0.75), seed 0"
PACKNET_LABEL = "PackNet (not in the paper), seed 0"
WSN_LABEL = "WSN (not in the paper), seed 0"
# test_report.monitoring(): samples at steps 0, 3, ..., 27 of usage 0.1 + 0.02 step, task = step // 10;
# its last sample of each task is at step 9, 18, 27
HAT_CAPACITY_LAST_SAMPLES = [0.1 + 0.02 * 9, 0.1 + 0.02 * 18, 0.1 + 0.02 * 27]
HAT_REUSE = [[None, 0.6, 0.5], [None, None, 0.7], [None, None, None]]


def peer_record(cls, seed: int) -> RunRecord:
    """A real PackNet or WSN run of 3 tasks (default hyperparameters, 1 epoch each) stored as a record."""
    sc = synthetic("mlp", (1, 6, 6), [3] * T, n=16, seed=seed)
    torch.manual_seed(seed)
    hp = cls.parse_hparams({})
    strategy = cls(sc, hp)
    trainer = Trainer(sc, Protocol(epochs=1), seed=seed)
    for t in range(T):
        strategy.before_task(t)
        strategy.train_task(t, trainer)
        strategy.after_task(t)
    return RunRecord(
        f"{cls.name}-{seed}",
        cls.name,
        SCENARIO,
        seed,
        dataclasses.asdict(hp),
        dict(PROTOCOL),
        dict(OPTIONS),
        "finished",
        matrix("sgd", seed),  # the figures under test read the monitoring only
        tags=["r1"],
        code_version="0.1.0+gtest",
        data=DATA,
        wall_s=1.0,
        monitoring=strategy.monitoring(),
    )


@pytest.fixture(scope="module")
def peers() -> list[RunRecord]:
    return [peer_record(WSN, 1), peer_record(PackNet, 0), peer_record(WSN, 0)]  # seed 1 first


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, peers):
    path = tmp_path_factory.mktemp("peers") / "x.db"
    store = synthetic_store(path)
    for rec in peers:
        store.save(rec)
    return path


@pytest.fixture(scope="module")
def drawn(store_path):
    """The peers' figures of the whole store, drawn once for the tests that read them."""
    figs = peer_figures(Store(store_path).query())
    yield figs
    for item in figs.values():
        plots.plt.close(item.figure)


def stored(path, strategy: str, seed: int) -> dict:
    (rec,) = [r for r in Store(path).query() if r.strategy == strategy and r.seed == seed]
    return rec.monitoring["isolation"]


def stored_capacity_percent(iso: dict) -> list[float]:
    by_task = {int(p["task"]): p["usage"] for p in iso["capacity"]}
    return [100 * by_task[t] for t in range(T)]


def shown_reuse_percent(reuse) -> np.ma.MaskedArray:
    """Rows t_1..t_{T-1}, columns t_2..t_T, in %, masked where the reuse is undefined."""
    rows = [[np.nan if v is None else 100 * v for v in row[1:]] for row in reuse[:-1]]
    return np.ma.masked_invalid(np.array(rows, dtype=float))


def peer_figures(records) -> dict[str, object]:
    """The peers' figures build_figures draws, by file stem (others closed)."""
    out = {}
    for item in build_figures(analyse(records)):
        if "_peers_" in item.name and item.figure is not None:
            out[item.name.removesuffix("_" + SLUG)] = item
        elif item.figure is not None:
            plots.plt.close(item.figure)
    return out


def lines_by_label(fig) -> dict[str, object]:
    return {ln.get_label(): ln for ln in fig.axes[0].get_lines()}


def panels_by_title(fig) -> dict[str, np.ma.MaskedArray]:
    """Each panel's heatmap by its title (unwrapped)."""
    return {
        ax.get_title().replace("\n", " "): ax.collections[0].get_array()
        for ax in fig.axes
        if ax.get_title() and ax.collections
    }


def test_the_fixture_peers_differ_so_a_swap_would_show(store_path):
    packnet, wsn0, wsn1 = stored(store_path, "packnet", 0), stored(store_path, "wsn", 0), stored(store_path, "wsn", 1)
    assert stored_capacity_percent(packnet) != stored_capacity_percent(wsn0)
    assert stored_capacity_percent(wsn0) != stored_capacity_percent(wsn1)  # the lowest seed is told apart
    assert packnet["reuse"][0][1] == 1.0 and wsn0["reuse"][0][1] != 1.0


def test_report_writes_the_peer_figures_with_captions(peers, tmp_path):
    """From the command line, on a store of the peers alone (few figures: fast): drawn without HAT."""
    store = Store(tmp_path / "peers.db")
    for rec in peers:
        store.save(rec)
    out = tmp_path / "figs"
    res = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "peers.db"), "--figures", str(out)])
    assert res.exit_code == 0, res.output
    for stem in ("fig5_capacity_peers", "fig6_reuse_peers"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}_{SLUG}.{ext}").stat().st_size > 1000, (stem, ext)
    captions = {
        line.split("`")[1]: line for line in (out / "captions.md").read_text().splitlines() if line.startswith("- `")
    }
    for stem in ("fig5_capacity_peers", "fig6_reuse_peers"):
        text = captions[f"{stem}_{SLUG}"]
        assert PACKNET_LABEL in text and WSN_LABEL in text and "HAT (" not in text, text
        assert "0-100" in text and "No HAT run" in text and "Not the paper's full protocol" in text
    assert captions[f"fig5_capacity_{SLUG}"].endswith("not drawn: no HAT run")


def test_captions_say_what_each_curve_is(drawn):
    capacity, reuse = drawn["fig5_capacity_peers"].caption, drawn["fig6_reuse_peers"].caption
    for text in (capacity, reuse):
        assert all(label in text for label in (HAT_LABEL, PACKNET_LABEL, WSN_LABEL)), text
        assert "0-100" in text and "Not the paper's full protocol" in text
    assert f"{HAT_LABEL}: the last sample of task t in its Fig. 5 trace" in capacity
    assert f"{PACKNET_LABEL}: the weights owned by tasks ≤ t" in capacity
    assert f"{WSN_LABEL}: the union of the subnetworks of tasks ≤ t" in capacity
    assert "PackNet's reuse is 100% by construction" in reuse


def test_capacity_lines_are_each_runs_stored_capacity_after_every_task(store_path, drawn):
    fig = drawn["fig5_capacity_peers"].figure
    lines = lines_by_label(fig)
    expected = {
        HAT_LABEL: [100 * u for u in HAT_CAPACITY_LAST_SAMPLES],
        PACKNET_LABEL: stored_capacity_percent(stored(store_path, "packnet", 0)),
        WSN_LABEL: stored_capacity_percent(stored(store_path, "wsn", 0)),
    }
    assert set(lines) == set(expected)
    for label, values in expected.items():
        np.testing.assert_allclose(lines[label].get_ydata(), values, rtol=1e-12, err_msg=label)
        np.testing.assert_array_equal(lines[label].get_xdata(), np.arange(1, T + 1))
    colors = {HAT_LABEL: "hat", PACKNET_LABEL: "packnet", WSN_LABEL: "wsn"}
    assert {label: lines[label].get_color() for label in colors} == {k: KNOWN_COLORS[s] for k, s in colors.items()}


def test_reuse_panels_are_each_runs_stored_reuse(store_path, drawn):
    fig = drawn["fig6_reuse_peers"].figure
    panels = panels_by_title(fig)
    expected = {
        HAT_LABEL: shown_reuse_percent(HAT_REUSE),
        PACKNET_LABEL: shown_reuse_percent(stored(store_path, "packnet", 0)["reuse"]),
        WSN_LABEL: shown_reuse_percent(stored(store_path, "wsn", 0)["reuse"]),
    }
    assert set(panels) == set(expected)
    for label, want in expected.items():
        got = panels[label].reshape(want.shape)
        np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want), err_msg=label)
        np.testing.assert_allclose(got.compressed(), want.compressed(), rtol=1e-12, err_msg=label)
    # WSN's reuse short of 100 % is not printed as PackNet's 100 %
    wsn_texts = [t.get_text() for ax in fig.axes if ax.get_title().replace("\n", " ") == WSN_LABEL for t in ax.texts]
    assert wsn_texts and "100" not in wsn_texts


def test_hat_post_task_capacity_is_preferred_to_its_trace(store_path):
    """A HAT run from 0.2.0 on stores its capacity after each task: that, not the trace, is drawn."""
    after_task = [0.3, 0.55, 0.8]
    records = [r for r in Store(store_path).query() if r.strategy in ("hat", "packnet", "wsn")]
    for r in records:
        if r.strategy == "hat" and r.monitoring:
            r.monitoring["hat"]["mask_learning"] = {"capacity": after_task}
    figs = peer_figures(records)
    line = lines_by_label(figs["fig5_capacity_peers"].figure)[HAT_LABEL]
    np.testing.assert_allclose(line.get_ydata(), [100 * u for u in after_task], rtol=1e-12)
    assert f"{HAT_LABEL}: weights whose cumulative mask a≤t is above 0.5 once task t is learned" in (
        figs["fig5_capacity_peers"].caption
    )
    for item in figs.values():
        plots.plt.close(item.figure)
