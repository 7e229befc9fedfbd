r"""A deep ReLU network (L trained hidden layers) and its matrix-free curvature operators.

Model
-----
Inputs X ∈ R^{n×d} with unit rows, targets y ∈ R^n, hidden widths m_1, …, m_L (one int m means
m_l = m for every layer), fixed output signs a ∈ {±1}^{m_L}. With h⁽⁰⁾ = x,

    z⁽¹⁾ = W⁽¹⁾ x                          W⁽¹⁾ ∈ R^{m_1×d}, no scale
    z⁽ˡ⁾ = c_l W⁽ˡ⁾ h⁽ˡ⁻¹⁾,  c_l = √(2/m_{l−1})   W⁽ˡ⁾ ∈ R^{m_l×m_{l−1}}, l = 2..L
    h⁽ˡ⁾ = relu(z⁽ˡ⁾)
    f(x) = aᵀ h⁽ᴸ⁾ / √m_L,    r = f − y,    L(θ) = ½‖r‖².

Every W entry is N(0, 1) at initialisation (NTK parametrisation: the scale sits in the forward
pass, and the √2 keeps the forward variance of a ReLU layer). With L = 1 this is exactly the
two-layer model of ``harness.model.two_layer``: f = relu(X Wᵀ) a / √m, and ``make_mlp`` draws W⁽¹⁾
and
a with the same generator calls in the same order as ``make_problem``, so depth 1 reproduces
its initialisation bit for bit.

Parameters live in ONE flat vector θ ∈ R^P, P = Σ_l m_l m_{l−1} (m_0 = d): the layer matrices
are row-major views into it, W⁽¹⁾ first. For uniform width P = md + (L−1)m².

Structure
---------
Write s_1 = 1, s_l = c_l (l ≥ 2), D⁽ˡ⁾ = 1[z⁽ˡ⁾ > 0] and δᵢ⁽ˡ⁾ = ∂fᵢ/∂zᵢ⁽ˡ⁾ (rows of
Δ⁽ˡ⁾ ∈ R^{n×m_l}). One batched backward pass of the n scalar outputs gives all of them:

    δ⁽ᴸ⁾   = D⁽ᴸ⁾ ⊙ a / √m_L,        δ⁽ˡ⁻¹⁾ = D⁽ˡ⁻¹⁾ ⊙ (s_l δ⁽ˡ⁾ W⁽ˡ⁾).

The operators store the *scaled* factors K⁽ˡ⁾ = s_l Δ⁽ˡ⁾ and B⁽ˡ⁾ = H⁽ˡ⁻¹⁾ (H⁽⁰⁾ = X); row i of
the Jacobian J ∈ R^{n×P}, restricted to layer l, is the Kronecker product

    J_i|_l = vec(kᵢ⁽ˡ⁾ ⊗ bᵢ⁽ˡ⁾)       (row-major, the layout of W⁽ˡ⁾ in θ),

so that, layer by layer, everything the two-layer model does carries over:

    (J v)_i   = Σ_l kᵢ⁽ˡ⁾ · (V⁽ˡ⁾ bᵢ⁽ˡ⁾)              = Σ_l rowsum(K⁽ˡ⁾ ⊙ (B⁽ˡ⁾ V⁽ˡ⁾ᵀ))
    (Jᵀ g)|_l = K⁽ˡ⁾ᵀ diag(g) B⁽ˡ⁾
    G = J Jᵀ  = Σ_l (B⁽ˡ⁾ B⁽ˡ⁾ᵀ) ⊙ (K⁽ˡ⁾ K⁽ˡ⁾ᵀ)      (Hadamard identity; B⁽¹⁾B⁽¹⁾ᵀ = X Xᵀ)
    G p       = Σ_l rowsum(B⁽ˡ⁾ ⊙ K⁽ˡ⁾ (K⁽ˡ⁾ᵀ (p ⊙ B⁽ˡ⁾)))
    diag(G)_i = Σ_l ‖bᵢ⁽ˡ⁾‖² ‖kᵢ⁽ˡ⁾‖².

Costs below are for uniform width m (with per-layer widths replace each m² by m_l m_{l−1});
"flops" counts multiply-adds twice. A linearisation holds 2L − 1 n×m matrices (K⁽¹⁾..K⁽ᴸ⁾ and
H⁽¹⁾..H⁽ᴸ⁻¹⁾; B⁽¹⁾ = X is shared): memory O(L n m) plus the P parameters. No autograd runs in
any of these operators.

Example
-------
>>> import torch
>>> from harness.model.mlp import make_mlp
>>> X = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=1)
>>> p = make_mlp(X, torch.zeros(6, dtype=torch.float64), depth=2, m=8,
...              init_gen=torch.Generator().manual_seed(0), device="cpu", dtype=torch.float64)
>>> jac = p.linearize().jacobian
>>> bool(torch.allclose(jac.gram(), jac.dense() @ jac.dense().T))
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from harness.common.errors import ConfigError
from harness.common.flops import deepen, num_params
from harness.model.protocols import (
    LAYERED,
    GramBase,
    JacobianBase,
    Linearization,
    Model,
    OnInputs,
    Shape,
    as_block,
    register_model,
)
from harness.model.two_layer import first_layer_init

__all__ = ["KroneckerFactors", "LayerBlock", "MLPGramOperator", "MLPJacobian", "MLPReLU",
           "make_mlp"]


class LayerBlock(NamedTuple):
    """Where layer l's matrix sits in the flat θ: ``θ[start:stop].view(rows, cols)``."""

    start: int
    stop: int
    rows: int  # m_l
    cols: int  # m_{l−1} (d for the first layer)


