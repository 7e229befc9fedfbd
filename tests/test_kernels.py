"""Kernel routes (harness/linalg/kernels.py): chosen by measurement, every route exact enough,
overridable, recorded, and never timed inside a step."""

from __future__ import annotations

import time

import pytest
import torch

from harness.common.errors import ConfigError
from harness.execution.config import resolve
from harness.linalg import kernels
from tests.helpers import compose_cfg, run_in_process


@pytest.fixture(autouse=True)
def fresh_selector():
    kernels.reset()
    yield
    kernels.reset()


def pattern(n=48, m=300, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return kernels.Pattern((torch.rand(n, m, generator=gen) > 0.5).to(dtype))


def fake_timer(times: dict[str, float], calls: list | None = None):
    """A timer that reports the given seconds per route (and logs what it was asked)."""
    def timer(route, fn, device):
        fn()  # the route must run on the calibration operands
        if calls is not None:
            calls.append(route)
        return times[route]
    return timer


# --- selection ----------------------------------------------------------------------------


@pytest.mark.parametrize("winner", ["float", "int8"])
def test_each_route_can_win(winner):
    loser = "int8" if winner == "float" else "float"
    kernels.configure("auto", timer=fake_timer({winner: 1.0, loser: 3.0}))
    P = pattern()
    Z = torch.randn(300, 5)
    for name, ops in (("pattern_gram", ()), ("pattern_mm", (Z,)),
                      ("pattern_rmm", (torch.randn(48, 5),))):
        assert kernels.selector().choose(kernels.PRODUCTS[name], P, *ops) == winner
    report = kernels.report()
    assert set(report["routes"].values()) == {winner}
    assert all(c["how"] == "measured" and c["times_s"] == {winner: 1.0, loser: 3.0}
               for c in report["choices"])


def test_a_near_tie_keeps_the_plain_float_route():
    kernels.configure("auto", timer=fake_timer({"float": 1.0 + kernels.TIE_MARGIN / 2,
                                                "int8": 1.0}))
    assert kernels.selector().choose(kernels.PRODUCTS["pattern_gram"], pattern()) == "float"
    kernels.configure("auto", timer=fake_timer({"float": 1.0 + 2 * kernels.TIE_MARGIN,
                                                "int8": 1.0}))
    assert kernels.selector().choose(kernels.PRODUCTS["pattern_gram"], pattern()) == "int8"


def test_one_calibration_per_bucket():
    calls: list[str] = []
    kernels.configure("auto", timer=fake_timer({"float": 1.0, "int8": 2.0}, calls))
    for n in (40, 48, 64):  # one power-of-two bucket
        kernels.pattern_gram(pattern(n=n, m=300))
    assert sorted(calls) == ["float", "int8"]
    kernels.pattern_gram(pattern(n=65, m=300))  # the next bucket calibrates again
    assert len(calls) == 4
    assert kernels.calibration_seconds() > 0


@pytest.mark.parametrize("int8_s,timed_whole", [(20.0, False), (3.0, True)])
def test_a_route_hopeless_on_a_corner_is_not_timed_whole(int8_s, timed_whole):
    """Operands beyond the probe corner: a route over PROBE_SLOW_FACTOR × float there is
    recorded as not worth timing (an int8 GEMM without int8 instructions) and never run at
    full size; a merely slower one is timed whole as before."""
    calls: list[str] = []
    kernels.configure("auto", timer=fake_timer({"float": 1.0, "int8": int8_s}, calls))
    rows, cols = kernels.PROBE_ROWS + 8, kernels.PROBE_COLS + 52
    P = pattern(n=rows, m=cols)
    Y = torch.randn(rows, 4)
    assert kernels.selector().choose(kernels.PRODUCTS["pattern_rmm"], P, Y) == "float"
    (choice,) = kernels.report()["choices"]
    if timed_whole:
        # float whole, the probe's float and int8, int8 whole
        assert calls == ["float", "float", "int8", "int8"] and not choice["unavailable"]
    else:
        assert calls == ["float", "float", "int8"]  # float whole, then the probe's two
        why = choice["unavailable"]["int8"]
        assert f"on a {kernels.PROBE_ROWS}x{kernels.PROBE_COLS} corner" in why
        assert f"not timed at {rows}x{cols}" in why and "20x slower" in why


def test_a_failing_route_is_no_candidate():
    def timer(route, fn, device):
        if route == "int8":
            raise RuntimeError("no int8 GEMM here")
        return 1.0
    kernels.configure("auto", timer=timer)
    assert kernels.selector().choose(kernels.PRODUCTS["pattern_gram"], pattern()) == "float"
    (choice,) = kernels.report()["choices"]
    assert "no int8 GEMM here" in choice["unavailable"]["int8"]


def test_float64_split_is_unavailable_and_forced_int8_falls_back():
    P = pattern(dtype=torch.float64)
    Z = torch.randn(300, 3, dtype=torch.float64)
    kernels.configure("int8")
    assert kernels.selector().choose(kernels.PRODUCTS["pattern_mm"], P, Z) == "float"
    # the Gram's integer route is exact in any float dtype, so int8 is honoured there
    assert kernels.selector().choose(kernels.PRODUCTS["pattern_gram"], P) == "int8"
    choices = {c["product"]: c for c in kernels.report()["choices"]}
    assert "float32 precision only" in choices["pattern_mm"]["unavailable"]["int8"]
    assert choices["pattern_mm"]["how"] == "forced"


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_forced_mode_never_measures(mode):
    def timer(route, fn, device):
        raise AssertionError("a forced route must not be timed")
    kernels.configure(mode, timer=timer)
    kernels.pattern_gram(pattern())
    assert kernels.routes_used() == {"pattern_gram": mode}


# --- every route against float64 -----------------------------------------------------------


@pytest.mark.parametrize("route", ["float", "int8"])
def test_routes_match_float64(route):
    kernels.configure(route)
    P = pattern(n=70, m=333, seed=2)
    Dd = P.D.double()
    gen = torch.Generator().manual_seed(5)
    Z = torch.randn(333, 7, generator=gen) * torch.logspace(-3, 3, 7)  # columns of all scales
    Y = torch.randn(70, 7, generator=gen)
    assert torch.equal(kernels.pattern_gram(P).double(), Dd @ Dd.T)  # counts: exact
    for got, A, B in ((kernels.pattern_mm(P, Z), Dd, Z.double()),
                      (kernels.pattern_rmm(P, Y), Dd.T, Y.double())):
        # the backward-error bound of a float32 GEMM: |C − AB| ≤ γ_k |A||B|, γ_k ≈ k·2⁻²⁴
        err = (got.double() - A @ B).abs() / (A.abs() @ B.abs())
        assert float(err.max()) < A.shape[1] * 2.0**-24
    assert kernels.routes_used() == dict.fromkeys(("pattern_gram", "pattern_mm",
                                                   "pattern_rmm"), route)
    # every route returns the layout the float route does (lbfgs views the gradient flat)
    for out in (kernels.pattern_gram(P), kernels.pattern_mm(P, Z), kernels.pattern_rmm(P, Y)):
        assert out.is_contiguous()


def adversarial(kind: str, rows: int, k: int = 6, seed: int = 3) -> torch.Tensor:
    """Operands that break a split scaled by each column's maximum alone."""
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(rows, k, generator=gen)
    at = torch.randint(0, rows, (k,), generator=gen)
    signs = torch.tensor([1.0, -1.0]).repeat(k)[:k]  # mixed signs
    if kind.startswith("tower"):  # one entry per column far above the rest
        B[at, torch.arange(k)] = float(kind[len("tower"):]) * signs
    elif kind == "subnormal":  # whole columns below float32's normal range
        B[:, ::2] *= 1e-39
    elif kind == "decades":  # entries over 40 decades, mixed signs
        B *= torch.logspace(-20, 20, rows).unsqueeze(1)
    return B


def normwise(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref).norm() / ref.norm())


