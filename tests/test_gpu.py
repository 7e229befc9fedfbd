"""The CUDA path against the CPU reference. Marked ``gpu``: skipped without a CUDA device."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from harness.execution.runner import run_cell
from harness.model import make_problem
from tests.helpers import compose_cfg

pytestmark = pytest.mark.gpu


def test_operators_on_cuda_match_cpu_in_float64():
    kw = dict(n=48, d=8, m=512, seed=2, dtype=torch.float64)
    cpu = make_problem("synthetic", device="cpu", **kw).linearize()
    gpu = make_problem("synthetic", device="cuda", **kw).linearize()
    g = torch.randn(48, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for a, b in ((cpu.residual, gpu.residual),
                 (cpu.jacobian.gram(), gpu.jacobian.gram()),
                 (cpu.jacobian.rmatvec(g), gpu.jacobian.rmatvec(g.cuda())),
                 (cpu.gram_operator() @ g, gpu.gram_operator() @ g.cuda())):
        assert float((a - b.cpu()).norm() / a.norm()) <= 1e-10


@pytest.mark.parametrize("algorithm", ["gn_gram", "gn_sketch", "gn_cg", "gd"])
def test_runner_on_cuda_records_gpu_facts(tmp_path, algorithm):
    cfg = compose_cfg(f"algorithm={algorithm}", "device=cuda", "data.n=128", "model.m=4096",
                      "max_iters=30", f"store={tmp_path}", "isolate=false")
    outcome = run_cell(cfg)
    run = json.loads((outcome.cell / "run.json").read_text())
    assert run["device"] == "cuda"
    assert run["peak_memory_kind"] == "torch.cuda.max_memory_allocated"
    assert run["peak_memory_bytes"] > 0
    assert OmegaConf.create(run["config"]).tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    if algorithm != "gd":
        assert outcome.status == "converged", run["reason"]
