"""libcst parsing without the per-node validation a linter does not need.

Every libcst node validates itself when constructed (``CSTNode.__post_init__``), so the
parser pays for checks its own output passes by construction: on real code that is a sixth
to a quarter of ``parse_module``. libcst's source says as much next to the hook. Trees
built later by the autofixes are validated as usual: the hook is only bypassed while the
parser runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libcst as cst
from libcst._nodes.base import CSTNode


def parse_module(source: str | bytes) -> cst.Module:
    with _validation_skipped():
        return cst.parse_module(source)


def _skip(self: CSTNode) -> None:
    """Stands in for ``CSTNode.__post_init__`` while the parser builds a tree."""


@contextmanager
def _validation_skipped() -> Iterator[None]:
    original = CSTNode.__dict__.get("__post_init__")
    if original is None:  # a libcst without the hook: nothing to skip
        yield
        return
    CSTNode.__post_init__ = _skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        CSTNode.__post_init__ = original  # type: ignore[method-assign]
