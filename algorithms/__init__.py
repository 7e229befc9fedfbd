"""Algorithm plugins: one file per method, registered by name (see ``algorithms.base``).

Importing this package imports every module in it, and each module registers its method with
``@register``; adding a method is adding a file here and its YAML under ``conf/algorithm/``.
Third-party packages add their own through the entry-point group ``nlt.algorithms``.
"""

import importlib
import pkgutil

from algorithms.base import ALGORITHMS, Algorithm, Shape, StepInfo, register

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base" and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["ALGORITHMS", "Algorithm", "Shape", "StepInfo", "register"]
