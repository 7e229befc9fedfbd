r"""A toy model from outside the harness: random features, f(θ) = relu(X Vᵀ) θ / √m with the
first layer V fixed and the output weights θ ∈ R^m trained.

Its Jacobian is the n×m feature matrix Φ = relu(X Vᵀ)/√m (the same at every θ), so every
method sees a linear least-squares problem. The class implements the ``Problem`` protocol
and declares what the harness plans and prices with: its parameter count, its memory plan
and the seconds of its operators (``op_costs``).
"""

import math

import torch

from harness.model import Linearization, Model, register_model
from harness.model.protocols import GramBase, JacobianBase, OnInputs, check_operand


class FeatureJacobian(OnInputs, JacobianBase):
    """J = Φ (n×m), dense."""

    def __init__(self, X, Phi):
        self.X, self.Phi = X, Phi
        self.n, self.num_params = Phi.shape

    @property
    def shape(self):
        return tuple(self.Phi.shape)

    def matvec(self, v):
        check_operand("J @ v", v, self.num_params)
        return self.Phi @ v.reshape(-1)

    def rmatvec(self, g):
        check_operand("J.T @ g", g, (self.n,))
        return self.Phi.T @ g

    def gram(self, damping=0.0):
        G = self.Phi @ self.Phi.T
        if damping:
            G.diagonal().add_(damping)
        return G

    def gram_operator(self, damping=0.0):
        return FeatureGram(self, damping)

    def rows(self, i0, i1):
        return self.Phi[i0:i1]


class FeatureGram(GramBase):
    def __matmul__(self, p):
        out = self.jac.Phi @ (self.jac.Phi.T @ p)
        return out + self.damping * p if self.damping else out

    def diagonal(self):
        return self.jac.Phi.pow(2).sum(1) + self.damping


@register_model
class RandomFeatures(Model, OnInputs):
    """Random features relu(X Vᵀ) θ/√m, V fixed, θ trained (a plugin)."""

    name = "toy_random_features"
    features = frozenset()
    depth = 1
    ladder_depth = None

    def __init__(self, X, y, V, theta):
        self.X, self.y, self.V = X, y, V
        self.n, self.d = X.shape
        self.m = V.shape[0]
        self.num_params = self.m
        self.params, self.params0 = theta, theta.clone()
        self.Phi = torch.relu(X @ V.T) / math.sqrt(self.m)

    @classmethod
    def build(cls, X, y, *, m, depth, init_gen, device, dtype, info):
        V = torch.randn(m, X.shape[1], generator=init_gen, dtype=torch.float64)
        theta = torch.randn(m, generator=init_gen, dtype=torch.float64)
        cast = dict(device=device, dtype=dtype)
        return cls(X.to(**cast), y.to(**cast), V.to(**cast), theta.to(**cast))

    @classmethod
    def check_sizes(cls, m, depth):
        return None if depth == 1 else f"model.depth={depth}: {cls.name} has one layer"

    @classmethod
    def count_params(cls, m, d, depth=1):
        return m

    @classmethod
    def memory_bytes(cls, shape):
        n, m, d = shape.n, shape.m, shape.d
        return shape.bytes(n * d + n + m * d + 3 * m + 2 * n * m)

    @classmethod
    def op_costs(cls, c, depth=1):
        return FeatureCosts(c)

    def forward(self, params=None, rows=None):
        theta = self.params if params is None else params
        Phi = self.Phi if rows is None else self.Phi[rows]
        return Phi @ theta

    def loss(self, params=None):
        return 0.5 * float((self.forward(params) - self.y).pow(2).sum())

    def linearize(self, params=None, rows=None):
        f = self.forward(params, rows)
        y = self.y if rows is None else self.y[rows]
        X = self.X if rows is None else self.X[rows]
        Phi = self.Phi if rows is None else self.Phi[rows]
        return Linearization(f, f - y, FeatureJacobian(X, Phi))

    def update(self, direction, step):
        check_operand("update direction", direction, self.num_params)
        self.params.sub_(direction.reshape(-1), alpha=step)


class FeatureCosts:
    """The operators' seconds on a profile (Φ is formed once: a step reads it)."""

    def __init__(self, c):
        self.c = c

    def params(self, m, d):
        return m

    def forward(self, n, m, d):
        return self.c.gemm(n, 1, m, "xw") + self.c.ew(n)

    def jt(self, n, m, d):
        return self.c.gemm(m, 1, n, "xw")

    def rmatvec(self, n, m, d):
        return self.jt(n, m, d) + self.c.ew(m)

    def gram_apply(self, n, m, d, k=1):
        return self.c.gemm(m, k, n, "xw") + self.c.gemm(n, k, m, "xw")

    def gram(self, n, m, d):
        return self.c.gemm(n, n, m)
