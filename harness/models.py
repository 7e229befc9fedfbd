"""The built-in models, imported on first use of ``harness.problem.MODELS``.

``two_layer`` (harness/problem.py) is BPSW21's model and the default; ``mlp``
(harness/mlp.py) trains L hidden layers through the same ``Problem`` protocol. A model from
another package registers under the entry-point group ``nlt.models``.
"""
import harness.mlp  # noqa: F401  (registers "mlp")
import harness.problem  # noqa: F401  (registers "two_layer")
