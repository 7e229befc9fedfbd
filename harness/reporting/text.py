"""Text that reaches a figure: names read from run.json are data, not markup.

Matplotlib reads ``$…$`` in any label as mathtext, so an algorithm, dataset or device name
holding a ``$`` (or an odd number of them) would be typeset, or fail to parse and lose the
figure. ``plain`` escapes the dollar signs; ``plain_frame`` does it for the columns figures
build labels from, including the JSON ones (hyperparameters, data options).
"""

from __future__ import annotations

import json
import re

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


#: characters that could start Markdown or HTML (emphasis, code, links, tags, entities,
#: table cells); ``_`` only where it could start or end emphasis (not inside a word)
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~&])")
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def md_escape(value) -> str:
    """``value`` (text from a store, a profile or the command line) as literal Markdown: on
    one line, every character that could start markup, a link, an HTML tag or a table cell
    backslash-escaped. It renders as the text it is."""
    text = _CONTROL.sub(" ", str(value))
    return _MD_UNDERSCORE.sub(r"\\_", _MD_SPECIAL.sub(r"\\\1", text))


_MD_ESCAPED = re.compile(r"\\([\\`*\[\]<>|~&_])")


def md_plain(text: str) -> str:
    """A line of this module's Markdown as a terminal shows it: escapes and bold undone."""
    return _MD_ESCAPED.sub(r"\1", str(text).replace("**", ""))


def md_code(value) -> str:
    """``value`` as an inline code span, whatever backticks it holds."""
    text = _CONTROL.sub(" ", str(value))
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
