"""Benchmark harness for second-order training of overparametrized two-layer ReLU networks.

Reproduces van den Brand, Peng, Song, Weinstein, "Training (Overparametrized) Neural Networks
in Near-Linear Time" (ITCS 2021, arXiv 2006.11648) against its baselines.

Packages by job, each importing only from the layers before it (``LAYERS``; a test walks every
import, function-level ones included, and holds the order; docs/architecture.md draws it):

1. ``harness.common``: errors, registry, device, clocks, atomic io, provenance, flop terms;
2. ``harness.linalg``: the pattern kernels and their routes, Hadamard, Krylov solvers;
3. ``harness.model``: the problems (two-layer, MLP), their operators and data;
4. ``harness.sketches``: the sketches S of BPSW21's preconditioner, one file each;
5. ``algorithms``: the methods, one file each (a top-level package: plugins live beside it);
6. ``harness.costmodel``: predictions from a profile and the plugins' own formulas;
7. ``harness.execution``: configuration, pre-flight, the Hydra app, runner, results store;
8. ``harness.reporting``: loading stores, fits, claims, figures, ``nlt-report``;
9. ``harness.perf``: calibration and ``nlt-bench``.
"""

__version__ = "0.1.0"

#: The layer order: a module may import from its own layer and the layers before it.
LAYERS = ("harness.common", "harness.linalg", "harness.model", "harness.sketches",
          "algorithms", "harness.costmodel", "harness.execution", "harness.reporting",
          "harness.perf")