class KroneckerFactors(NamedTuple):
    """J restricted to one layer: row i is vec(delta[i] ⊗ inputs[i]) (row-major).

    ``delta`` = s_l Δ⁽ˡ⁾ (n × m_l, the layer's scale folded in), ``inputs`` = H⁽ˡ⁻¹⁾
    (n × m_{l−1}; X for the first layer).
    """

    delta: torch.Tensor
    inputs: torch.Tensor


def _layout(d: int, widths: Sequence[int]) -> tuple[LayerBlock, ...]:
    blocks, start, fan_in = [], 0, d
    for w in widths:
        blocks.append(LayerBlock(start, start + w * fan_in, w, fan_in))
        start += w * fan_in
        fan_in = w
    return tuple(blocks)


def _layer_scales(d: int, widths: Sequence[int]) -> tuple[float, ...]:
    """s_1 = 1, s_l = √(2 / m_{l−1}) for l ≥ 2."""
    return (1.0,) + tuple(math.sqrt(2.0 / w) for w in widths[:-1])


class MLPJacobian(JacobianBase):
    r"""J ∈ R^{n×P} of the network outputs at θ, held as the per-layer factors (K⁽ˡ⁾, B⁽ˡ⁾).

    ``J @ v`` / ``matvec`` takes v of shape (P,) or a block (P, k); ``J.T @ g`` / ``rmatvec``
    takes g of shape (n,) or (n, k) and returns (P,) or (P, k) in θ's flat layout.

    Memory: the factors, 2L − 1 n×m matrices plus X (shared with the problem).
    """

    def __init__(self, factors: Sequence[KroneckerFactors], layout: Sequence[LayerBlock]):
        self.factors = tuple(factors)
        self.layout = tuple(layout)
        self.n = self.factors[0].delta.shape[0]
        self.num_params = self.layout[-1].stop
        self.depth = len(self.factors)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.num_params)

    @property
    def dtype(self) -> torch.dtype:
        return self.factors[0].delta.dtype

    @property
    def device(self) -> torch.device:
        return self.factors[0].delta.device

    def layers(self) -> Iterator[KroneckerFactors]:
        """Per layer l = 1..L: (s_l Δ⁽ˡ⁾, H⁽ˡ⁻¹⁾), J_i|_l = vec(delta[i] ⊗ inputs[i]).

        The layer's block of columns in θ is ``self.layout[l − 1]``.
        """
        yield from self.factors

    # --- products ---------------------------------------------------------------------------

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        r"""(J v)_i = Σ_l kᵢ⁽ˡ⁾ · (V⁽ˡ⁾ bᵢ⁽ˡ⁾): per layer one n×m_{l−1} · m_{l−1}×m_l product.

        Flops 2nP·k (+ 2nLm·k for the row sums); temporary n×m·k per layer; v of shape (P,)
        gives (n,), a block (P, k) gives (n, k).
        """
        V, vector = as_block("J @ v: v", v, self.num_params)
        k = V.shape[1]
        out = torch.zeros(self.n, k, dtype=V.dtype, device=V.device)
        for (K, B), blk in zip(self.factors, self.layout):
            # V⁽ˡ⁾ as m_{l−1} × (m_l k): column (r, j) holds W-entry (r, ·) of vector j
            Vl = V[blk.start:blk.stop].reshape(blk.rows, blk.cols, k)
            T = (B @ Vl.permute(1, 0, 2).reshape(blk.cols, blk.rows * k))
            out += torch.einsum("nrk,nr->nk", T.view(self.n, blk.rows, k), K)
        return out[:, 0] if vector else out

    def rmatvec(self, g: torch.Tensor) -> torch.Tensor:
        r"""(Jᵀ g)|_l = K⁽ˡ⁾ᵀ diag(g) B⁽ˡ⁾: per layer one m_l×n · n×m_{l−1} product.

        Flops 2nP·k; temporary n×m·k per layer; output (P,) for g of shape (n,), (P, k) for a
        block (n, k). With g = r this is the gradient ∇_θ L.
        """
        Gm, vector = as_block("J.T @ g: g", g, self.n)
        k = Gm.shape[1]
        out = torch.empty(self.num_params, k, dtype=Gm.dtype, device=Gm.device)
        for (K, B), blk in zip(self.factors, self.layout):
            Y = (Gm[:, :, None] * B[:, None, :]).reshape(self.n, k * blk.cols)
            M = (K.T @ Y).view(blk.rows, k, blk.cols)            # m_l × k × m_{l−1}
            out[blk.start:blk.stop] = M.permute(0, 2, 1).reshape(blk.stop - blk.start, k)
        return out[:, 0] if vector else out

    # --- the Gram matrix ---------------------------------------------------------------------

    def gram(self, damping: float = 0.0) -> torch.Tensor:
        r"""G + μI, G = Σ_l (B⁽ˡ⁾B⁽ˡ⁾ᵀ) ⊙ (K⁽ˡ⁾K⁽ˡ⁾ᵀ) (no explicit J).

        Flops Σ_l 2n²(m_l + m_{l−1}) = 2n²(d + (2L − 1)m); memory three n×n matrices.
        """
        G = torch.zeros(self.n, self.n, dtype=self.dtype, device=self.device)
        for K, B in self.factors:
            G.addcmul_(B @ B.T, K @ K.T)
        if damping:
            G.diagonal().add_(damping)
        return G

    def gram_operator(self, damping: float = 0.0) -> MLPGramOperator:
        """Matrix-free G + μI (see ``MLPGramOperator``)."""
        return MLPGramOperator(self, damping)

    def gram_diagonal(self) -> torch.Tensor:
        """diag(G)_i = Σ_l ‖bᵢ⁽ˡ⁾‖² ‖kᵢ⁽ˡ⁾‖²: flops 2n(d + (2L − 1)m), memory O(n)."""
        out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for K, B in self.factors:
            out += B.pow(2).sum(1) * K.pow(2).sum(1)
        return out

    # --- explicit rows ------------------------------------------------------------------------

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        """Rows i0..i1−1 of J as a dense (i1 − i0) × P block: memory and flops (i1 − i0)·P."""
        if not (0 <= i0 <= i1 <= self.n):
            raise ValueError(f"rows(i0, i1) needs 0 <= i0 <= i1 <= {self.n}, got ({i0}, {i1})")
        r = i1 - i0
        out = torch.empty(r, self.num_params, dtype=self.dtype, device=self.device)
        for (K, B), blk in zip(self.factors, self.layout):
            out[:, blk.start:blk.stop] = (K[i0:i1, :, None] * B[i0:i1, None, :]).reshape(
                r, blk.stop - blk.start)
        return out



