"""The trainlint runtime probe: run a few training steps and report silent bugs.

Importing this package does not import torch: ``probe`` and ``ProbeReport`` load on first
use, so ``trainlint.probe.command`` stays cheap for the CLI and the static linter.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from trainlint.diagnostics import Finding

if TYPE_CHECKING:
    from trainlint.probe.api import probe
    from trainlint.probe.report import ProbeReport

__all__ = ["Finding", "ProbeReport", "probe"]


TORCH_MISSING = 'trainlint.probe needs PyTorch, which is not installed: pip install "trainlint[probe]"'


def _load(module: str, name: str) -> Any:
    """``module.name``, with an install hint when torch is missing (the linter never
    needs torch, so a plain ``pip install trainlint`` does not bring it)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "torch":
            raise ModuleNotFoundError(TORCH_MISSING, name="torch") from exc
        raise


def __getattr__(name: str) -> Any:
    if name == "probe":
        return _load("trainlint.probe.api", "probe")
    if name == "ProbeReport":
        return _load("trainlint.probe.report", "ProbeReport")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Makes ``trainlint.probe`` itself callable as ``probe(...)``.

    Importing this subpackage binds it as the attribute ``trainlint.probe`` on the parent
    package, which shadows a lazily exported ``probe`` function there; with this class
    ``from trainlint import probe; probe(model, loader)`` works either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _load("trainlint.probe.api", "probe")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
