"""The claims check: C1–C6 of the spec (§5), each decided by an explicit rule on the measured
data, with the numbers that decided it.

Verdicts: ``supported``, ``contradicted``, ``not enough data`` (the data needed are missing, or
present but not decisive under the rule; the evidence says which).

A claim is one registration (``@claim``, below): its statement, the rule text shown in the
report, the named constants that text is written from (thresholds, minimum sizes, margins:
module constants, so a reader can see and change them in one place, and the check reads the
same ones), the function that applies the rule and, optionally, the least data the rule needs
(the report's "what these data can decide" table). ``check_claims`` and that table read the
registry, so a new claim is one decorated function::

    @claim("C7", statement="...", rule="... at least {C7_MIN} runs ...",
           constants={"C7_MIN": C7_MIN})
    def check_c7(cells: pd.DataFrame) -> tuple[str, str]:
        ...
        return verdict, evidence

A check names the inputs it reads as its parameters (``ClaimInputs``: ``cells``, ``rows``,
``fits_n``, ``fits_m``, ``prediction``) and returns (verdict, evidence); called directly it
returns the ``Claim``.
"""

from harness.reporting.claims import c1, c2, c3, c4, c5, c6  # noqa: F401  (register the claims)
from harness.reporting.claims.c1 import check_c1
from harness.reporting.claims.c2 import check_c2
from harness.reporting.claims.c3 import check_c3
from harness.reporting.claims.c4 import check_c4, trajectory_gaps
from harness.reporting.claims.c5 import check_c5
from harness.reporting.claims.c6 import check_c6
from harness.reporting.claims.common import (
    C1_GROWTH,
    C1_SLACK,
    C2_ABSENT,
    C2_DOMINANT,
    C2_FIT_BAD,
    C2_FIT_GOOD,
    C2_LEADING,
    C2_METHODS,
    C4_AGREE,
    C4_DISAGREE,
    C4_MIN_PAIRS,
    C4_PAPER_TOL,
    C4_RATE,
    C5_TOLERANCE,
    C6_MIN_CELLS,
    C6_MIN_GROWTH_CELLS,
    C6_MIN_NS,
    C6_MIN_SEEDS,
    CAP_FACTOR,
    FLAT_MAX,
    GD_GROWTH,
    LAMBDA_FRACTION,
    NTK_SLOPE,
)
from harness.reporting.claims.registry import (
    CONTRADICTED,
    DEPTH_CLAIMS,
    REGISTRY,
    SUPPORTED,
    UNDECIDED,
    Claim,
    ClaimInputs,
    ClaimSpec,
    check_claims,
    claim,
    claims_by_depth,
    claims_frame,
)

__all__ = ["C1_GROWTH", "C1_SLACK", "C2_ABSENT", "C2_DOMINANT", "C2_FIT_BAD", "C2_FIT_GOOD",
           "C2_LEADING", "C2_METHODS", "C4_AGREE", "C4_DISAGREE", "C4_MIN_PAIRS",
           "C4_PAPER_TOL", "C4_RATE",
           "C5_TOLERANCE", "C6_MIN_CELLS", "C6_MIN_GROWTH_CELLS", "C6_MIN_NS", "C6_MIN_SEEDS",
           "CAP_FACTOR", "CONTRADICTED",
           "Claim", "ClaimInputs", "ClaimSpec", "DEPTH_CLAIMS", "FLAT_MAX", "GD_GROWTH",
           "LAMBDA_FRACTION", "NTK_SLOPE", "REGISTRY", "SUPPORTED", "UNDECIDED", "check_c1",
           "check_c2", "check_c3", "check_c4", "check_c5", "check_c6", "check_claims", "claim",
           "claims_by_depth", "claims_frame", "trajectory_gaps"]
