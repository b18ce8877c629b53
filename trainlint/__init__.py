"""trainlint: catch the PyTorch training bugs that fail silently.

``trainlint check`` is a static linter that never imports torch; ``trainlint.probe`` runs
checks on a real model and is imported only when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "probe"]


def __getattr__(name: str) -> Any:
    # Lazy so that linting never pays for (or requires) torch.
    if name == "probe":
        from trainlint.probe import probe

        return probe
    raise AttributeError(f"module 'trainlint' has no attribute {name!r}")