class MLPGramOperator(GramBase):
    r"""Matrix-free (G + μI) p = J(Jᵀ p) + μp, fused layer by layer.

    Per layer: M = K⁽ˡ⁾ᵀ (p ⊙ B⁽ˡ⁾) (m_l × m_{l−1}), then rowsum(B⁽ˡ⁾ ⊙ K⁽ˡ⁾ M). For a block
    p ∈ R^{n×k} the k vectors go through each layer in one pair of products.

    Flops 4nP·k per application; temporaries per layer n×m·k twice and m_l×m_{l−1}·k (only
    one layer's share of Jᵀ p is alive at a time, never the whole P·k).
    """

    def __matmul__(self, p: torch.Tensor) -> torch.Tensor:
        Pm, vector = as_block("G @ p: p", p, self.n)
        n, k = self.n, Pm.shape[1]
        out = torch.zeros(n, k, dtype=Pm.dtype, device=Pm.device)
        for K, B in self.jac.factors:
            cols = B.shape[1]
            Y = (Pm[:, :, None] * B[:, None, :]).reshape(n, k * cols)   # p ⊙ B, k at once
            Z = (K @ (K.T @ Y)).view(n, k, cols)
            out += torch.einsum("nkj,nj->nk", Z, B)
        if self.damping:
            out += self.damping * Pm
        return out[:, 0] if vector else out

    def diagonal(self) -> torch.Tensor:
        """diag(G) + μ: O(nLm) flops, O(n) memory."""
        return self.jac.gram_diagonal() + self.damping


