"""The report's figures, drawn from a small synthetic table in-process, checked for the rules a
machine can check: paper width, 300-dpi PNG plus PDF, short legends holding only what varies,
one colour per method in every figure, censored cells drawn, a registry with one entry per
figure number."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.costmodel import Profile
from harness.reporting import fits, style
from harness.reporting.figures import REGISTRY, all_figures
from harness.reporting.figures.common import Palette

NS = (64, 128, 256, 512, 1024)  # five sizes: the fits need them (fits.MIN_SIZES)
MIB = 2**20
#: (algorithm, hyperparameters) of every variant; ``my_method`` is in no palette.
VARIANTS = [("gd", {"lr": 1.0}), ("gn_gram", {}), ("gn_cg", {"damping": 0.0}),
            ("my_method", {}),
            *[("gn_sketch", {"damping": 0.0, "sketch": s, "sketch_ratio": r})
              for s in ("gaussian", "srht") for r in (2.0, 4.0, 8.0)]]


def _variant(alg: str, hp: dict) -> str:
    inside = ", ".join(f"{k}={v}" for k, v in hp.items() if k in ("sketch", "sketch_ratio"))
    return f"{alg} ({inside})" if inside else alg


def _cell(alg, hp, n, m, seed, status="converged"):
    rng = np.random.default_rng(hash((alg, n, m, seed)) % 2**32)
    t = 1e-7 * n**1.5 * m / 1024 * (1 + 0.05 * rng.random())
    measured = status in ("converged", "max_iters")
    reached = status == "converged"
    return {
        "cell": f"{alg}/{_variant(alg, hp)}_n{n}_m{m}_s{seed}", "algorithm": alg,
        "variant": _variant(alg, hp), "hyperparameters": json.dumps(hp, sort_keys=True),
        "dataset": "synthetic", "data_params": json.dumps({"target": "teacher"}), "d": 16,
        "dtype": "float64", "device": "cpu", "n": n, "m": m, "seed": seed, "status": status,
        "censor": None if reached else status, "data_ok": measured,
        "last_iter": 8.0 if measured else np.nan,
        "time_per_iter_s": t if measured else np.nan, "mean_step_time_s": t if measured
        else np.nan, "time_per_iter_median_s": t if measured else np.nan,
        "time_per_iter_amortised_s": t if measured else np.nan, "refresh_frac": 1.0,
        "mean_inner_iters": ({"gn_cg": n / 8, "gn_sketch": 6.0 / hp.get("sketch_ratio", 1)}
                             .get(alg, np.nan)),
        "mean_t_forward": 0.1 * t, "mean_t_gram": 0.5 * t if alg == "gn_gram" else np.nan,
        "mean_t_sketch": 0.4 * t if alg == "gn_sketch" else np.nan, "mean_t_solve": 0.3 * t,
        "setup_time_s": 1e-3, "time_to_target_s": 8 * t if reached else np.nan,
        "time_lower_bound_s": 8 * t if status == "max_iters" else np.nan,
        "estimated_memory_bytes": 1e3 * n * m, "memory_budget_bytes": 2e9,
        "peak_memory_bytes": 250 * MIB + 2e3 * n * m if measured else np.nan,
        "peak_memory_kind": "process max RSS", "target": 1e-6,
        "ntk_gram_gap": 3.0 / np.sqrt(m) * (1 + 0.1 * seed),
    }


@pytest.fixture(scope="module")
def synthetic():
    cells = []
    for alg, hp in VARIANTS:
        for n in NS:
            for seed in (0, 1):
                status = "converged"
                if alg == "gd" and n == NS[-1]:
                    status = "max_iters"  # a lower bound in figure 9
                if alg == "gn_gram" and n == NS[-1]:
                    status = "skipped"  # refused by the memory check
                cells.append(_cell(alg, hp, n, 1024, seed, status))
    for alg in ("gd", "gn_gram"):  # an m sweep, and the NTK widths
        for m in (256, 4096):
            for seed in (0, 1):
                cells.append(_cell(alg, {"lr": 1.0} if alg == "gd" else {}, 128, m, seed))
    for alg, hp in (("gn_gram", {}), VARIANTS[4]):  # a small (n, m) grid: figure 11
        for n in (256, 512):
            for m in (2048, 8192):
                cells.append(_cell(alg, hp, n, m, 0))
    cells = pd.DataFrame(cells)
    rows = []
    for c in cells[cells["data_ok"]].itertuples():
        rate = {"gd": 0.3, "my_method": 0.5}.get(c.algorithm, 1e-3)
        for it in range(9):
            rows.append({"cell": c.cell, "variant": c.variant, "iter": it, "m": c.m,
                         "rel_loss": rate**it, "time_s": it * c.time_per_iter_s,
                         "step_time_s": c.time_per_iter_s if it else 0.0,
                         "ntk_lambda_min_ratio": 1 - 0.1 * it / np.sqrt(c.m),
                         "ntk_weight_change": 0.5 + 0.01 * it})
    return cells, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def drawn(synthetic, tmp_path_factory):
    cells, rows = synthetic
    out = tmp_path_factory.mktemp("figures")
    fits_n, fits_m = fits.scaling_fits(cells, "n", 0.0), fits.scaling_fits(cells, "m", 0.0)
    # a measured-like profile of "this machine" and a datasheet one: figures 12 and 13
    mine = Profile.synthetic(flops=2e9, memory_bytes=2**33)
    mine.data.update(device_name="test CPU", source="measured (synthetic for the tests)",
                     date="2026-01-01")
    sheet = Profile.synthetic(flops=5e10, memory_bytes=2**36)
    sheet.data.update(device_name="test GPU", source="datasheet (prediction, not measured)")
    return all_figures(cells, rows, fits_n, fits_m, out, mine, [sheet]), out


def _pdf_size_in(path) -> tuple[float, float]:
    box = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)",
                    path.read_bytes())
    x0, y0, x1, y1 = (float(v) for v in box.groups())
    return (x1 - x0) / 72, (y1 - y0) / 72


def test_every_figure_is_drawn_as_pdf_and_300_dpi_png_within_the_page_width(drawn):
    figs, out = drawn
    assert {f.number for f in figs if f.files} == set(range(1, 14)), \
        [(f.number, f.missing) for f in figs if not f.files]
    for f in figs:
        assert sorted(p.rsplit(".", 1)[1] for p in f.files) == ["pdf", "png"]
        with Image.open(out / f"{f.name}.png") as im:
            dpi = im.info["dpi"][0]
            assert abs(dpi - style.DPI) < 1, f.name
            assert im.size[0] / dpi <= style.PAGE_IN + 0.01, (f.name, im.size)
            assert im.size[1] / dpi <= 9.0, (f.name, im.size)  # fits a page
        width, _ = _pdf_size_in(out / f"{f.name}.pdf")
        assert width <= style.PAGE_IN + 0.01, (f.name, width)
        assert f.caption and f.title


def test_legends_are_short_and_hold_only_what_varies(drawn):
    figs, _ = drawn
    entries = [t for f in figs for t in f.legend]
    assert entries
    for text in entries:
        assert len(text) <= style.MAX_LEGEND_CHARS, text
    # gn_cg's damping and gn_sketch's damping are the same in every cell: caption, not legend
    assert not any("damping" in t for t in entries)
    fig1 = next(f for f in figs if f.number == 1)
    assert "damping=0" in fig1.caption
    assert {"gn_sketch (gaussian, s/n=2)", "gn_sketch (srht, s/n=4)"} <= set(fig1.legend)


def test_one_colour_per_method_in_every_figure_and_unknown_methods_get_one(drawn):
    figs, _ = drawn
    methods = {alg for alg, _ in VARIANTS}
    seen: dict[str, set[str]] = {}
    for f in figs:
        for text, color in f.legend.items():
            alg = re.match(r"[A-Za-z0-9_]+", text)
            if alg and alg.group(0) in methods:
                seen.setdefault(alg.group(0), set()).add(color)
    assert set(seen) == methods  # the unknown method is drawn too
    for alg, colors in seen.items():
        assert colors == {style.method_color(alg).lower()}, (alg, colors)
    known = {c for c, _, _ in style.METHOD_STYLES.values()}
    assert style.method_color("my_method") not in known
    assert style.method_style("my_method") == style.method_style("my_method")


def test_censored_cells_are_drawn_and_explained(drawn):
    figs, _ = drawn
    fig9 = next(f for f in figs if f.number == 9)
    assert "lower bound" in fig9.caption
    assert any("lower bound" in t for t in fig9.legend)
    fig1 = next(f for f in figs if f.number == 1)
    assert "skipped" in fig1.caption and "theory" in fig1.caption


def test_registry_numbers_each_figure_once():
    assert sorted(REGISTRY) == list(range(1, 14))
    names = [spec.name for spec in REGISTRY.values()]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"fig\d\d_[a-z0-9_]+", n) for n in names)


def test_label_text_never_starts_mathtext():
    assert style._label_text("cost $5 and $6") == r"cost \$5 and \$6"
    assert style._label_text("gn_sketch") == "gn_sketch"
    cells = pd.DataFrame({"algorithm": ["m$x"], "variant": ["m$x"], "hyperparameters": ["{}"]})
    assert Palette(cells).label("m$x") == r"m\$x"


def test_no_cells_means_every_figure_explains_itself(tmp_path):
    figs = all_figures(pd.DataFrame(), pd.DataFrame(), None, None, tmp_path)
    assert [f.number for f in figs] == list(range(1, 14))
    assert all(f.missing and not f.files for f in figs)
