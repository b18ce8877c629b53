"""Output formats, one module per format, each exposing ``NAME`` and ``render``.

``render(result, console)`` writes the report for a :class:`~trainlint.linter.LintResult`.
Formats are discovered from this package, so adding a module adds a ``--format`` choice.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType


@lru_cache(maxsize=1)
def formats() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        name = getattr(module, "NAME", None)
        if name:
            found[name] = module
    return dict(sorted(found.items()))