@register_model
class MLPReLU(Model, OnInputs):
    """Fully connected ReLU network, depth L trained hidden layers of width m (NTK scaling).

    Data, fixed output signs and the flat parameter vector θ (``params``, updated in place).

    The layer matrices are views into ``params`` (``weights()``); algorithms read and write
    ``params`` only, the problem owns the math.
    """

    name = "mlp"
    features = frozenset({LAYERED})
    ladder_depth = 2

    def __init__(self, X: torch.Tensor, y: torch.Tensor, params: torch.Tensor, a: torch.Tensor,
                 widths: Sequence[int], info: dict[str, Any] | None = None):
        self.X, self.y, self.a = X, y, a
        self.n, self.d = X.shape
        self.widths = tuple(int(w) for w in widths)
        self.depth = len(self.widths)
        # the one width when uniform; with per-layer widths the widest layer
        self.m = max(self.widths)
        self.layout = _layout(self.d, self.widths)
        self.scales = _layer_scales(self.d, self.widths)
        self.num_params = self.layout[-1].stop
        if params.shape != (self.num_params,):
            raise ValueError(f"params must have shape ({self.num_params},), "
                             f"got {tuple(params.shape)}")
        if a.shape != (self.widths[-1],):
            raise ValueError(f"a must have shape ({self.widths[-1]},), got {tuple(a.shape)}")
        self.params = params
        self.params0 = params.clone()
        self.info = dict(info or {})

    def _theta(self, params: torch.Tensor | None, what: str = "params") -> torch.Tensor:
        if params is None:
            return self.params
        if not isinstance(params, torch.Tensor) or params.shape != (self.num_params,):
            got = tuple(params.shape) if isinstance(params, torch.Tensor) \
                else type(params).__name__
            raise ValueError(f"{what} must have shape ({self.num_params},), got {got}")
        return params

    def weights(self, params: torch.Tensor | None = None) -> list[torch.Tensor]:
        """W⁽¹⁾..W⁽ᴸ⁾ as views into ``params`` (default: the problem's own θ)."""
        theta = self._theta(params)
        return [theta[b.start:b.stop].view(b.rows, b.cols) for b in self.layout]

    def _hidden(self, theta: torch.Tensor, X: torch.Tensor) -> list[torch.Tensor]:
        """H⁽¹⁾..H⁽ᴸ⁾ (fresh buffers): L products, flops 2nP."""
        hs, h = [], X
        for W, s in zip(self.weights(theta), self.scales):
            h = torch.relu_(h @ W.T)
            if s != 1.0:
                h.mul_(s)  # relu(s z) = s relu(z) for s > 0
            hs.append(h)
        return hs

    def forward(self, params: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """f = aᵀ h⁽ᴸ⁾ / √m_L on all rows or on the index set ``rows``: flops 2nP.

        Memory: two n×m buffers alive at a time.
        """
        theta = self._theta(params)
        X = self.X if rows is None else self.X[rows]
        h = X
        for W, s in zip(self.weights(theta), self.scales):
            h = torch.relu(h @ W.T)
            if s != 1.0:
                h = h * s  # out of place: torch.func (gn_exact) differentiates this pass
        return h @ self.a / math.sqrt(self.widths[-1])

    def loss(self, params: torch.Tensor | None = None) -> float:
        return 0.5 * float((self.forward(params) - self.y).pow(2).sum())

    def linearize(self, params: torch.Tensor | None = None,
                  rows: torch.Tensor | None = None) -> Linearization:
        """One forward and one batched backward pass: f, r and the Jacobian operator at θ.

        Forward: flops 2nP, keeps H⁽¹⁾..H⁽ᴸ⁾. Backward: the last buffer H⁽ᴸ⁾ becomes
        K⁽ᴸ⁾ = s_L D⁽ᴸ⁾ ⊙ a/√m_L in place; then K⁽ˡ⁻¹⁾ = s_{l−1} D⁽ˡ⁻¹⁾ ⊙ (K⁽ˡ⁾ W⁽ˡ⁾),
        flops 2n(P − m_1 d). D⁽ˡ⁾ = 1[H⁽ˡ⁾ > 0] is read off H (relu(z) > 0 iff z > 0, which
        matches autograd's relu'(0) = 0). Memory: 2L − 1 n×m matrices.
        """
        theta = self._theta(params)
        X = self.X if rows is None else self.X[rows]
        y = self.y if rows is None else self.y[rows]
        Ws = self.weights(theta)
        hs = self._hidden(theta, X)
        mL = self.widths[-1]
        f = hs[-1] @ self.a / math.sqrt(mL)
        # δ⁽ᴸ⁾ = D⁽ᴸ⁾ ⊙ a/√m_L, stored scaled by s_L; H⁽ᴸ⁾ is not needed after f
        K = hs[-1].sign_().mul_(self.a * (self.scales[-1] / math.sqrt(mL)))
        deltas = [K]
        for l in range(self.depth - 1, 0, -1):  # 0-based: layer l+1 → layer l
            K = (deltas[0] @ Ws[l]).mul_(hs[l - 1].sign())
            if self.scales[l - 1] != 1.0:
                K.mul_(self.scales[l - 1])
            deltas.insert(0, K)
        inputs = [X] + hs[:-1]
        factors = [KroneckerFactors(K, B) for K, B in zip(deltas, inputs)]
        return Linearization(f, f - y, MLPJacobian(factors, self.layout))

    def gradient(self, params: torch.Tensor | None = None) -> torch.Tensor:
        """∇_θ L = Jᵀ r, flat (P,)."""
        lin = self.linearize(params)
        return lin.jacobian.rmatvec(lin.residual)

    # --- what the harness plans and prices with (``Model``) ---------------------------------

    @classmethod
    def count_params(cls, m: int, d: int, depth: int) -> int:
        """P = md + (L − 1)m² (uniform width m)."""
        return int(num_params(m, d, depth))

    @classmethod
    def memory_bytes(cls, shape: Shape) -> int:
        """The two-layer plan with P parameters, plus per further layer its activations H and
        scaled signals K, an n×m temporary of the backward pass or of a product (g ⊙ K,
        p ⊙ B) and a layer-sized share of Jᵀg beside the full P-sized result."""
        n, m, d = shape.n, shape.m, shape.d
        P = cls.count_params(m, d, shape.depth)
        deeper = (shape.depth - 1) * (4 * n * m + 2 * P)
        return shape.bytes(n * d + n + 3 * P + m + n * m + 2 * n + n * d + deeper) + 2 * n * m

    @classmethod
    def layer_dims(cls, m: int, d: int, depth: int) -> list[tuple[int, int]]:
        return [(m, d)] + [(m, m)] * (depth - 1)

    @classmethod
    def flop_terms(cls, terms, m, d, depth):
        return deepen(terms, m, d, depth)

    @classmethod
    def op_costs(cls, c, depth: int) -> MLPCosts:
        return MLPCosts(c, depth)

    @classmethod
    def build(cls, X, y, *, m, depth, init_gen, device, dtype, info) -> MLPReLU:
        return make_mlp(X, y, depth=depth, m=m, init_gen=init_gen, device=device,
                        dtype=dtype, info=info)

    @classmethod
    def check_sizes(cls, m, depth) -> str | None:
        try:
            _check_widths(m, depth)
        except ConfigError as exc:
            return str(exc)
        return None

    def update(self, direction: torch.Tensor, step: float) -> None:
        """θ ← θ − step · direction, in place (the layer views follow)."""
        direction = self._theta(direction, what="direction")
        self.params.add_(direction, alpha=-float(step))


def _check_widths(m: int | Sequence[int], depth: int) -> tuple[int, ...]:
    def positive_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0

    if not positive_int(depth):
        raise ConfigError(f"model.depth must be a positive integer, got {depth!r}")
    if positive_int(m):
        return (int(m),) * int(depth)
    if isinstance(m, Sequence) and not isinstance(m, str) and len(m) == depth \
            and all(positive_int(w) for w in m):
        return tuple(int(w) for w in m)
    raise ConfigError(f"model.m must be a positive integer or a list of {depth} positive "
                      f"integers (one per hidden layer), got {m!r}")


def make_mlp(X: torch.Tensor, y: torch.Tensor, *, depth: int, m: int | Sequence[int],
             init_gen: torch.Generator, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, info: dict[str, Any] | None = None) -> MLPReLU:
    """The deep ReLU problem on data (X, y), initialised from ``init_gen``.

    Draw order (float64, CPU, then cast, like ``make_problem``): W⁽¹⁾ = randn(m_1, d), then
    a = ±1 (randint, m_L), then W⁽²⁾..W⁽ᴸ⁾ = randn(m_l, m_{l−1}). Depth 1 is therefore the
    two-layer initialisation bit for bit. ``m`` is one width for every hidden layer or a list
    of ``depth`` widths.
    """
    widths = _check_widths(m, depth)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got X {tuple(X.shape)} "
                         f"and y {tuple(y.shape)}")
    d = X.shape[1]
    W1, a = first_layer_init(widths[0], d, init_gen, out_width=widths[-1])
    rest = [torch.randn(w, fan_in, generator=init_gen, dtype=torch.float64)
            for fan_in, w in zip(widths[:-1], widths[1:])]
    theta = torch.cat([W.reshape(-1) for W in [W1, *rest]])
    cast = dict(device=device, dtype=dtype)
    return MLPReLU(X.to(**cast), y.to(**cast), theta.to(**cast).contiguous(), a.to(**cast),
                   widths, info=info)


