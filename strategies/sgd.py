"""SGD: plain fine-tuning of the whole network, dropout on, one head per task (as the authors' code)."""

from cl_bench.registry import register_strategy
from cl_bench.strategy import Strategy


@register_strategy
class SGD(Strategy):
    """Sequential fine-tuning: the lower bound every continual-learning method must beat."""

    name = "sgd"
    clip_grad = 10000.0
    keeps = ()  # everything is in the model
