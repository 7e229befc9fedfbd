"""The report's visual style, in one place: paper sizes, fonts, and the fixed encodings.

* Widths are a paper's: one column (``COLUMN_IN``, 3.3 in) or the full text width (``PAGE_IN``,
  6.8 in); fonts are sized for print at that width (7–8 pt).
* Every method has one colour, one marker and one line style in every figure (``method_style``),
  so a reader learns them once; the colours are Okabe–Ito plus three of Paul Tol's (all
  distinguishable with the common colour-vision deficiencies), and marker plus line style tell
  the methods apart in greyscale. A method not listed gets a colour, marker and line style
  chosen by a hash of its name: deterministic, never missing.
* Every sketch type has one colour and one marker (``sketch_style``); the phases of a step
  (``phase_style``) take pale colours with hatches, so they never read as methods.
* Figures are written as PDF (vector) and PNG at ``DPI``.
"""

from __future__ import annotations

import re
import zlib

#: A paper's column and text widths (inches), and the height of one row of panels.
COLUMN_IN = 3.3
PAGE_IN = 6.8
PANEL_H_IN = 2.2
DPI = 300
#: The longest legend entry the figures write (characters); longer text goes to the caption.
MAX_LEGEND_CHARS = 40

RC = {
    "font.size": 7.5, "axes.labelsize": 7.5, "axes.titlesize": 7.5, "legend.fontsize": 6.5,
    "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "figure.titlesize": 7.5,
    "lines.linewidth": 1.1, "lines.markersize": 3.5, "axes.linewidth": 0.6,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4, "axes.grid": True, "axes.grid.which": "major", "grid.alpha": 0.25,
    "grid.linewidth": 0.4, "axes.spines.top": False, "axes.spines.right": False,
    "legend.frameon": False, "legend.handlelength": 2.6, "legend.columnspacing": 1.2,
    "legend.borderaxespad": 0.2, "savefig.dpi": DPI, "pdf.fonttype": 42, "ps.fonttype": 42,
    "figure.constrained_layout.use": True, "figure.constrained_layout.h_pad": 0.03,
    "figure.constrained_layout.w_pad": 0.03, "axes.titlepad": 3.0,
}

# Okabe & Ito (2008) and Paul Tol's "muted" scheme (wine, indigo, olive).
_BLACK, _GREY, _ORANGE, _SKY = "#000000", "#999999", "#E69F00", "#56B4E9"
_GREEN, _BLUE, _VERMILLION, _PURPLE = "#009E73", "#0072B2", "#D55E00", "#CC79A7"
_WINE, _INDIGO, _OLIVE = "#882255", "#332288", "#999933"

#: method -> (colour, marker, line style). First-order methods dashed or dotted, the
#: Gauss–Newton family solid; the paper's method in the strongest colour.
METHOD_STYLES: dict[str, tuple[str, str, str]] = {
    "gd": (_BLACK, "o", "--"),
    "sgd": (_GREY, "v", ":"),
    "adam": (_ORANGE, "^", "--"),
    "gn_exact": (_SKY, "s", "-"),
    "gn_gram": (_BLUE, "D", "-"),
    "ngd": (_GREEN, "P", "-."),
    "kfac": (_OLIVE, "X", "-."),
    "ggn": (_PURPLE, "h", ":"),
    "gn_cg": (_WINE, "<", "-"),
    "gn_nystrom": (_INDIGO, ">", "-"),
    "gn_sketch": (_VERMILLION, "*", "-"),
    "gn_sketch_paper": ("#EE9966", "*", "--"),  # the paper's variant: a paler vermillion
    "lbfgs": ("#117733", "d", "--"),
}
#: Colours, markers and line styles for names not listed above (picked by a hash of the name).
_SPARE_COLORS = ("#44AA99", "#AA4499", "#DDCC77", "#88CCEE", "#661100", "#6699CC")
_SPARE_MARKERS = ("p", "8", "H", "d", "X", "P", "h", "s")  # all filled: drawn open when censored
_LINESTYLES = ("-", "--", "-.", ":")

