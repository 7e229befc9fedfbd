"""The notebook API in one script (docs/notebook.md): run a few tiny cells, load them as
DataFrames, draw a registered figure from a slice, and write the HTML report.

    python docs/examples/notebook_example.py [WORKDIR]

Everything goes under WORKDIR (default: a new temporary directory); about a minute on a
laptop CPU. tests/test_notebook.py runs it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from harness.reporting import api

work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="nlt_nb_"))
store = work / "results"

# 1. Run cells from Python: the same overrides as nlt-run, a comma list sweeps.
ran = api.run("algorithm=gd,gn_gram", "data.n=32,64", "model.m=128", "max_iters=5",
              store=store)
print(ran[["status", "reused"]].value_counts().to_string())

# 2. Load the store as DataFrames: one row per cell, and one row per outer step.
res = api.load(store)
cells, rows = res.cells, res.rows
print(cells[["algorithm", "n", "m", "status", "time_per_iter_amortised_s"]]
      .sort_values(["algorithm", "n"]).to_string(index=False))

# 3. Ask the data a question with pandas (each row carries its cell's algorithm, n, m, ...):
#    the median step time per method and n.
print(rows[rows["iter"] > 0].groupby(["algorithm", "n"])["step_time_s"].median().to_string())

# 4. Draw any registered figure from a DataFrame (here: a slice of the cells).
print(api.figures()[["number", "name"]].to_string(index=False))
for fig in api.figure("loss_vs_iter", cells[cells["n"] == 64], rows):
    fig.savefig(work / "loss_n64.png")
    print("figure:", work / "loss_n64.png", "-", fig.caption[:60], "...")
try:
    api.figure(11, cells, rows)  # the crossover map needs an (n, m) grid: it says so
except api.NotDrawn as why:
    print("figure 11 not drawn:", why)

# 5. The whole report, with its self-contained HTML page.
print("report:", api.html(store, out=work / "report"))
