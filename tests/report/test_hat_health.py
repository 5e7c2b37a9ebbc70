"""HAT's mask learning: the measure (cl_bench.strategies.hat_mask_learning) against a hand-computed example, and the
report's plain-words line beside HAT's row for runs whose masks did not learn, did learn, or were made
before the measure existed."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_report import synthetic_records

from cl_bench.cli import main
from cl_bench.report import analyse, health_note, run_health, section_health
from cl_bench.store import Store
from cl_bench.strategies.hat_mask_learning import NOT_LEARNED_BELOW, mask_learning_share, moved_units, units_weighted

# Two layers. Initial state = embedding > 0 (sigmoid(s e) > 0.5 for any s > 0); final state = mask > 0.5.
INITIAL = [[0.3, -0.2, 0.1, -0.5], [1.0, -1.0]]  # on, off, on, off | on, off
FINAL = [[0.9, 0.8, 0.1, 0.5], [0.6, 0.4]]  # on, on, off, off (0.5 is not > 0.5) | on, off


def test_mask_learning_share_by_hand():
    # layer 1: unit 2 opened (off -> on), unit 3 closed (on -> off); units 1 and 4 kept; layer 2 kept
    assert moved_units(INITIAL, FINAL) == 2
    assert mask_learning_share(INITIAL, FINAL) == pytest.approx(2 / 6)
    assert mask_learning_share(INITIAL[0], FINAL[0]) == pytest.approx(2 / 4)  # one layer
    assert mask_learning_share(INITIAL[1], FINAL[1]) == 0.0
    assert units_weighted([0.5, 0.0], [4, 2]) == pytest.approx(2 / 6)  # per-layer shares, as HAT records
    # at threshold 0.85 unit 2's 0.8 is off again: only unit 3 moved
    assert mask_learning_share(np.array(INITIAL[0]), np.array(FINAL[0]), threshold=0.85) == pytest.approx(1 / 4)
    # tensors, as HAT's embeddings and masks are
    e, a = torch.tensor(INITIAL[0]), torch.sigmoid(400 * torch.tensor([0.3, 0.05, -0.2, -0.5]))
    assert mask_learning_share(e, a) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="one value per unit"):
        mask_learning_share(INITIAL, [FINAL[0]])
    assert math.isnan(mask_learning_share([], []))


def _with_learning(moved, capacity=(0.2, 0.4, 0.6)):
    recs = synthetic_records()
    for r in recs:
        if r.strategy == "hat" and r.monitoring:
            r.monitoring = copy.deepcopy(r.monitoring)
            r.monitoring["hat"]["mask_learning"] = {"moved": moved, "capacity": list(capacity), "threshold": 0.5}
    return recs


NOT_LEARNED = [[0.0, 0.0], [0.04, 0.04], [0.02, 0.02]]  # per task, per layer (units 8, 8): 0%, 4%, 2%


def test_masks_that_did_not_learn_are_said_so_beside_hats_row(tmp_path):
    (sec,) = analyse(_with_learning(NOT_LEARNED))
    (h,) = section_health(sec)
    assert h.moved == pytest.approx([0.0, 0.04, 0.02]) and h.capacity == [0.2, 0.4, 0.6]
    assert h.learned is False and NOT_LEARNED_BELOW == 0.10
    note = health_note([h])
    assert note.startswith(
        "HAT (seed 0): its masks have not learned: on average only 2% of the units (0-4% per "
        "task) left their random initial on/off state (below 10%)."
    )
    assert "Capacity used after the last task: 60% of the masked layers' weights." in note
    store = Store(tmp_path / "s.db")
    for r in _with_learning(NOT_LEARNED):
        store.save(r)
    md = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.db")]).stdout
    table_end = md.index("| hat (masks did not learn) | 3 |")  # flagged beside the row
    assert md.index("HAT (seed 0): its masks have not learned") > table_end  # right under the table
    assert md.index("HAT (seed 0): its masks have not learned") < md.index("mean (std) [+-95%")
    tex = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--latex"]).stdout
    assert "HAT (seed 0): its masks have not learned" in tex and "HAT (masks did not learn) & 3 &" in tex
    res = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--html", str(tmp_path / "r.html")])
    html = (tmp_path / "r.html").read_text()
    assert res.exit_code == 0 and "HAT (masks did not learn)</td>" in html
    assert "<p class=note>HAT (seed 0): its masks have not learned" in html


def test_masks_that_learned():
    (sec,) = analyse(_with_learning([[0.3, 0.5], [0.2, 0.2], [0.1, 0.3]]))
    note = health_note(section_health(sec))
    assert note.startswith("HAT (seed 0): masks learned: on average 27% of the units (20-40% per task)")


def test_runs_made_before_the_measure_say_not_measured():
    (sec,) = analyse(synthetic_records())  # monitoring without mask_learning
    (h,) = section_health(sec)
    assert h.moved is None and h.capacity == pytest.approx([0.28, 0.46, 0.64])  # the trace's last point per task
    note = health_note([h])
    assert note.startswith("HAT (seed 0): mask learning not measured (run made before 0.2.0).")
    # mask_sizes [[5, 4], [3, 3], [2, 2]] of 8 units: 25-62%
    assert "Each task's masks keep 25-62% of a layer's units (N(0,1) embeddings start at 50%)." in note
    assert run_health(next(r for r in synthetic_records() if r.strategy == "sgd")) is None