#: sketch type -> (colour, marker); Paul Tol's "bright" scheme, apart from the method colours.
SKETCH_STYLES: dict[str, tuple[str, str]] = {
    "gaussian": ("#4477AA", "o"),
    "srht": ("#EE6677", "s"),
    "tensor_srht": ("#228833", "D"),
    "countsketch": ("#CCBB44", "^"),
    "tensorsketch": ("#AA3377", "v"),
}

#: phase of a step -> (pale colour, hatch); order: the order of a step.
PHASE_STYLES: dict[str, tuple[str, str]] = {
    "forward": ("#BBBBBB", ""),
    "gradient": ("#DDDDDD", "...."),
    "jacobian": ("#99DDFF", "////"),
    "gram": ("#77AADD", ""),
    "sketch": ("#EEDD88", "\\\\\\\\"),
    "nystrom": ("#FFAABB", "xxxx"),
    "factor": ("#EE8866", ""),
    "solve": ("#44BB99", "...."),
    "update": ("#FFFFFF", "----"),
}
_SPARE_PHASES = (("#BBCC33", "++++"), ("#AAAA00", "oooo"), ("#E0E0E0", "||||"))

#: Sequential colours for a quantity that grows (widths m in the NTK figure).
SEQUENTIAL_CMAP = "cividis"


def _pick(name: str, options: tuple):
    return options[zlib.crc32(name.encode()) % len(options)]


def method_style(algorithm: str) -> dict[str, str]:
    """``{'color', 'marker', 'linestyle'}`` of a method (an unknown one: hashed, stable)."""
    if algorithm in METHOD_STYLES:
        color, marker, ls = METHOD_STYLES[algorithm]
    else:
        color = _pick(algorithm, _SPARE_COLORS)
        marker = _pick(algorithm + "/m", _SPARE_MARKERS)
        ls = _pick(algorithm + "/l", _LINESTYLES)
    return {"color": color, "marker": marker, "linestyle": ls}


def method_color(algorithm: str) -> str:
    return method_style(algorithm)["color"]


def sketch_style(sketch: str) -> dict[str, str]:
    """``{'color', 'marker'}`` of a sketch type (an unknown one: hashed, stable)."""
    color, marker = SKETCH_STYLES.get(sketch) or (_pick(sketch, _SPARE_COLORS),
                                                  _pick(sketch + "/m", _SPARE_MARKERS))
    return {"color": color, "marker": marker}


def phase_style(phase: str) -> dict[str, str]:
    """``{'color', 'hatch'}`` of a phase of a step (``forward``, ``gram``, ...)."""
    color, hatch = PHASE_STYLES.get(phase) or _pick(phase, _SPARE_PHASES)
    return {"color": color, "hatch": hatch}


def phase_order(phase: str) -> tuple[int, str]:
    names = list(PHASE_STYLES)
    return (names.index(phase) if phase in names else len(names), phase)


def variant_linestyles() -> tuple[str, ...]:
    """Line styles that tell apart the variants of one method (same colour)."""
    return _LINESTYLES


def _label_text(s: object) -> str:
    """A name as matplotlib should print it: plain text, never mathtext. Outside ``$...$``
    only ``$`` starts mathtext, so escaping it is enough (``_`` and ``^`` print as they are)."""
    return re.sub(r"(?<!\\)\$", r"\\$", str(s))  # idempotent: an escaped $ stays as it is


def figsize(width: str = "page", rows: float = 1.0, extra_h: float = 0.0) -> tuple[float, float]:
    """(width, height) in inches: ``width`` is 'page' (6.8 in) or 'column' (3.3 in); the
    height is ``rows`` rows of panels plus ``extra_h`` inches (a legend below)."""
    w = PAGE_IN if width == "page" else COLUMN_IN
    return (w, PANEL_H_IN * rows + extra_h)
