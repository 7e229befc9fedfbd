r"""The two-layer problem sharded over its width: P processes (ranks), each holding a block of
the m neurons, behind the same ``Problem``/``Jacobian`` protocols, so the methods run on it
unchanged (``distributed=local``; docs/distributed.md).

With the rows of W split in P blocks by global neuron index, rank p holds W_p ∈ R^{m_p×d}, the
matching output signs a_p and, after a forward pass, the matching columns D_p of the pattern.
Every quantity of the two-layer model is a sum over neurons, so each operator is a local
product and at most one collective (``Comm``), over ``torch.distributed`` (gloo on the CPU):

=================  ==================================  =====================================
operator           local work on rank p                 collective
=================  ==================================  =====================================
f, loss            relu(X W_pᵀ) a_p / √m                all-reduce of an n-vector
J·v                x_i · (D_p (a_p ⊙ V_p))_i / √m       all-reduce of an n-vector
Jᵀ·g               a_p ⊙ (D_pᵀ (g ⊙ X)) / √m            none: the result is rank p's block
G = J Jᵀ           D_p D_pᵀ (integer counts)            all-reduce of n×n, then ⊙ X Xᵀ / m
(G + μI)·p         rowsum(X ⊙ D_p (D_pᵀ (p ⊙ X)))       all-reduce of an n-vector (n×k block)
B = S Jᵀ           S_p J_pᵀ, one sketch per block       all-reduce of s×n
rows of J          this rank's columns                  all-gather (small sizes: ``dense``)
update             W_p ← W_p − η Δ_p                    none
=================  ==================================  =====================================

Initialisation is by global index: every rank draws the whole m×d W (m·d numbers; the n×m
pattern D is what is sharded) from the init stream and keeps its rows, so a sharded run starts
from the W of the unsharded one. The counts D Dᵀ are integers, so the Gram matrix is the
unsharded one bit for bit; the other sums differ only by the order of additions.

The sketch is ``[S_0 ⋯ S_{P−1}]``, an independent sketch per block drawn in block order from
the method's generator (every rank draws all P and keeps its own, so the generator stays in
step on every rank), as the layer-wise sketch does per layer: isometric in expectation like
each S_p. At P = 1 it is the unsharded sketch; at P > 1 it is another draw of a sketch, so a
sketched method reaches the same Gauss–Newton step only as far as its CG converges.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import torch

from harness.linalg import kernels
from harness.model.protocols import (
    LAYERED,
    GramBase,
    JacobianBase,
    Linearization,
    OnInputs,
    check_operand,
)
from harness.model.two_layer import JacobianOperator, TwoLayerReLU, gram_from_counts

#: structure tag of a problem sharded over its width: its parameters are this rank's block
SHARDED = "sharded"
#: what a sharded two-layer problem offers: the layer-wise structure (one Kronecker layer, this
#: rank's block), not the whole pattern D that ``TWO_LAYER`` promises
SHARDED_FEATURES = frozenset({LAYERED, SHARDED})
#: collectives of the loss evaluated after a step, outside the clock: not part of a step's comm
EVALUATION = "loss"


def shard_bounds(m: int, world: int) -> list[int]:
    """The P + 1 boundaries of the neuron blocks: rank p holds neurons b[p]..b[p+1]−1
    (sizes differ by at most one)."""
    return [m * p // world for p in range(world + 1)]


class Comm:
    """The collectives of a sharded problem over ``torch.distributed`` (its default group),
    each timed and counted by name: ``pop()`` gives {name: (seconds, bytes, calls)} since the
    last pop. Bytes are the payload of each call (a ring all-reduce moves 2(P−1)/P of it per
    rank). Without an initialised process group it is the one-rank case: no collective."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1
        self.backend = str(dist.get_backend()) if self.active else "none"
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
        self.seconds = 0.0  # every collective's seconds so far (``pop`` leaves it)

    def _count(self, name: str, start: float, tensor: torch.Tensor) -> None:
        entry = self.stats[name]
        spent = time.perf_counter() - start
        entry[0] += spent
        self.seconds += spent
        entry[1] += tensor.numel() * tensor.element_size()
        entry[2] += 1

    def all_reduce(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (a non-contiguous one in a contiguous
        copy); returns the sum."""
        if self.world > 1:
            tensor = tensor.contiguous()
            start = time.perf_counter()
            self.dist.all_reduce(tensor)
            self._count(name, start, tensor)
        return tensor

    def all_gather(self, tensor: torch.Tensor, name: str) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (all of one shape), in rank order."""
        if self.world == 1:
            return [tensor]
        start = time.perf_counter()
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        self.dist.all_gather(out, tensor.contiguous())
        self._count(name, start, tensor)
        return out

    def pop(self) -> dict[str, tuple[float, int, int]]:
        out = {k: tuple(v) for k, v in self.stats.items()}
        self.stats.clear()
        return out


def local_jacobian(X: torch.Tensor, D: torch.Tensor, a: torch.Tensor,
                   m: int) -> JacobianOperator:
    """J_p: the two-layer operator on this rank's columns, scaled by the global 1/√m."""
    jac = JacobianOperator(X, D, a)
    jac.scale = 1.0 / math.sqrt(m)
    return jac


class ShardedJacobian(OnInputs, JacobianBase):
    """J ∈ R^{n×md} of a sharded problem: ``local`` is J_p (the operator on this rank's
    columns); vectors in parameter space are this rank's block (m_p×d), a global one (m×d,
    from ``dense``) is cut to it."""

    def __init__(self, local: JacobianOperator, problem: ShardedTwoLayer):
        self.local, self.problem, self.comm = local, problem, problem.comm
        self.X, self.D, self.a = local.X, local.D, local.a
        self.n, self.d = local.n, local.d
        self.m = problem.m
        self.num_params = problem.num_params

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.num_params)

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        return self.comm.all_reduce(self.local.matvec(self.problem.own_block(V, "J @ v")),
                                    "matvec")

    def rmatvec(self, g: torch.Tensor) -> torch.Tensor:
        return self.local.rmatvec(g)

    def gram(self, damping: float = 0.0) -> torch.Tensor:
        """G + μI: the integer counts D_p D_pᵀ summed over the ranks, then ⊙ X Xᵀ / m."""
        counts = self.comm.all_reduce(kernels.pattern_gram(self.local.pattern), "gram")
        return gram_from_counts(counts, self.X, self.m, damping)

    def gram_operator(self, damping: float = 0.0) -> ShardedGram:
        return ShardedGram(self, damping)

    def layers(self):
        """This rank's block of the one Kronecker layer (U_p, X)."""
        yield from self.local.layers()

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        """Rows i0..i1−1 of the whole J, gathered from every rank's columns (padded to the
        largest block for the all-gather)."""
        bounds = self.problem.bounds
        widest = max(b1 - b0 for b0, b1 in zip(bounds, bounds[1:])) * self.d
        block = self.local.rows(i0, i1)
        padded = block.new_zeros(i1 - i0, widest)
        padded[:, :block.shape[1]] = block
        parts = self.comm.all_gather(padded, "rows")
        return torch.cat([part[:, :(b1 - b0) * self.d]
                          for part, b0, b1 in zip(parts, bounds, bounds[1:])], dim=1)


