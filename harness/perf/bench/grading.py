"""The issue's targets as data: ``targets.yaml`` beside this module lists, for each target,
the section it grades, a label, where its figure lies in the section's result, the limit and
which side of it is good. A target is data so that changing a limit or adding a figure is a
one-line edit that cannot break the measurement code, and so that the list a report is graded
against is one file a reader can check. ``load_targets`` validates the file completely before
anything is measured (a bad entry is one ConfigError naming it and its key); ``grade`` turns a
report into the ``targets`` rows of the JSON and the table.

Paths are dotted keys into the section's result (``gram_vs_plain.gn_gram_over_plain``); a
template is text with ``{path}`` fields (``n={gram_vs_plain.n}``). Entry keys:

* ``section``, ``label`` (template), ``value`` (path), ``limit`` (number), ``better``
  (``lower`` or ``higher``): required. A figure that is absent is shown as ``-``, ungraded;
* ``note``: a template, or a list of them of which the first whose fields are all present and
  that is not empty is used (a missing field in a label is shown as ``-``);
* ``note_when``: a path; the note is given only when the value there is true;
* ``missed_when``: a path; when the figure is absent but this value is present, the target
  is missed rather than ungraded (the crossover that no size tried reached).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.common.errors import ConfigError

#: The shipped targets (package data, next to this module).
TARGETS_FILE = Path(__file__).with_name("targets.yaml")

REQUIRED = ("section", "label", "value", "limit", "better")
OPTIONAL = ("note", "note_when", "missed_when")
BETTER = ("higher", "lower")

#: The note of every row in quick mode: the targets are stated at the full sizes, and no
#: verdict about them can come from toy ones.
QUICK_NOTE = "not graded: --quick runs toy sizes, the target is stated at the full ones"

_FIELD = re.compile(r"\{([^{}]*)\}")
_MISSING = object()


class _Unfilled(Exception):
    """A template field whose path is absent from the result."""


def lookup(result: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested dicts, or ``_MISSING``."""
    node = result
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def fill(template: str, result: Any, missing: str | None = None) -> str:
    """``template`` with each ``{path}`` replaced by ``str`` of its value; an absent path is
    ``missing``, or raises ``_Unfilled`` where ``missing`` is None."""
    def value(match: re.Match) -> str:
        found = lookup(result, match.group(1))
        if found is _MISSING:
            if missing is None:
                raise _Unfilled(match.group(1))
            return missing
        return str(found)

    return _FIELD.sub(value, template)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Target:
    """One entry of targets.yaml, validated."""

    section: str
    label: str
    value: str
    limit: float
    lower_is_better: bool
    notes: tuple[str, ...] = ()
    note_when: str | None = None
    missed_when: str | None = None

    def grade(self, result: dict[str, Any]) -> dict[str, Any]:
        """The row of this target for one section's result: label, figure, limit, met
        (None where the figure is absent) and note."""
        value = lookup(result, self.value)
        value = None if value is _MISSING else value
        met = None
        if _is_number(value):
            met = value <= self.limit if self.lower_is_better else value >= self.limit
        elif value is None and self.missed_when is not None:
            if lookup(result, self.missed_when) not in (_MISSING, None):
                met = False
        note = ""
        if self.note_when is None or lookup(result, self.note_when) not in (_MISSING, None,
                                                                             False):
            for template in self.notes:
                try:
                    note = fill(template, result)
                except _Unfilled:
                    continue
                if note:
                    break
        return {"target": fill(self.label, result, missing="-"), "value": value,
                "limit": self.limit, "met": met, "note": note}


def grade(report: dict[str, Any], specs: Iterable[Target]) -> list[dict[str, Any]]:
    """The rows of every target whose section ran, in the file's order. ``--quick`` reports
    (``meta.quick``) show the figures but grade none (met None, ``QUICK_NOTE``)."""
    rows = [spec.grade(report[spec.section]) for spec in specs if spec.section in report]
    if report.get("meta", {}).get("quick"):
        for row in rows:
            row.update(met=None, note=QUICK_NOTE)
    return rows


# --- loading -------------------------------------------------------------------------------


def load_targets(sections: Iterable[str], path: Path | str = TARGETS_FILE) -> list[Target]:
    """The validated entries of ``path``; ``sections`` are the section names an entry may
    grade. Raises ConfigError (one line, naming the file, the entry and the key)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the targets file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or set(data) != {"targets"} \
            or not isinstance(data["targets"], list):
        raise ConfigError(f"{path}: expected one key 'targets' holding a list of entries, "
                          f"got {_short(data)}")
    sections = tuple(sections)
    return [_entry(path, i, raw, sections) for i, raw in enumerate(data["targets"], 1)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _entry(path: Path, index: int, raw: Any, sections: tuple[str, ...]) -> Target:
    where = f"{path}: targets entry {index}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {list(REQUIRED)} (optional "
                          f"{list(OPTIONAL)}), got {_short(raw)}")
    if isinstance(raw.get("label"), str):
        where += f" ({raw['label']!r})"

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: key {key!r}: {why}")

    for key in raw:
        if key not in REQUIRED + OPTIONAL:
            raise bad(key, f"unknown key. Allowed: {list(REQUIRED + OPTIONAL)}")
    for key in REQUIRED:
        if key not in raw:
            raise bad(key, f"missing (required: {list(REQUIRED)})")
    if raw["section"] not in sections:
        raise bad("section", f"unknown section {raw['section']!r}. Available: {list(sections)}")
    if raw["better"] not in BETTER:
        raise bad("better", f"{raw['better']!r} is neither of {list(BETTER)}")
    if not _is_number(raw["limit"]):
        raise bad("limit", f"{raw['limit']!r} is not a number")
    for key in ("value", "note_when", "missed_when"):
        if key in raw:
            _check_path(raw[key], lambda why, key=key: bad(key, why))
    _check_template(raw["label"], lambda why: bad("label", why))
    notes = raw.get("note", ())
    notes = (notes,) if isinstance(notes, str) else notes
    if not isinstance(notes, list | tuple) or not notes and "note" in raw:
        raise bad("note", f"{raw['note']!r} is neither a template nor a list of templates")
    for note in notes:
        _check_template(note, lambda why: bad("note", why))
    return Target(section=raw["section"], label=raw["label"], value=raw["value"],
                  limit=raw["limit"], lower_is_better=raw["better"] == "lower",
                  notes=tuple(notes), note_when=raw.get("note_when"),
                  missed_when=raw.get("missed_when"))


def _check_path(path: Any, bad) -> None:
    if not isinstance(path, str) or not path or any(
            not part or part != part.strip() or set(part) & set("{}") for part in
            path.split(".")):
        raise bad(f"{path!r} is not a dotted path of keys (like 'gram_vs_plain.n')")


def _check_template(template: Any, bad) -> None:
    if not isinstance(template, str):
        raise bad(f"{template!r} is not a text template")
    for field in _FIELD.findall(template):
        _check_path(field, lambda why, field=field: bad(f"field {{{field}}}: {why}"))
    if set(_FIELD.sub("", template)) & set("{}"):
        raise bad(f"{template!r} has an unmatched brace (fields are {{path}})")
