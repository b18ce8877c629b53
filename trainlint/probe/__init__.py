"""The trainlint runtime probe: run a few training steps and report silent bugs.

Importing this package does not import torch: ``probe`` and ``ProbeReport`` load on first
use, so ``trainlint.probe.command`` stays cheap for the CLI and the static linter.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from trainlint.diagnostics import Finding

if TYPE_CHECKING:
    from trainlint.probe.api import probe
    from trainlint.probe.report import ProbeReport

__all__ = ["Finding", "ProbeReport", "probe"]


def __getattr__(name: str) -> Any:
    if name == "probe":
        from trainlint.probe.api import probe

        return probe
    if name == "ProbeReport":
        from trainlint.probe.report import ProbeReport

        return ProbeReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Makes ``trainlint.probe`` itself callable as ``probe(...)``.

    Importing this subpackage binds it as the attribute ``trainlint.probe`` on the parent
    package, which shadows a lazily exported ``probe`` function there; with this class
    ``from trainlint import probe; probe(model, loader)`` works either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from trainlint.probe.api import probe

        return probe(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