class ShardedGram(GramBase):
    """Matrix-free G + μI of a sharded problem: each rank's two passes through D_p, one
    all-reduce of the n (or n×k) result."""

    def __matmul__(self, p: torch.Tensor) -> torch.Tensor:
        jac = self.jac
        X, n, d = jac.X, jac.n, jac.d
        check_operand("G @ p", p, (n,), block=True)
        block = p[:, None] if p.ndim == 1 else p
        k = block.shape[1]
        Y = (block.T[:, :, None] * X[None]).permute(1, 0, 2).reshape(n, k * d)
        Z = jac.local.pattern_sandwich(Y).reshape(n, k, d)
        out = jac.comm.all_reduce(torch.einsum("nkd,nd->nk", Z, X), "gram_apply") / jac.m
        out = out[:, 0] if p.ndim == 1 else out
        return out + self.damping * p if self.damping else out

    def diagonal(self) -> torch.Tensor:
        active = self.jac.comm.all_reduce(self.jac.D.sum(1), "gram_diagonal")
        return self.jac.X.pow(2).sum(1) * active / self.jac.m + self.damping


class _BlockSketch:
    """B = S Jᵀ = Σ_p S_p J_pᵀ: this rank's sketch of its block, summed over the ranks."""

    def __init__(self, part, comm: Comm):
        self.part, self.comm = part, comm
        self.s = part.s

    def sketch_jacobian(self, jac: ShardedJacobian) -> torch.Tensor:
        return self.comm.all_reduce(self.part.sketch_jacobian(jac.local), "sketch")


