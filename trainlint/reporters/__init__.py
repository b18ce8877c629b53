"""Output formats, one module per format, each exposing ``NAME`` and ``render``.

``render(result, stream, options)`` writes the report for a
:class:`~trainlint.linter.LintResult`. Formats are discovered from this package, so adding a
module adds a ``--format`` choice. Modules import what they need to render (rich, the
rule registry) inside ``render``: the CLI imports every format to list them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType

from trainlint.diagnostics import Diagnostic
from trainlint.sources import Source


@dataclass(frozen=True)
class ReportOptions:
    """``unsafe_fixes``: unsafe fixes count as applicable (``[*]``); ``width``: wrap text
    at this many columns (``None``: never); ``sources``: the text of files that are not on
    disk, by display path (standard input)."""

    unsafe_fixes: bool = False
    width: int | None = None
    sources: Mapping[str, Source] = field(default_factory=dict)

    def applicable(self, diagnostic: Diagnostic) -> bool:
        """Whether ``--fix`` (with the options of this run) would fix the finding."""
        return diagnostic.fix == "safe" or (self.unsafe_fixes and diagnostic.fix is not None)


@lru_cache(maxsize=1)
def formats() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        name = getattr(module, "NAME", None)
        if name:
            found[name] = module
    return dict(sorted(found.items()))
