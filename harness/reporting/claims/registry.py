"""The claims registry: a claim is one decorated check (``@claim``), its statement, its rule
text built from the named constants it reads, and optionally the least data it needs."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not enough data"

@dataclass
class Claim:
    """A claim's verdict on one set of data, with the evidence and the rule that decided it."""

    id: str
    statement: str
    evidence: str
    verdict: str
    rule: str


@dataclass(frozen=True)
class ClaimInputs:
    """What a check (or its count of the least data) may read; it names what it reads as its
    parameters."""

    cells: pd.DataFrame  # metrics.cell_metrics
    rows: pd.DataFrame  # per-iteration rows (load.Loaded.rows)
    fits_n: pd.DataFrame | None = None  # fits.scaling_fits in n and in m
    fits_m: pd.DataFrame | None = None
    #: what the calibrated cost model says beyond the measured cells (check_c6)
    prediction: dict | None = None


_INPUT_NAMES = tuple(f.name for f in dataclasses.fields(ClaimInputs))


def _parameters(fn: Callable) -> list[str]:
    names = list(inspect.signature(fn).parameters)
    unknown = [n for n in names if n not in _INPUT_NAMES]
    if unknown:
        raise TypeError(f"{fn.__name__}: parameter(s) {', '.join(unknown)} are not claim "
                        f"inputs ({', '.join(_INPUT_NAMES)})")
    return names


def _call(fn: Callable, inputs: ClaimInputs):
    return fn(**{name: getattr(inputs, name) for name in _parameters(fn)})


class _RuleFormatter(string.Formatter):
    """``str.format`` that writes a sequence of names as ``a, b`` and a mapping of names to
    sequences as ``a: x, y; b: z``."""

    def format_field(self, value, format_spec: str) -> str:
        if isinstance(value, Mapping):
            return "; ".join(f"{k}: {self.format_field(v, '')}" for k, v in value.items())
        if isinstance(value, (tuple, list)):
            return ", ".join(str(v) for v in value)
        return super().format_field(value, format_spec)


RULE_FORMAT = _RuleFormatter()


@dataclass(frozen=True)
class ClaimSpec:
    """One registered claim."""

    id: str
    statement: str
    #: the rule, with a ``{NAME}`` field (format spec allowed) for each of ``constants``
    template: str
    #: the named values the rule is written from, the same ones the check reads
    constants: Mapping[str, object]
    #: the rule applied: inputs -> (verdict, evidence)
    decide: Callable[..., tuple[str, str]]
    #: the least data the rule needs: inputs -> (what it needs, what the data have, met?)
    needs: Callable[..., tuple[str, str, bool]] | None = None

    @property
    def rule(self) -> str:
        return RULE_FORMAT.format(self.template, **self.constants)

    def result(self, verdict: str, evidence: str) -> Claim:
        return Claim(self.id, self.statement, evidence, verdict, self.rule)

    def check(self, inputs: ClaimInputs) -> Claim:
        return self.result(*_call(self.decide, inputs))

    def least_data(self, inputs: ClaimInputs) -> tuple[str, str, bool] | None:
        return None if self.needs is None else _call(self.needs, inputs)


#: every claim, in the order of the report
REGISTRY: dict[str, ClaimSpec] = {}


def claim(cid: str, *, statement: str, rule: str, constants: Mapping[str, object] | None = None,
          needs: Callable[..., tuple[str, str, bool]] | None = None):
    """Register the decorated function as the check of claim ``cid``; it returns (verdict,
    evidence), the decorated name returns the ``Claim``. ``rule`` is formatted with
    ``constants``: a field without its constant fails here, at import."""
    def register(decide: Callable[..., tuple[str, str]]):
        if cid in REGISTRY:
            raise ValueError(f"claim {cid} is registered twice")
        spec = ClaimSpec(cid, statement, rule, dict(constants or {}), decide, needs)
        for fn in (decide, needs):
            if fn is not None:
                _parameters(fn)
        spec.rule  # noqa: B018 (formats the rule now, so that a missing constant fails early)
        REGISTRY[cid] = spec

        @functools.wraps(decide)
        def check(*args, **kwargs) -> Claim:
            return spec.result(*decide(*args, **kwargs))

        return check

    return register


def check_claims(cells: pd.DataFrame, rows: pd.DataFrame, fits_n: pd.DataFrame,
                 fits_m: pd.DataFrame, prediction: dict | None = None) -> list[Claim]:
    """Every registered claim; a check that fails on odd data reports it instead of raising."""
    inputs = ClaimInputs(cells, rows, fits_n, fits_m, prediction)
    out = []
    for spec in REGISTRY.values():
        if not len(cells):
            out.append(spec.result(UNDECIDED, "no runs"))
            continue
        try:
            out.append(spec.check(inputs))
        except Exception as exc:  # a report with one claim unchecked beats no report
            out.append(spec.result(UNDECIDED, f"check failed: {type(exc).__name__}: {exc}"))
    return out


#: the claims the report decides again on each model depth (docs/reports.md, "Depth")
DEPTH_CLAIMS = ("C1", "C3", "C4")


def claims_by_depth(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``DEPTH_CLAIMS`` decided on the cells of each (model, depth) alone, by the same
    registered rules: one row per depth and claim."""
    out = []
    if "depth" not in cells or not len(cells):
        return pd.DataFrame(out)
    for (model, depth), sub in cells.groupby(["model", "depth"], sort=True):
        part = rows[rows["cell"].isin(sub["cell"])] if len(rows) else rows
        inputs = ClaimInputs(sub, part)
        for cid in DEPTH_CLAIMS:
            try:
                c = REGISTRY[cid].check(inputs)
            except Exception as exc:  # as in check_claims: one unchecked cell of the table
                c = REGISTRY[cid].result(UNDECIDED, f"check failed: {type(exc).__name__}")
            out.append({"model": model, "depth": int(depth), "claim": cid,
                        "verdict": f"**{c.verdict}**", "evidence": c.evidence})
    return pd.DataFrame(out)


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.__dict__ for c in claims])

