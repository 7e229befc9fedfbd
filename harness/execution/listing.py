"""``nlt-list``: every registered algorithm, dataset, model and sketch, with hyperparameters,
defaults and paper references.

    nlt-list                 # everything
    nlt-list algorithms      # one registry
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap

from algorithms.base import ALGORITHMS
from harness.common.errors import guarded, unknown
from harness.model import MODELS
from harness.model.data import DATASETS
from harness.sketches import SKETCHES

PROG = "nlt-list"


def _params(params_cls: type) -> list[str]:
    return [f"{f.name}={f.default!r}" for f in dataclasses.fields(params_cls)
            if f.name not in ("name", "n", "d")]


def _entry(name: str, summary: str, params: list[str], refs: tuple[str, ...] | str) -> str:
    lines = [f"  {name}: {summary}"]
    if params:
        lines.append(textwrap.fill("params: " + ", ".join(params), 96,
                                   initial_indent="      ", subsequent_indent="        "))
    for ref in (refs,) if isinstance(refs, str) else refs:
        if ref:
            lines.append(textwrap.fill("ref: " + ref, 96, initial_indent="      ",
                                       subsequent_indent="        "))
    return "\n".join(lines)


def list_algorithms() -> str:
    out = []
    for name in ALGORITHMS.names():
        cls = ALGORITHMS.get(name)
        out.append(_entry(f"{name} [{cls.family}]", cls.summary(), _params(cls.Params),
                          cls.references))
    return "algorithms (algorithm=<name>, parameters as algorithm.<param>=value):\n" + \
        "\n".join(out)


def _first_line(cls: type) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def list_datasets() -> str:
    out = [_entry(n, DATASETS.get(n).description, _params(DATASETS.get(n).Params),
                  DATASETS.get(n).references) for n in DATASETS.names()]
    return "datasets (data=<name>, data.n=..., data.d=...):\n" + "\n".join(out)


def list_models() -> str:
    out = []
    for name in MODELS.names():
        cls = MODELS.get(name)
        tags = ", ".join(sorted(cls.features)) or "none"
        out.append(_entry(f"{name} [structure: {tags}]", _first_line(cls), [], ()))
    return ("models (model=<name>, model.m=<width>, model.depth=<layers>; methods that need a "
            "structure a model lacks are skipped with the reason):\n" + "\n".join(out))


def list_sketches() -> str:
    out = [_entry(n, _first_line(SKETCHES.get(n)), [], SKETCHES.get(n).references)
           for n in SKETCHES.names()]
    return "sketches (algorithm.sketch=<name> for gn_sketch):\n" + "\n".join(out)


SECTIONS = {"algorithms": list_algorithms, "datasets": list_datasets, "models": list_models,
            "sketches": list_sketches}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"any of {list(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)

    def show():
        for section in args.sections or list(SECTIONS):
            if section not in SECTIONS:
                raise unknown("section", section, SECTIONS)
        print("\n\n".join(SECTIONS[s]() for s in args.sections or SECTIONS))

    guarded(PROG, show)


if __name__ == "__main__":
    main()