def both_products(P, kind):
    Dd = P.D.double()
    Z, Y = adversarial(kind, P.shape[1]), adversarial(kind, P.shape[0], seed=4)
    return ((kernels.pattern_mm(P, Z), Dd @ Z.double()),
            (kernels.pattern_rmm(P, Y), Dd.T @ Y.double()))


@pytest.mark.parametrize("kind", ["tower1e3", "tower-1e2"])
def test_split_carries_a_towering_entry_with_more_pieces(kind):
    """A column max 10³ above its typical entry: the split takes 5 pieces and its error
    stays at or below the float32 GEMM's, normwise and on the rows the tower misses."""
    P = pattern(n=96, m=1500, seed=6)
    assert kernels.split_plan(adversarial(kind, 1500))[0] > 4
    kernels.configure("float")
    floats = [got for got, _ in both_products(P, kind)]
    kernels.configure("int8")
    for (got, ref), flt in zip(both_products(P, kind), floats):
        assert normwise(got, ref) <= normwise(flt, ref) * 1.5
        small = (ref.abs() < 1e2).all(1)  # the rows the tower does not reach
        assert normwise(got[small], ref[small]) <= normwise(flt[small], ref[small]) * 1.5
    assert all(c["fallbacks"] == 0 and c["route"] == "int8"
               for c in kernels.report()["choices"])


