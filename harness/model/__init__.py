"""The model layer: the problems methods train, their data, and the seam between them.

``protocols`` holds what a method may use of a model (``Problem``, ``Jacobian``) and what a
model declares (``Model``, ``MODELS``, ``Shape``); ``two_layer`` is BPSW21's model, ``mlp``
the deep ReLU network through the same protocol; ``data/`` holds one file per dataset;
``ntk`` the m → ∞ limit. ``make_problem`` builds a problem from a dataset and a model, each
from its own random stream.

May import: ``harness.common``, ``harness.linalg``.
"""

import numpy as np
import torch

from harness.common.errors import ConfigError
from harness.model import mlp, two_layer  # noqa: F401  (register the built-in models)
from harness.model.data import DATASETS
from harness.model.protocols import (
    LAYERED,
    MODELS,
    STREAMS,
    TWO_LAYER,
    Jacobian,
    Linearization,
    Model,
    Problem,
    Shape,
    make_generator,
    register_model,
    stream_seed,
)

__all__ = ["LAYERED", "MODELS", "STREAMS", "TWO_LAYER", "Jacobian", "Linearization", "Model",
           "Problem", "Shape", "make_generator", "make_problem", "register_model",
           "stream_seed"]


def make_problem(dataset: str, n: int, d: int, m: int, seed: int = 0, *,
                 data_seed: int | None = None, init_seed: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 model: str = "two_layer", depth: int = 1, **data_params):
    """Build the problem from its own random streams: data and init never share a generator.

    Data and initialisation are drawn in float64 on the CPU and then cast, so a seed means the
    same problem on every device and dtype. ``model`` names a registered model (``MODELS``).
    """
    for key, value in (("data.n", n), ("data.d", d), ("model.m", m), ("model.depth", depth)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    model_cls = MODELS.get(model)
    reason = model_cls.check_sizes(m, depth)
    if reason:
        raise ConfigError(reason)
    spec = DATASETS.get(dataset)
    data_gen = make_generator(stream_seed(seed, "data") if data_seed is None else data_seed)
    X, y = spec.load(n, d, data_gen, **data_params)
    init_gen = make_generator(stream_seed(seed, "init") if init_seed is None else init_seed)
    return model_cls.build(X, y, m=m, depth=depth, init_gen=init_gen, device=device,
                           dtype=dtype, info={"dataset": dataset, **data_params})
