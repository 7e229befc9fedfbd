"""``nlt-run``: the Hydra application that runs one cell, or a sweep of cells with ``-m``.

    nlt-run algorithm=gn_gram data.n=256 model.m=4096
    nlt-run -m algorithm=gd,gn_gram data.n=64,128,256
    nlt-run -m +sweep=demo

Every command line is validated before any job starts (one line and exit code 2 on bad
input); a sweep ends with a table of its cells and exits 1 if any cell failed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.cli import fail, guarded, split_argv
from harness.config import CONF_DIR, register_configs
from harness.errors import ConfigError
from harness.summary import format_table, summary_table, sweep_cells, write_outcome

PROG = "nlt-run"
log = logging.getLogger("harness")
_FAILED_STATUSES = ("failed",)


class SweepSummary(Callback):
    """Prints the one-screen table of a sweep's cells and remembers whether any failed."""

    any_failed = False

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        cells = sweep_cells(sweep_dir)
        if not cells:
            return
        table = summary_table(cells)
        table.to_csv(sweep_dir / "summary.csv", index=False)
        print("\n" + format_table(table), flush=True)
        print(f"summary: {sweep_dir / 'summary.csv'}; results in {config.store}/", flush=True)
        SweepSummary.any_failed = bool(table["status"].isin(_FAILED_STATUSES).any())


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(cfg: DictConfig) -> str:
    from harness.runner import run_cell

    try:
        outcome = run_cell(cfg)
    except ConfigError as exc:
        fail(PROG, str(exc))
    hc = HydraConfig.get()
    write_outcome(Path(hc.runtime.output_dir), outcome.cell, outcome.status)
    if hc.mode.name == "RUN":
        print(f"{outcome.status}: {outcome.reason or '-'}\nresults: {outcome.cell}", flush=True)
        if outcome.status in _FAILED_STATUSES:
            sys.exit(1)
    return outcome.status


def main() -> None:
    split = split_argv(sys.argv[1:])
    if split is not None and not split[1]:
        from harness.preflight import preflight

        guarded(PROG, lambda: preflight(split[0]))
    register_configs()
    _app()
    if SweepSummary.any_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