@pytest.mark.parametrize("kind", ["tower1e7", "subnormal", "decades"])
def test_split_falls_back_to_float_beyond_its_range(kind):
    """A 10⁷ entry per column, subnormal columns, 40 decades: the split would lose float32
    accuracy (or, at a max-only scale, zero the subnormals), so the call runs float."""
    P = pattern(n=96, m=1500, seed=6)
    with pytest.raises(kernels.OutOfRange):
        kernels.split_plan(adversarial(kind, 1500))
    kernels.configure("float")
    floats = [got for got, _ in both_products(P, kind)]
    kernels.configure("int8")
    for (got, ref), flt in zip(both_products(P, kind), floats):
        assert torch.equal(got, flt)
        assert normwise(got, ref) < 1e-5
    choices = kernels.report()["choices"]
    assert all(c["fallbacks"] == 1 and c["fallback_reason"] for c in choices)


def test_split_keeps_ieee_inf_and_nan():
    P = pattern(n=40, m=200)
    Z = torch.randn(200, 3)
    Z[5, 1] = float("inf")
    Y = torch.randn(40, 3)
    Y[2, 0] = float("nan")
    kernels.configure("float")
    want = kernels.pattern_mm(P, Z), kernels.pattern_rmm(P, Y)
    kernels.configure("int8")
    got = kernels.pattern_mm(P, Z), kernels.pattern_rmm(P, Y)
    for g, w in zip(got, want):
        assert torch.equal(g.isinf(), w.isinf()) and torch.equal(g.isnan(), w.isnan())
    assert bool(got[0][:, 1].isinf().any())


def test_auto_calibrates_the_split_on_a_stand_in_for_an_operand_it_cannot_carry():
    kernels.configure("auto", timer=fake_timer({"float": 3.0, "int8": 1.0}))
    P = pattern(n=48, m=300)
    Z = adversarial("tower1e7", 300)
    got = kernels.pattern_mm(P, Z)
    assert torch.equal(got, P.D @ Z)  # this call ran float ...
    (choice,) = kernels.report()["choices"]
    assert choice["route"] == "int8" and choice["fallbacks"] == 1  # ... the bucket keeps int8


@pytest.mark.parametrize("route", ["float", "int8"])
def test_gram_operator_is_route_independent(route, small_problem):
    kernels.configure(route)
    p = small_problem
    p.X, p.W, p.y, p.a = (t.float() for t in (p.X, p.W, p.y, p.a))
    lin = p.linearize()
    J = lin.jacobian.dense().double()
    v = torch.randn(p.n, generator=torch.Generator().manual_seed(1))
    ref = J @ (J.T @ v.double())
    got = lin.gram_operator() @ v
    assert float((got.double() - ref).norm() / ref.norm()) < 1e-5
    assert torch.allclose(lin.jacobian.gram().double(), J @ J.T, rtol=1e-5, atol=1e-6)


# --- the option, and what a run records ------------------------------------------------------


def test_kernels_option_is_validated():
    with pytest.raises(ConfigError, match=r"Unknown kernels 'fast'.*'auto', 'float', 'int8'"):
        resolve(compose_cfg("kernels=fast"))
    with pytest.raises(ConfigError, match="warmup_steps"):
        resolve(compose_cfg("warmup_steps=-1"))
    a = resolve(compose_cfg("kernels=float")).identity
    b = resolve(compose_cfg("kernels=int8")).identity
    assert a != b  # a forced route is a different cell


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_run_records_routes_and_cpu(store, mode):
    outcome, run, rows = run_in_process(store, "algorithm=gn_gram", "data.n=32",
                                        "model.m=256", "data.d=8", f"kernels={mode}")
    assert outcome.status == "converged"
    assert run["kernels"]["mode"] == mode
    assert run["kernels"]["routes"] == {"pattern_gram": mode, "pattern_rmm": mode}
    prov = run["provenance"]
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert prov["cpu_model"] and isinstance(prov["cpu_flags"], list)
    assert set(rows["kernel_routes"]) == {f"pattern_gram={mode},pattern_rmm={mode}"}
    assert set(rows["cpu_capability"]) == {prov["cpu_capability"]}