class ShardedTwoLayer(OnInputs):
    """BPSW21's two-layer problem with the neurons bounds[rank]..bounds[rank+1]−1 on this rank.

    Implements ``Problem``: ``params`` is this rank's W_p (torch.optim acts on it element by
    element), ``num_params`` the global m·d; ``m`` is the global width.
    """

    model = "two_layer"
    features = SHARDED_FEATURES
    depth = 1

    def __init__(self, X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, a: torch.Tensor,
                 comm: Comm, info: dict[str, Any] | None = None):
        self.comm = comm
        self.X, self.y = X, y
        self.n, self.d = X.shape
        self.m = W.shape[0]
        self.num_params = self.m * self.d
        self.bounds = shard_bounds(self.m, comm.world)
        r0, r1 = self.bounds[comm.rank], self.bounds[comm.rank + 1]
        self.W, self.a = W[r0:r1].clone(), a[r0:r1].clone()
        self.W0 = self.W.clone()
        self.local_params = self.W.numel()
        self.info = dict(info or {})
        self.scale = 1.0 / math.sqrt(self.m)

    @classmethod
    def of(cls, problem: TwoLayerReLU, comm: Comm) -> ShardedTwoLayer:
        """This rank's shard of ``problem`` (built whole: its W by global neuron index)."""
        return cls(problem.X, problem.y, problem.W, problem.a, comm, problem.info)

    @property
    def params(self) -> torch.Tensor:
        return self.W

    @property
    def params0(self) -> torch.Tensor:
        return self.W0

    def own_block(self, V: torch.Tensor, what: str) -> torch.Tensor:
        """``V`` as this rank's m_p×d block: V is that block, or a global m·d vector to cut."""
        if V.numel() == self.local_params:
            return V.reshape(self.W.shape)
        check_operand(what, V, self.num_params)
        r0, r1 = self.bounds[self.comm.rank], self.bounds[self.comm.rank + 1]
        return V.reshape(self.m, self.d)[r0:r1]

    def update(self, direction: torch.Tensor, step: float) -> None:
        """W_p ← W_p − step · direction (this rank's block, or a global vector cut to it)."""
        self.W.sub_(self.own_block(direction, "update direction"), alpha=step)

    def _outputs(self, W: torch.Tensor | None, rows: torch.Tensor | None, name: str):
        W = self.W if W is None else W
        X = self.X if rows is None else self.X[rows]
        buf = torch.relu_(X @ W.T)
        return X, buf, self.comm.all_reduce(buf @ self.a / math.sqrt(self.m), name)

    def forward(self, W: torch.Tensor | None = None, rows: torch.Tensor | None = None):
        """f = Σ_p relu(X W_pᵀ) a_p / √m on all rows or on ``rows``."""
        return self._outputs(W, rows, "forward")[2]

    def loss(self, W: torch.Tensor | None = None) -> float:
        return 0.5 * float((self._outputs(W, None, EVALUATION)[2] - self.y).pow(2).sum())

    def linearize(self, W: torch.Tensor | None = None,
                  rows: torch.Tensor | None = None) -> Linearization:
        """One forward pass: f (all-reduced), r, and J with this rank's pattern D_p."""
        X, buf, f = self._outputs(W, rows, "forward")
        y = self.y if rows is None else self.y[rows]
        D = buf.sign_()
        return Linearization(f, f - y, ShardedJacobian(local_jacobian(X, D, self.a, self.m),
                                                       self))

    def gradient(self, W: torch.Tensor | None = None) -> torch.Tensor:
        lin = self.linearize(W)
        return lin.jacobian.rmatvec(lin.residual)

    def sketch_of(self, cls, s: int, generator: torch.Generator):
        """The sketch ``cls`` of J (``harness.sketches.sketch_problem`` asks for it): one
        sketch per block, every block's drawn in order from ``generator`` on every rank (so
        the generator stays in step), this rank's kept."""
        own = None
        for p, (b0, b1) in enumerate(zip(self.bounds, self.bounds[1:])):
            part = cls(b1 - b0, self.d, s, generator, dtype=self.dtype)
            if p == self.comm.rank:
                own = part
        return _BlockSketch(own, self.comm)

