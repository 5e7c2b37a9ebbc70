"""The base networks: the reference's parameter counts, and the layer-by-layer description agrees."""

import pytest

from cl_bench import nets
from cl_bench.scenario import Scenario


def scenario(arch, shape, heads):
    class _Task:
        def __init__(self, n):
            self.n_classes = n

    return Scenario("s", [_Task(n) for n in heads], shape, arch, 0)


MIXTURE_HEADS = [100, 10, 100, 10, 10, 10, 43, 10]  # seed-0 order: 293 classes


@pytest.mark.parametrize(
    "arch, shape, heads, variant, expected",
    [
        (
            "alexnet",
            (3, 32, 32),
            MIXTURE_HEADS,
            "base",
            7_104_229,
        ),  # the authors' AlexNet-like net, seed-0 mixture heads
        ("alexnet", (3, 32, 32), [2] * 5 + [20] * 5, "base", 6_729_262),  # incremental CIFAR
        ("mlp", (784,), [10] * 10, "base", 1_989_700),  # the authors' 3x800 MLP, pMNIST
        ("mlp", (1, 28, 28), [5, 5], "base", 1_917_610),  # split MNIST
        ("mlp", (1, 28, 28), [5, 5], "hat", 5_600_010 - 2 * 4000),  # HAT's 2x2000 MLP minus its embeddings
        ("alexnet", (3, 32, 32), MIXTURE_HEADS, "lfl", 7_104_229),  # LFL's net: no fc2 dropout, same count
    ],
)
def test_reference_parameter_counts(arch, shape, heads, variant, expected):
    assert nets.count_parameters(nets.build_network(scenario(arch, shape, heads), variant)) == expected


@pytest.mark.parametrize("arch, shape", [("alexnet", (3, 32, 32)), ("mlp", (1, 28, 28))])
def test_layer_description_matches_the_network(arch, shape):
    sc = scenario(arch, shape, [10])
    net = nets.build_network(sc)
    blocks = nets.base_blocks(sc)
    inputs, _ = nets.layer_inputs(blocks, [b.width for b in blocks], shape)
    built = [nets.make_layer(b, n_in, b.width) for b, n_in in zip(blocks, inputs)]
    assert [tuple(m.weight.shape) for m in built] == [tuple(m.weight.shape) for m in net.layers]
