"""Reports from a results store: merge every cell, fit scaling laws, draw the paper figures,
check the claims C1–C6 of the spec, and write ``REPORT.md`` (``nlt-report``).

Modules, in the order the report uses them: ``load`` (cells → pandas, problems listed, never
raised), ``metrics`` (per-cell quantities: time per iteration, iterations and time to a target
relative loss, censoring), ``fits`` (log-log slopes with bootstrap intervals on the range where
the cost model's leading term dominates), ``figures``, ``tables`` (headline, crossover,
environment, problems), ``claims``, ``report``.
"""
