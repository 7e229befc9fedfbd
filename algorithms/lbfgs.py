r"""Full-batch L-BFGS with a strong-Wolfe line search (torch.optim.LBFGS), on the mean loss.

What a practitioner reaches for first on a full-batch least-squares problem. On the mean loss
L̄ = L/n = (1/n)·½‖r‖² (as ``adam``), with the gradient in closed form, g = ∇L̄ = Jᵀr/n, one
outer iteration is one L-BFGS iteration (``max_iter: 1``): with the last h curvature pairs
s_j = W_{j+1} − W_j, y_j = g_{j+1} − g_j (kept only where y_jᵀs_j > 1e-10, torch's rule),

    p_k = −H_k g_k     (two-loop recursion, H⁰ = (sᵀy / yᵀy) I from the newest pair),
    W_{k+1} = W_k + t_k p_k,

t_k from a strong-Wolfe line search (c₁ = 1e-4, c₂ = 0.9) that first tries t = lr (the very
first step tries t = lr·min(1, 1/‖g₀‖₁), torch's rule) and brackets and zooms by cubic
interpolation from there. ``line_search: none`` takes t_k = lr (first step as above).

One outer iteration, one update of W. torch's ``step(closure)`` runs ``max_iter`` iterations
and keeps the history between calls, so ``max_iter: 1`` makes the harness's iteration what it
is for every other method; ``max_iter > 1`` packs several L-BFGS iterations into one recorded
step. Each line-search trial is one *function evaluation* (a forward pass and one Jᵀr, like a
``gd`` step); ``inner_iters`` reports how many the step paid for, so reports show the
line-search cost (1 when the first trial is accepted, the usual case once the history fills).

torch evaluates the closure once at the start of every ``step`` call, at the point the previous
call's line search has already evaluated and accepted. The closure remembers the lowest-loss
point it has evaluated (W, loss, gradient) and answers that repeated call from memory when W is
bit-for-bit the same, so a step costs exactly its line-search evaluations; the trajectory is
torch's either way (a miss just evaluates again).

Scaling and stopping. The mean loss matches ``adam`` and makes the tolerances and the first
trial step independent of n; after the first step L-BFGS is invariant to the scale of the loss
(except torch's absolute curvature threshold yᵀs > 1e-10, under which a pair is not stored).
torch's tolerances (``tolerance_grad`` on max|g|, ``tolerance_change`` on the directional
derivative, the step and the loss change) end a ``step`` call without moving W and without a
word; at their torch defaults (1e-7, 1e-9) they fire on the mean loss around L/L₀ ≈ 1e-8 to
1e-10, before tighter targets. They default to 0 here: the runner's ``target_rel_loss`` is the
stopping rule. The evaluation budget ``max_eval`` must be set: torch's default,
⌊1.25·max_iter⌋ = 1 at ``max_iter: 1``, leaves the line search no trial beyond the first
(accept it if lower, else t = 0 forever). A step that leaves W where it was (no descent
direction, or no lower point within the budget) clears the history, so the next step restarts
from steepest descent instead of repeating itself; recorded as ``restarted``.

Cost per outer iteration: k function evaluations (forward pass + Jᵀr, O(nmd) each; k = 1 in
the usual case) plus O(h·md) for the two-loop recursion. Memory: the base, the 2·h·m·d
history and about a dozen m×d working vectors (direction, gradients, line-search copies).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import (
    Algorithm,
    Shape,
    StepInfo,
    base_memory,
    check_positive_int,
    register,
    require,
)
from harness.common.flops import monomial

LINE_SEARCHES = ("strong_wolfe", "none")

#: m×d working vectors beyond the history: flat gradient, previous gradient, direction and
#: its two-loop buffer, the line search's copy of W and its three gradients, two bracket
#: gradients, and the closure's remembered point (W and gradient).
WORKING_VECTORS = 12


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class LBFGSParams:
    lr: float = 1.0  # first trial step of every line search (t = lr); the fixed step without one
    history_size: int = 10  # h curvature pairs (s, y) kept; memory 2·h·m·d
    max_iter: int = 1  # L-BFGS iterations per outer step: 1 = one update of W per iteration
    max_eval: int = 25  # function evaluations per outer step, the first one included (≥ 2)
    tolerance_grad: float = 0.0  # torch stops a step if max|∇L̄| <= this; 0: never early
    tolerance_change: float = 0.0  # torch's step/loss-change/slope tolerance; 0: never early
    line_search: str = "strong_wolfe"  # "strong_wolfe" or "none" (t = lr, no extra evaluation)

    def __post_init__(self) -> None:
        require(_is_number(self.lr) and self.lr > 0, "lr", "a positive number", self.lr)
        check_positive_int("history_size", self.history_size)
        check_positive_int("max_iter", self.max_iter)
        require(isinstance(self.max_eval, int) and not isinstance(self.max_eval, bool)
                and self.max_eval >= 2, "max_eval",
                "an integer >= 2 (the first evaluation plus at least one line-search trial)",
                self.max_eval)
        for key in ("tolerance_grad", "tolerance_change"):
            value = getattr(self, key)
            require(_is_number(value) and value >= 0, key, "a number >= 0", value)
        require(self.line_search in LINE_SEARCHES, "line_search",
                f"one of {', '.join(LINE_SEARCHES)}", self.line_search)


@register
class LBFGS(Algorithm):
    """Full-batch L-BFGS (torch.optim.LBFGS, strong Wolfe) on the mean loss, gradient Jᵀr/n."""

    name = "lbfgs"
    Params = LBFGSParams
    unshardable = ("torch.optim.LBFGS takes inner products of the whole parameter vector, "
                   "of which a rank holds one block")
    references = ("Liu, Nocedal. On the limited memory BFGS method for large scale "
                  "optimization. Math. Programming 45, 1989",
                  "Nocedal, Wright. Numerical Optimization, 2nd ed., §7.2 and §3.5 "
                  "(strong-Wolfe line search). Springer 2006")
    # inner_iters counts function evaluations of the line search, not a linear solve's
    # iterations: it enters the cost model, not the inner-iterations figure
    reports_inner_iters = False
    cost_text = "4k·nmd + 4h·md (k: function evaluations)"
    # without a line search every step evaluates once: the ladder times one evaluation
    ladder_runs = ({"lr": 1e-6, "line_search": "none"},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        # k function evaluations (forward + Jᵀr each; k = inner, usually 1) and the two-loop
        # recursion over h stored pairs, about 4h·md flops
        if inner is None:
            return None
        h = float(params["history_size"])
        return [monomial("k·nmd", 4 * inner, n, m, d, 1, 1, 1, linearize=0.5),
                monomial("h·md", 4 * h, n, m, d, 0, 1, 1)]

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        """k function evaluations (a forward pass and Jᵀr/n each), then the two-loop
        recursion and the update: about 4h + a dozen passes over the P parameters."""
        P = c.params(m, d)
        return {"forward": inner * c.forward(n, m, d),
                "gradient": inner * (c.jt(n, m, d) + 2 * c.ew(P)),
                "update": (4 * p["history_size"] + WORKING_VECTORS) * c.ew(P)}

    @classmethod
    def default_inner_iters(cls, n, params):
        return 1.0  # one evaluation per step in the usual case (module docstring)

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        return base_memory(shape) + shape.bytes((2 * params.history_size + WORKING_VECTORS)
                                                * shape.num_params)

    def setup(self, phase) -> None:
        p = self.params
        self.theta = self.problem.params
        # a fresh optimizer per instance: the runner's throw-away warm-up copy has its own
        # history and its own remembered point, and none of it reaches the timed run
        self.optimizer = torch.optim.LBFGS(
            [self.theta], lr=p.lr, max_iter=p.max_iter, max_eval=p.max_eval,
            tolerance_grad=p.tolerance_grad, tolerance_change=p.tolerance_change,
            history_size=p.history_size,
            line_search_fn=None if p.line_search == "none" else p.line_search)
        # without a line search nothing is evaluated twice: nothing to remember
        self._remember = p.line_search != "none"
        self._memo: tuple[torch.Tensor, float, torch.Tensor] | None = None
        self._evals = 0
        self._phase = phase

    @torch.no_grad()
    def _closure(self) -> float:
        """L̄(W) with W.grad = ∇L̄ = Jᵀr/n, by the harness's operators (no autograd)."""
        memo = self._memo
        if memo is not None and torch.equal(memo[0], self.theta):
            self.theta.grad = memo[2]
            return memo[1]
        n = self.problem.n
        with self._phase("forward"):
            lin = self.problem.linearize()
            loss = 0.5 * float(lin.residual.pow(2).sum()) / n
        with self._phase("gradient"):
            grad = lin.jacobian.rmatvec(lin.residual).div_(n)
        self._evals += 1
        self.theta.grad = grad
        if self._remember and (memo is None or loss < memo[1]):
            self._memo = (self.theta.clone(), loss, grad)
        return loss

    @torch.no_grad()
    def step(self, phase) -> StepInfo:
        self._phase = phase
        self._evals = 0
        if self._memo is not None and not torch.equal(self._memo[0], self.theta):
            self._memo = None  # only the point W stands on can be asked for again
        before = self.theta.clone()
        self.optimizer.step(self._closure)
        state = self.optimizer.state[self.theta]
        restarted = torch.equal(before, self.theta)
        if restarted:  # no move: drop the history so the next step is steepest descent
            self.optimizer.state.clear()
        return StepInfo(inner_iters=self._evals,
                        extras={"step_length": float(state.get("t", 0.0)) if not restarted
                                else 0.0,
                                "history": len(state.get("old_dirs") or ()),
                                "restarted": restarted})