def test_calibration_is_never_inside_a_step(store):
    """A slow calibration (0.25 s per route, faked) lands in warmup_time_s, not in the steps,
    also when it happens inside a step (warmup_steps=0: nothing calibrated before step 1)."""
    def slow(route, fn, device):
        time.sleep(0.25)
        return {"float": 1.0, "int8": 2.0}[route]
    for warmup in (0, 1):
        kernels.reset()
        kernels.selector().timer = slow
        # a fixed lr: no power iteration in setup, so step 1 is the first product with D
        outcome, run, rows = run_in_process(store, "algorithm=gd", "algorithm.lr=0.5",
                                            "data.n=32", "model.m=256",
                                            "data.d=8", "max_iters=3", "kernels=auto",
                                            f"warmup_steps={warmup}", "force=true")
        assert rows["step_time_s"].iloc[1:].max() < 0.25, warmup
        assert run["warmup_time_s"] >= 0.5  # two routes of pattern_rmm, at least
        assert (run["calibration_in_steps_s"] > 0) == (warmup == 0)


def test_warm_up_does_not_change_the_trajectory(store):
    losses = []
    for warmup in (0, 2):
        _, run, rows = run_in_process(store, "algorithm=adam", "data.n=32", "model.m=256",
                                      "data.d=8", "max_iters=5", f"warmup_steps={warmup}")
        assert run["warmup_steps"] == warmup
        losses.append(rows["loss"].tolist())
    assert losses[0] == losses[1]


def test_the_gram_calibrates_on_a_corner_the_skinny_products_whole():
    """The Gram is compute-bound (a corner shows its rate); D Z and Dᵀ Y stream D, so a
    corner small enough for the cache would rank their routes by cache bandwidth."""
    n, m = kernels.CALIBRATION_MAX_ROWS + 8, kernels.CALIBRATION_MAX_COLS + 8
    P = kernels.Pattern(torch.zeros(n, m))
    (G,) = kernels.PRODUCTS["pattern_gram"].calibration_operands(P)
    assert tuple(G.shape) == (kernels.CALIBRATION_MAX_ROWS, kernels.CALIBRATION_MAX_COLS)
    Z, Y = torch.zeros(m, 4), torch.zeros(n, 4)
    Pm, Zc = kernels.PRODUCTS["pattern_mm"].calibration_operands(P, Z)
    Pr, Yc = kernels.PRODUCTS["pattern_rmm"].calibration_operands(P, Y)
    assert tuple(Pm.shape) == tuple(Pr.shape) == (n, m)
    assert Zc.shape == Z.shape and Yc.shape == Y.shape


def test_skinny_products_rent_float_until_the_int8_cast_pays():
    """The int8 time of D Z is measured on a pattern that has its int8 copy; a fresh pattern
    (one per linearisation) runs float until the time int8 would have saved reaches the
    cast, then casts once (rent or buy); an int8 Gram's copy is used at once."""
    kernels.configure("auto", timer=fake_timer({"float": 3.0, "int8": 1.0}))
    Z = torch.randn(300, 5)
    kernels.pattern_mm(pattern(), Z)  # decide the bucket's route: int8
    (choice,) = kernels.selector().choices.values()
    assert choice.route == "int8" and choice.cast_s is not None and choice.cast_s > 0
    choice.cast_s, choice.rented = 5.0, 0  # 2 s saved per call: the third call buys
    P = pattern(seed=1)
    for _ in range(2):
        kernels.pattern_mm(P, Z)
        assert not P.has_int8
    kernels.pattern_mm(P, Z)
    assert P.has_int8 and choice.rented == 2 and P.rent == 4.0
    torch.testing.assert_close(kernels.pattern_mm(P, Z), P.D @ Z)  # exact either way
    Q = pattern(seed=2)
    kernels.configure("auto", timer=fake_timer({"float": 3.0, "int8": 1.0}))
    kernels.pattern_gram(Q)  # the Gram's int8 route makes the copy
    assert Q.has_int8
    kernels.configure("int8")  # a forced route never rents
    R = pattern(seed=3)
    kernels.pattern_mm(R, Z)
    assert R.has_int8
