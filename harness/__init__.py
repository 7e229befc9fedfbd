"""Benchmark harness for second-order training of overparametrized two-layer ReLU networks.

Reproduces van den Brand, Peng, Song, Weinstein, "Training (Overparametrized) Neural Networks
in Near-Linear Time" (ITCS 2021, arXiv 2006.11648) against its baselines. The math lives in
``harness.problem`` (model and matrix-free operators); the clock lives in ``harness.runner``.
"""

__version__ = "0.1.0"
