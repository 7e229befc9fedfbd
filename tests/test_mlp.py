"""The deep ReLU model of harness.model.mlp: its operators against autograd and against curvlinops.

References: ``torch.func.jacrev`` of a functional forward written here (independent of the
module), and the curvature library curvlinops (``curvlinops-for-pytorch``, a dev/test-only
dependency; its tests are skipped without it) on an ``nn.Module`` carrying the same weights.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev

from harness.model import Linearization, make_generator, make_problem, stream_seed
from harness.model.mlp import MLPReLU, make_mlp

RTOL = 1e-10
F64 = torch.float64

# depth 1, 2, 3 at one width, and one case with a width per layer
CASES = [(1, 8), (2, 8), (3, 6), (3, [5, 7, 4])]
CASE_IDS = ["L1", "L2", "L3", "L3-widths"]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def make_data(n=10, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, d, generator=gen, dtype=F64), dim=1)
    y = torch.randn(n, generator=gen, dtype=F64)
    return X, y


def build(depth, m, n=10, d=4, seed=0) -> MLPReLU:
    X, y = make_data(n, d, seed)
    return make_mlp(X, y, depth=depth, m=m, init_gen=torch.Generator().manual_seed(seed + 1),
                    device="cpu", dtype=F64)


def reference_forward(theta, X, a, widths):
    """f(θ) from the model's definition, written out independently of harness.model.mlp."""
    h, start, fan_in = X, 0, X.shape[1]
    for layer, width in enumerate(widths):
        W = theta[start:start + width * fan_in].reshape(width, fan_in)
        z = h @ W.T if layer == 0 else math.sqrt(2.0 / fan_in) * (h @ W.T)
        h = torch.relu(z)
        start, fan_in = start + width * fan_in, width
    return h @ a / math.sqrt(widths[-1])


def reference_jacobian(p: MLPReLU, rows=None):
    X = p.X if rows is None else p.X[rows]
    return jacrev(lambda th: reference_forward(th, X, p.a, p.widths))(p.params.clone())


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    depth, m = request.param
    p = build(depth, m)
    lin = p.linearize()
    return p, lin, reference_jacobian(p)


def test_problem_protocol_attributes(case):
    p, lin, J_ref = case
    assert p.model == "mlp" and p.features == frozenset({"layered"})
    assert p.params.shape == (p.num_params,) == (J_ref.shape[1],)
    assert p.params.is_leaf and p.params0 is not p.params and torch.equal(p.params, p.params0)
    assert p.depth == len(p.widths) and (p.n, p.d) == p.X.shape
    assert p.device == torch.device("cpu") and p.dtype == F64
    assert isinstance(lin, Linearization)
    assert lin.jacobian.shape == (p.n, p.num_params) == J_ref.shape
    assert lin.jacobian.T.shape == (p.num_params, p.n)


def test_outputs_loss_and_gradient_match_reference(case):
    p, lin, J_ref = case
    f_ref = reference_forward(p.params, p.X, p.a, p.widths)
    assert rel(p.forward(), f_ref) <= RTOL
    assert rel(lin.outputs, f_ref) <= RTOL
    assert rel(lin.residual, f_ref - p.y) <= RTOL
    assert math.isclose(p.loss(), 0.5 * float((f_ref - p.y).pow(2).sum()), rel_tol=1e-12)
    assert math.isclose(lin.loss, p.loss(), rel_tol=1e-12)
    assert rel(p.gradient(), J_ref.T @ (f_ref - p.y)) <= RTOL


def test_jv_jtg_dense_rows_match_jacrev(case):
    p, lin, J_ref = case
    jac = lin.jacobian
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(p.num_params, generator=gen, dtype=F64)
    V = torch.randn(p.num_params, 3, generator=gen, dtype=F64)
    g = torch.randn(p.n, generator=gen, dtype=F64)
    Gb = torch.randn(p.n, 3, generator=gen, dtype=F64)
    assert rel(jac.dense(), J_ref) <= RTOL
    assert rel(jac @ v, J_ref @ v) <= RTOL
    assert rel(jac.matvec(V), J_ref @ V) <= RTOL
    assert rel(jac.T @ g, J_ref.T @ g) <= RTOL
    assert rel(jac.rmatvec(Gb), J_ref.T @ Gb) <= RTOL
    assert rel(jac.rows(3, 7), J_ref[3:7]) <= RTOL
    assert jac.rows(4, 4).shape == (0, p.num_params)


