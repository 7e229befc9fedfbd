"""Text that reaches a figure: names read from run.json are data, not markup.

Matplotlib reads ``$…$`` in any label as mathtext, so an algorithm, dataset or device name
holding a ``$`` (or an odd number of them) would be typeset, or fail to parse and lose the
figure. ``plain`` escapes the dollar signs; ``plain_frame`` does it for the columns figures
build labels from, including the JSON ones (hyperparameters, data options).
"""

from __future__ import annotations

import json

import pandas as pd

from harness.reporting.style import _label_text

#: columns whose values become figure text (legends, titles, panel labels)
TEXT_COLUMNS = ("variant", "algorithm", "dataset", "device", "dtype", "sketch", "device_name")
#: JSON-object columns whose values become figure text
JSON_COLUMNS = ("hyperparameters", "data_params")


def plain(value):
    """``value`` with ``$`` escaped for mathtext; non-strings are returned unchanged."""
    return _label_text(value) if isinstance(value, str) else value


def _plain_json(text):
    if not isinstance(text, str) or "$" not in text:
        return text
    try:
        obj = json.loads(text)
    except ValueError:
        return plain(text)
    if isinstance(obj, dict):
        obj = {plain(k): plain(v) for k, v in obj.items()}
    return json.dumps(obj, sort_keys=True, default=str)


def plain_frame(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """A copy of ``frame`` with its text columns escaped (None and empty frames as they are)."""
    if frame is None or not len(frame):
        return frame
    out = frame.copy()
    for col in TEXT_COLUMNS:
        if col in out.columns and out[col].dtype == object:
            out[col] = out[col].map(plain)
    for col in JSON_COLUMNS:
        if col in out.columns:
            out[col] = out[col].map(_plain_json)
    return out
