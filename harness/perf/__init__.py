"""Performance tooling on top of everything else: the cost-model calibration
(``calibrate``: ``nlt-bench --calibrate``) and the side-by-side benchmark ``nlt-bench``
(``bench``). Both drive the runner's loop (``harness.execution.loop``).

May import: every other layer.
"""