class MLPCosts:
    """Seconds of the MLP's operators (uniform width m, depth L) on a cost-model profile:
    every layer's factors K⁽ˡ⁾, H⁽ˡ⁾ are float matrices, so each layer's product runs on the
    float route of the same shape (layer 1's too); ``c`` is a ``harness.costmodel.Costs``."""

    def __init__(self, c, depth: int):
        self.c, self.depth = c, depth

    def params(self, m: float, d: float) -> float:
        return num_params(m, d, self.depth)

    def fan_ins(self, d: float, m: float) -> list[float]:
        """Each layer's input width m_{l−1}: d, then m."""
        return [d] + [m] * (self.depth - 1)

    def forward(self, n: float, m: float, d: float) -> float:
        """linearize(): the two-layer forward, plus per further layer the forward product
        H W⁽ˡ⁾ᵀ (relu_, scale) and the backward one K W⁽ˡ⁾ for the signals (the sign of H
        into a new buffer, two products), each of the three n×m buffers fresh."""
        c = self.c
        c.new_pattern()
        t = c.gemm(n, m, d, "xw") + c.fresh(n * m) + 3 * c.ew(n * m) + 2 * c.ew(n)
        return t + (self.depth - 1) * (2 * c.gemm(n, m, m) + 3 * c.fresh(n * m)
                                       + 5 * c.ew(n * m))

    def jt(self, n: float, m: float, d: float) -> float:
        """Jᵀ g: per layer K⁽ˡ⁾ᵀ (g ⊙ B⁽ˡ⁾), copied into the flat P-vector."""
        c = self.c
        return sum(c.ew(n * f) + c.dense("pattern_rmm", n, m, f) + c.ew(m * f)
                   for f in self.fan_ins(d, m))

    def rmatvec(self, n: float, m: float, d: float) -> float:
        return self.jt(n, m, d) + 3 * self.c.ew(self.params(m, d))

    def gram_apply(self, n: float, m: float, d: float, k: float = 1) -> float:
        """(G + μI) P for k vectors: per layer rowsum(B ⊙ K (Kᵀ (P ⊙ B))), float products."""
        c = self.c
        return sum(2 * c.ew(n * k * f) + c.dense("pattern_rmm", n, m, k * f)
                   + c.dense("pattern_mm", n, m, k * f) + c.ew(n * k)
                   for f in self.fan_ins(d, m))

    def gram(self, n: float, m: float, d: float) -> float:
        """G = Σₗ (B⁽ˡ⁾B⁽ˡ⁾ᵀ) ⊙ (K⁽ˡ⁾K⁽ˡ⁾ᵀ), float GEMMs (B⁽¹⁾ = X on the small-k kernel),
        one accumulating pass each."""
        c = self.c
        return c.ew(n * n) + sum(
            c.gemm(n, n, f, "xw" if f == d else "gram_float") + c.gemm(n, n, m)
            + 2 * c.ew(n * n) for f in self.fan_ins(d, m))
