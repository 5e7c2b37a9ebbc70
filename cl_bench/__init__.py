"""cl-bench: a continual-learning benchmark harness re-implementing the protocol of HAT (Serra et al. 2018)."""
__version__ = "0.2.0"
