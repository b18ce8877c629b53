"""trainlint: catch the PyTorch training bugs that fail silently.

``trainlint check`` is a static linter that never imports torch; ``trainlint.probe`` runs
checks on a real model and is imported only when used. ``check_paths`` and
``check_source`` are the linter's Python API (see ``trainlint.api``). Everything is loaded
on first use, so that ``import trainlint`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["TrainlintError", "__version__", "check_paths", "check_source", "probe"]

if TYPE_CHECKING:
    from trainlint.api import TrainlintError, check_paths, check_source
    from trainlint.probe import probe

_API = frozenset({"check_paths", "check_source", "TrainlintError"})


def __getattr__(name: str) -> Any:
    # Lazy so that linting never pays for (or requires) torch, and the CLI never pays for
    # the API's imports.
    if name == "probe":
        from trainlint.probe import probe

        return probe
    if name in _API:
        from trainlint import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainlint' has no attribute {name!r}")
