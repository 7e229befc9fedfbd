"""One name per variant: progress lines, the sweep summary, the report's variants and the
figures' legends all call the paper's variant gn_sketch_paper."""

from __future__ import annotations

import json

import pandas as pd

from harness.execution.config import resolve
from harness.reporting.figures.common import Palette
from harness.reporting.load import label_variants
from tests.helpers import compose_cfg


def test_progress_label_names_the_preset():
    assert resolve(compose_cfg("device=cpu", "algorithm=gn_sketch_paper")).label.startswith(
        "gn_sketch_paper ")
    assert resolve(compose_cfg("device=cpu", "algorithm=gn_sketch")).variant == "gn_sketch"


def test_report_variants_and_legends_use_the_preset_name():
    runs = pd.DataFrame({
        "algorithm": ["gn_sketch", "gn_sketch", "gn_sketch", "gn_gram"],
        "preset": ["gn_sketch", "gn_sketch_paper", None, "gn_gram"],
        "hyperparameters": [json.dumps({"factor": "chol", "s": 2}),
                            json.dumps({"factor": "qr", "s": 4}),
                            json.dumps({"factor": "qr", "s": 8}), "{}"],
        "model": ["two_layer"] * 3 + ["mlp"], "depth": [1, 1, 1, 3]})
    runs["variant"] = label_variants(runs)
    assert list(runs["variant"]) == ["gn_sketch", "gn_sketch_paper",
                                     "gn_sketch (factor=qr, s=8)",
                                     "gn_gram [mlp L=3]"]
    palette = Palette(runs.iloc[[0, 1]])
    assert palette.label("gn_sketch_paper") == "gn_sketch_paper"
    assert palette.label("gn_sketch") == "gn_sketch"
