"""The mixture copies only what each split keeps: grey images stay 1 channel expanded with stride 0
(the same values as the 3-channel copies they replace), and a cap then copies only its samples."""

import torch

from cl_bench.benchmarks.datasets import own, take
from cl_bench.benchmarks.mixture import split_task
from cl_bench.scenario import Split


def grey(n=50):
    x1 = torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8)
    return x1, x1.expand(-1, 3, -1, -1)


def test_take_and_own_give_the_values_of_a_full_copy_in_a_third_of_the_memory():
    x1, view = grey()
    full = view.contiguous()
    idx = torch.randperm(50)[:20]
    for got in (take(view, idx), own(view)):
        assert got.stride(1) == 0 and got.untyped_storage().nbytes() <= x1.numel()  # one channel held
    assert torch.equal(take(view, idx), full[idx]) and torch.equal(own(view), full)
    assert own(view).untyped_storage().data_ptr() != x1.untyped_storage().data_ptr()  # detached
    rgb = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(take(rgb, idx), rgb[idx]) and torch.equal(own(rgb), rgb)
    assert take(rgb, idx).is_contiguous()


def test_a_split_task_of_views_equals_one_of_copies_and_a_cap_materialises_only_what_it_keeps():
    _x1, view = grey()
    y = torch.arange(50) % 5
    test = Split(own(view[:10]), y[:10])
    a = split_task("g", 5, view, y, test, 0, 0.2, "reference", (0.5,), (0.5,))
    b = split_task("g", 5, view.contiguous(), y, test, 0, 0.2, "reference", (0.5,), (0.5,))
    for s in ("train", "valid"):
        assert torch.equal(getattr(a, s).x, getattr(b, s).x) and torch.equal(getattr(a, s).y, getattr(b, s).y)
    capped = a.train.x[torch.tensor([0, 3])]  # what build_scenario's cap does
    assert capped.is_contiguous() and capped.shape == (2, 3, 32, 32)
    zero = split_task("g", 5, view, y, test, 0, 0.0, "reference", (0.5,), (0.5,))
    assert torch.equal(zero.train.x, view) and zero.valid is zero.train
