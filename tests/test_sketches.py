"""The Walsh–Hadamard transform and the sketch registry (harness/linalg/hadamard.py,
sketches.py)."""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch

from harness.common.errors import ConfigError
from harness.linalg.hadamard import BLOCK_BITS, fwht, next_power_of_two, split_bits
from harness.model import make_problem
from harness.sketches import SKETCHES, make_sketch

NAMES = ["countsketch", "gaussian", "srht", "tensor_srht", "tensorsketch"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Walsh–Hadamard ---------------------------------------------------------------------------


@pytest.mark.parametrize("N", [1, 2, 4, 16, 64, 128, 512, 2048, 4096])
@pytest.mark.parametrize("batch", [(), (3,), (2, 5)])
def test_fwht_matches_scipy_hadamard(N, batch):
    x = torch.randn(*batch, N, generator=gen(N), dtype=torch.float64)
    H = torch.as_tensor(scipy.linalg.hadamard(N), dtype=torch.float64)
    assert float((fwht(x) - x @ H.T).abs().max()) <= 1e-12 * N
    assert float((fwht(x, normalized=True) - x @ H.T / math.sqrt(N)).abs().max()) <= 1e-12 * N


@pytest.mark.parametrize("N", [64, 2**16])
def test_fwht_orthonormal_and_involution(N):
    x = torch.randn(4, N, generator=gen(0), dtype=torch.float64)
    y = fwht(x, normalized=True)
    assert torch.allclose(y.norm(dim=1), x.norm(dim=1), rtol=1e-12)
    assert torch.allclose(fwht(y, normalized=True), x, atol=1e-12)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ConfigError, match="power-of-two"):
        fwht(torch.zeros(6))
    assert [next_power_of_two(k) for k in (1, 2, 3, 5, 1024, 1025)] == [1, 2, 4, 8, 1024, 2048]


def test_fwht_passes_split_the_bits_evenly():
    # a pass with a tiny factor (16 = 5+5+5+1) is a batched product of tiny matrices: slowest
    assert split_bits(1 << 16) == [4, 4, 4, 4]
    assert split_bits(1 << 11) == [4, 4, 3]
    assert split_bits(1 << 5) == [5] and split_bits(1 << 0) == []
    for k in range(1, 40):
        bits = split_bits(1 << k)
        assert sum(bits) == k and max(bits) - min(bits) <= 1 and max(bits) <= BLOCK_BITS


@pytest.mark.gpu
def test_fwht_cuda_matches_cpu():
    x = torch.randn(3, 256, generator=gen(1), dtype=torch.float64)
    assert torch.allclose(fwht(x.cuda()).cpu(), fwht(x), atol=1e-10)


# --- the registry -----------------------------------------------------------------------------


def test_registry_lists_five_sketches_with_docs_and_references():
    assert SKETCHES.names() == NAMES
    for name in NAMES:
        cls = SKETCHES.get(name)
        assert cls.__doc__.strip() and cls.references
    with pytest.raises(ConfigError, match="Unknown sketch 'foo'. Available"):
        SKETCHES.get("foo")


@pytest.fixture(scope="module")
def jac():
    p = make_problem("synthetic", n=12, d=5, m=40, seed=0, dtype=torch.float64)
    return p.linearize().jacobian


@pytest.mark.parametrize("name", NAMES)
def test_structured_path_equals_s_times_explicit_jt(jac, name):
    """sketch_jacobian (blocks, Kronecker factors, FFT) equals S applied to the dense Jᵀ."""
    S = make_sketch(name, jac.m, jac.d, 30, gen(7), dtype=torch.float64)
    B = S.sketch_jacobian(jac)
    assert B.shape == (30, jac.n)
    ref = S.apply(jac.dense()).T
    assert float((B - ref).norm() / ref.norm()) <= 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_blocked_path_is_exact_with_tiny_blocks(jac, name, monkeypatch):
    """Many blocks (of units and of samples), s < n: the same B as one block."""
    import harness.sketches

    S = make_sketch(name, jac.m, jac.d, 7, gen(3), dtype=torch.float64)
    whole = S.sketch_jacobian(jac)
    monkeypatch.setattr(harness.sketches, "BLOCK_ELEMENTS", 64)
    assert float((S.sketch_jacobian(jac) - whole).norm() / whole.norm()) <= 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_isometric_in_expectation(name):
    """E‖S z‖² = ‖z‖²: mean over 400 seeded draws within 4 standard errors of 1."""
    m, d, s, draws = 12, 3, 8, 400
    z = torch.randn(2, m * d, generator=gen(99), dtype=torch.float64)
    z[1] = 0.0
    z[1, :d] = 1.0  # a concentrated vector too: hashing and sampling sketches differ there
    ratios = torch.stack([
        make_sketch(name, m, d, s, gen(1000 + t), dtype=torch.float64).apply(z).pow(2).sum(1)
        / z.pow(2).sum(1) for t in range(draws)])
    mean, sem = ratios.mean(0), ratios.std(0) / math.sqrt(draws)
    assert bool(((mean - 1).abs() <= 4 * sem + 1e-12).all()), (mean, sem)


def test_size_checks_name_the_limit():
    with pytest.raises(ConfigError, match="srht"):
        make_sketch("srht", 3, 2, 9, gen(0))  # padded md = 8 < s
    assert SKETCHES.get("tensor_srht").check_size(3, 2, 8) is None
    assert "s <= 8" in SKETCHES.get("tensor_srht").check_size(3, 2, 9)


@pytest.fixture(scope="module")
def hard():
    """synthetic_hard at n=128, m=256, d=8: md = 2048 ≥ n, G nonsingular but κ(G) ~ 1e6."""
    p = make_problem("synthetic_hard", n=128, d=8, m=256, seed=0, dtype=torch.float64)
    jac = p.linearize().jacobian
    return jac, jac.gram()


def test_hard_problem_is_hard(hard):
    _, G = hard
    ev = torch.linalg.eigvalsh(G)
    assert float(ev[0]) > 0 and float(ev[-1] / ev[0]) > 1e4


@pytest.mark.parametrize("name", ["gaussian", "srht", "tensor_srht"])
def test_preconditioned_condition_number_at_s_4n(hard, name):
    """κ(R⁻ᵀ G R⁻¹) ≤ 20 with R from QR of B = S Jᵀ, s = 4n (dense, three seeds)."""
    jac, G = hard
    n = jac.n
    for seed in range(3):
        B = make_sketch(name, jac.m, jac.d, 4 * n, gen(seed), dtype=torch.float64) \
            .sketch_jacobian(jac)
        R = torch.linalg.qr(B, mode="r").R
        Rinv = torch.linalg.solve_triangular(R, torch.eye(n, dtype=G.dtype), upper=True)
        M = Rinv.T @ G @ Rinv
        ev = torch.linalg.eigvalsh((M + M.T) / 2)
        assert float(ev[-1] / ev[0]) <= 20, (name, seed, float(ev[-1] / ev[0]))