def test_gram_operator_diagonal_match_jacrev(case):
    p, lin, J_ref = case
    jac = lin.jacobian
    G_ref = J_ref @ J_ref.T
    eye = torch.eye(p.n, dtype=F64)
    assert rel(jac.gram(), G_ref) <= RTOL
    assert rel(jac.gram(damping=0.3), G_ref + 0.3 * eye) <= RTOL
    op = jac.gram_operator(damping=0.1)
    assert op.shape == (p.n, p.n) and op.damping == 0.1
    P = torch.randn(p.n, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    A = G_ref + 0.1 * eye
    assert rel(op @ P[:, 0], A @ P[:, 0]) <= RTOL
    assert rel(op @ P, A @ P) <= RTOL
    assert rel(op.diagonal(), torch.diagonal(A)) <= RTOL
    assert rel(op.dense(), A) <= RTOL


def test_layer_factors_rebuild_the_jacobian(case):
    p, lin, J_ref = case
    jac = lin.jacobian
    factors = list(jac.layers())
    assert len(factors) == p.depth == len(jac.layout)
    for (delta, inputs), blk in zip(factors, jac.layout):
        assert delta.shape == (p.n, blk.rows) and inputs.shape == (p.n, blk.cols)
        J_l = (delta[:, :, None] * inputs[:, None, :]).reshape(p.n, -1)
        assert rel(J_l, J_ref[:, blk.start:blk.stop]) <= RTOL
    # the flat layout is the row-major layer matrices, layer 1 first
    for W, blk in zip(p.weights(), p.layout):
        assert torch.equal(W.reshape(-1), p.params[blk.start:blk.stop])


def test_row_subset_linearization():
    p = build(3, 6)
    rows = torch.tensor([0, 4, 9])
    lin = p.linearize(rows=rows)
    assert rel(lin.residual, p.linearize().residual[rows]) <= RTOL
    assert rel(lin.jacobian.dense(), reference_jacobian(p, rows)) <= RTOL
    assert rel(p.forward(rows=rows), p.forward()[rows]) <= RTOL


# --- depth 1 is the two-layer model --------------------------------------------------------


def test_depth_one_is_the_two_layer_problem():
    seed, n, d, m = 5, 12, 4, 16
    two = make_problem("synthetic", n=n, d=d, m=m, seed=seed, dtype=F64)
    mlp = make_mlp(two.X, two.y, depth=1, m=m, device="cpu", dtype=F64,
                   init_gen=make_generator(stream_seed(seed, "init")))
    assert torch.equal(mlp.weights()[0], two.W) and torch.equal(mlp.a, two.a)
    assert torch.equal(mlp.forward(), two.forward())
    lin, lin2 = mlp.linearize(), two.linearize()
    assert torch.equal(lin.outputs, lin2.outputs)
    gen = torch.Generator().manual_seed(3)
    V = torch.randn(m, d, generator=gen, dtype=F64)
    g = torch.randn(n, generator=gen, dtype=F64)
    tol = 1e-12
    assert rel(lin.jacobian @ V.reshape(-1), lin2.jacobian @ V) <= tol
    assert rel(lin.jacobian.T @ g, (lin2.jacobian.T @ g).reshape(-1)) <= tol
    assert rel(lin.jacobian.gram(), lin2.jacobian.gram()) <= tol
    assert rel(lin.jacobian.gram_operator() @ g, lin2.gram_operator() @ g) <= tol
    assert rel(mlp.gradient(), two.gradient().reshape(-1)) <= tol


def test_init_draw_order_and_cast():
    """W⁽¹⁾ and a come first from the init stream at any depth; float32 is a cast of float64."""
    seed, n, d, m = 2, 8, 3, 10
    two = make_problem("synthetic", n=n, d=d, m=m, seed=seed, dtype=torch.float32)
    deep = make_mlp(two.X, two.y, depth=3, m=m, device="cpu", dtype=torch.float32,
                    init_gen=make_generator(stream_seed(seed, "init")))
    assert deep.params.dtype == torch.float32 and deep.num_params == m * d + 2 * m * m
    assert torch.equal(deep.weights()[0], two.W) and torch.equal(deep.a, two.a)
    again = make_mlp(two.X, two.y, depth=3, m=m, device="cpu", dtype=torch.float32,
                     init_gen=make_generator(stream_seed(seed, "init")))
    assert torch.equal(deep.params, again.params)


# --- state and shapes ----------------------------------------------------------------------


def test_update_moves_params_and_views_together():
    p = build(3, 6)
    W2 = p.weights()[1]  # a view taken before the update
    before = p.params.clone()
    direction = torch.randn(p.num_params, dtype=F64, generator=torch.Generator().manual_seed(4))
    p.update(direction, 0.5)
    assert torch.allclose(p.params, before - 0.5 * direction, rtol=0, atol=1e-15)
    blk = p.layout[1]
    assert torch.equal(W2.reshape(-1), p.params[blk.start:blk.stop])
    assert W2.data_ptr() == p.weights()[1].data_ptr()
    assert torch.equal(p.params0, before)
    assert rel(p.forward(), reference_forward(p.params, p.X, p.a, p.widths)) <= RTOL
    assert p.loss(p.params0) == pytest.approx(
        0.5 * float((reference_forward(before, p.X, p.a, p.widths) - p.y).pow(2).sum()))


def test_wrong_shapes_raise_value_errors_naming_both_shapes():
    p = build(2, 6)
    P, n = p.num_params, p.n
    jac = p.linearize().jacobian
    with pytest.raises(ValueError, match=rf"\({P},\) or \({P}, k\).*got \({P + 1},\)"):
        jac @ torch.zeros(P + 1, dtype=F64)
    with pytest.raises(ValueError, match=rf"\({n},\) or \({n}, k\).*got \({n}, 2, 2\)"):
        jac.T @ torch.zeros(n, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match=rf"\({n},\).*got \({n - 1},\)"):
        jac.gram_operator() @ torch.zeros(n - 1, dtype=F64)
    with pytest.raises(ValueError, match=rf"\({P},\).*got \({P - 1},\)"):
        p.update(torch.zeros(P - 1, dtype=F64), 1.0)
    with pytest.raises(ValueError, match=rf"\({P},\).*got \(3, 4\)"):
        p.forward(torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="0 <= i0 <= i1"):
        jac.rows(2, n + 1)
    with pytest.raises(ValueError, match="model.m"):
        make_mlp(p.X, p.y, depth=2, m=[4, 5, 6], init_gen=torch.Generator(), dtype=F64)
    with pytest.raises(ValueError, match="model.depth"):
        make_mlp(p.X, p.y, depth=0, m=4, init_gen=torch.Generator(), dtype=F64)


# --- cross-check against curvlinops --------------------------------------------------------


class TorchMLP(nn.Module):
    """The same network as an nn.Module (one Parameter per layer, in θ's order)."""

    def __init__(self, p: MLPReLU, column: bool = False):
        super().__init__()
        self.layers = nn.ParameterList(nn.Parameter(W.detach().clone()) for W in p.weights())
        self.register_buffer("a", p.a.clone())
        self.column = column

    def forward(self, x):
        h = x
        for i, W in enumerate(self.layers):
            z = h @ W.T
            h = torch.relu(z if i == 0 else z * math.sqrt(2.0 / W.shape[1]))
        out = h @ self.a / math.sqrt(self.a.shape[0])
        return out[:, None] if self.column else out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script in its imports
@pytest.mark.parametrize(("depth", "m"), CASES, ids=CASE_IDS)
def test_jjt_and_jtj_match_curvlinops(depth, m):
    curvlinops = pytest.importorskip("curvlinops")
    p = build(depth, m)
    jac = p.linearize().jacobian
    net = TorchMLP(p)
    params = list(net.parameters())
    data = [(p.X[:6], p.y[:6]), (p.X[6:], p.y[6:])]  # two batches, fixed order
    J_cl = curvlinops.JacobianLinearOperator(net, params, data)
    JT_cl = curvlinops.TransposedJacobianLinearOperator(net, params, data)
    gen = torch.Generator().manual_seed(11)
    v = torch.randn(p.num_params, generator=gen, dtype=F64)
    g = torch.randn(p.n, generator=gen, dtype=F64)
    assert rel(jac @ v, J_cl @ v) <= RTOL
    assert rel(jac.T @ g, JT_cl @ g) <= RTOL
    # J Jᵀ (the Gram operator) and Jᵀ J (Gauss–Newton on the parameters)
    assert rel(jac.gram_operator() @ g, J_cl @ (JT_cl @ g)) <= RTOL
    assert rel(jac.T @ (jac @ v), JT_cl @ (J_cl @ v)) <= RTOL
    # GGN of ½‖f − y‖²: MSELoss(reduction="sum") = ‖f − y‖² has Hessian 2I, so GGN = 2 JᵀJ
    col = TorchMLP(p, column=True)
    col_data = [(X, y[:, None]) for X, y in data]
    ggn = curvlinops.GGNLinearOperator(col, nn.MSELoss(reduction="sum"),
                                       list(col.parameters()), col_data)
    V = torch.randn(p.num_params, 2, generator=gen, dtype=F64)
    assert rel(2 * jac.rmatvec(jac.matvec(V)), ggn @ V) <= RTOL
