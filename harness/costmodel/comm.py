r"""Communication in the cost model: a step of a cell sharded over P ranks (``distributed``,
``harness.model.sharded``) priced as its local work at ⌈m/P⌉ neurons plus its all-reduces.

An all-reduce of b bytes over P ranks on a ring costs

    t(b, P) = 2(P − 1)·α + 2(P − 1)/P · b / β

with α the latency of one message and β the bandwidth of one link (``Link``). The two-layer
operators send what the sharded problem sends: the outputs (n), J·v and each Gram product of
CG (n, or n·k for a block), the Gram matrix (n²) and a sketch (s·n); Jᵀ·g and the update send
nothing. ``ShardedCosts`` adds these to the model's operators, so every method's own
``step_seconds`` prices its sharded step unchanged.

A link is measured (``harness.perf.comm``: gloo over loopback on this machine) or assumed from
published rates (``CLUSTER_LINKS``, labelled as such): predictions on it are predictions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from harness.common.errors import ConfigError
from harness.costmodel.pricing import Costs


@dataclass(frozen=True)
class Link:
    """All-reduce rates of one backend on one interconnect: ``latency_s`` (α, seconds per
    message), ``bandwidth`` (β, bytes per second per link), where the numbers come from."""

    name: str
    latency_s: float
    bandwidth: float
    source: str

    def allreduce(self, nbytes: float, world: int) -> float:
        """Seconds of a ring all-reduce of ``nbytes`` over ``world`` ranks (0 on one rank)."""
        if world <= 1:
            return 0.0
        return 2 * (world - 1) * self.latency_s + \
            2 * (world - 1) / world * float(nbytes) / self.bandwidth

    def to_dict(self) -> dict:
        return asdict(self)


#: no communication at all (the local work of a sharded step alone)
NO_LINK = Link("none", 0.0, math.inf, "no communication")

#: Assumed rates of two cluster interconnects, from vendors' published figures (predictions
#: on them are labelled as predictions): NVLink 4 between the 8 GPUs of an H100 SXM node
#: (450 GB/s per direction, NCCL's latency of some microseconds), and 100 Gb/s InfiniBand
#: between nodes.
CLUSTER_LINKS = {
    "nvlink_h100": Link("8 × H100 SXM, NVLink 4 (assumed, datasheet rates)", 10e-6, 450e9,
                        "published: NVIDIA H100 datasheet, 900 GB/s bidirectional NVLink"),
    "infiniband_100g": Link("100 Gb/s InfiniBand between nodes (assumed)", 5e-6, 12.5e9,
                            "published: 100 Gb/s link rate; latency a typical RDMA figure"),
}


def fit_link(world: int, sizes: list[float], seconds: list[float], name: str,
             source: str) -> Link:
    """α and β from all-reduce times of ``sizes`` bytes over ``world`` ranks: least squares
    of t = 2(P−1)α + 2(P−1)/P · b/β on relative error (each size weighs the same)."""
    if world < 2 or len(sizes) < 2:
        raise ConfigError("fit_link needs world >= 2 and at least two sizes")
    b = np.asarray(sizes, dtype=float)
    t = np.asarray(seconds, dtype=float)
    A = np.stack([np.full_like(b, 2.0 * (world - 1)), 2.0 * (world - 1) / world * b], axis=1)
    w = 1.0 / t
    coef, *_ = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)
    alpha = max(float(coef[0]), 0.0)
    inv_beta = max(float(coef[1]), 1e-15)
    return Link(name, alpha, 1.0 / inv_beta, source)


class ShardedCosts(Costs):
    """``Costs`` of one rank of P: the model's operators at ⌈m/P⌉ neurons plus the
    all-reduce each sends over ``link``. ``comm_s`` adds up the all-reduces priced so far."""

    def __init__(self, *args, world: int, link: Link, **kwargs):
        super().__init__(*args, **kwargs)
        self.world, self.link = int(world), link
        self.comm_s = 0.0

    def _m(self, m: float) -> float:
        return math.ceil(m / self.world)

    def _allreduce(self, elements: float) -> float:
        t = self.link.allreduce(elements * self.itemsize, self.world)
        self.comm_s += t
        return t

    def params(self, m: float, d: float) -> float:
        return super().params(self._m(m), d)

    def forward(self, n: float, m: float, d: float) -> float:
        return super().forward(n, self._m(m), d) + self._allreduce(n)

    def jt(self, n: float, m: float, d: float) -> float:
        return super().jt(n, self._m(m), d)

    def rmatvec(self, n: float, m: float, d: float) -> float:
        return super().rmatvec(n, self._m(m), d)

    def gram_apply(self, n: float, m: float, d: float, k: float = 1) -> float:
        return super().gram_apply(n, self._m(m), d, k) + self._allreduce(n * k)

    def gram(self, n: float, m: float, d: float) -> float:
        return super().gram(n, self._m(m), d) + self._allreduce(n * n)

    def sketch(self, name: str, n: int, m: int, d: int, s: int) -> float:
        return super().sketch(name, n, int(self._m(m)), d, s) + self._allreduce(s * n)


def cluster_link(world: int) -> Link:
    """The slowest link a ring of ``world`` GPUs crosses on the assumed cluster: NVLink inside
    one 8-GPU node, InfiniBand once the ranks span nodes."""
    return CLUSTER_LINKS["nvlink_h100"] if world <= 8 else CLUSTER_LINKS["infiniband_100g"]


#: where ``nlt-bench --calibrate`` keeps the link it measured (``harness.perf.comm``)
PROFILE_LINK_KEY = "link"


def profile_link(profile) -> Link | None:
    """The link measured with this machine's calibration (gloo over loopback), or None for a
    profile calibrated before links were measured, or a datasheet."""
    data = getattr(profile, "data", {}).get(PROFILE_LINK_KEY)
    if not data:
        return None
    return Link(str(data["name"]), float(data["latency_s"]), float(data["bandwidth"]),
                str(data["source"]))


def load_link(path) -> Link:
    """A link written by ``python -m harness.perf.comm --out``."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
        return Link(str(data["name"]), float(data["latency_s"]), float(data["bandwidth"]),
                    str(data["source"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the link {str(path)!r}: {exc}") from None

