"""Running cells: the run schema and its validation (``config``), the pre-flight of a whole
command line (``preflight``), the Hydra application and its adapter (``app``,
``hydra_adapter``), process isolation (``isolation``), suites of sweeps (``suites``), the
runner and its timing loop (``runner``, ``loop``), the results store and its migrations
(``results``, ``migrate``), the end-of-sweep table (``summary``) and ``nlt-list``.

May import: ``harness.common``, ``linalg``, ``model``, ``sketches``, ``algorithms``,
``costmodel``.
"""
