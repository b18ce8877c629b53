"""Turning exceptions raised by user code into findings that point at the user's own line."""

from __future__ import annotations

import contextlib
import os
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from trainlint.diagnostics import Finding, Severity
from trainlint.probe.codes import finding

_TRAINLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_dirs() -> tuple[str, ...]:
    """Directories whose frames are never "user code": trainlint, torch and the stdlib."""
    dirs = [_TRAINLINT_DIR, sysconfig.get_paths()["stdlib"]]
    try:
        import torch

        dirs.append(os.path.dirname(os.path.abspath(torch.__file__)))
    except ImportError:  # the CLI may format a factory error before torch is importable
        pass
    return tuple(os.path.join(d, "") for d in dirs)


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost traceback frame that belongs to user code.

    Falls back to the innermost frame when every frame is library code, so the finding
    still says where it broke.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    libraries = _library_dirs()
    for frame in reversed(frames):
        if not os.path.abspath(frame.filename).startswith(libraries):
            return f"{frame.filename}:{frame.lineno}"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def describe(exc: BaseException) -> str:
    """``TypeError: message`` on one line (the first line of long CUDA messages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def raised(
    code: str,
    doing: str,
    exc: BaseException,
    hint: str,
    severity: Severity | None = None,
    module: str | None = None,
) -> Finding:
    """A finding for user code that raised while the probe was ``doing`` something.

    The subject is the module that was running when it raised, else the user's line.
    """
    where = user_frame(exc)
    details: dict[str, Any] = {"exception": type(exc).__name__, "error": str(exc)[:2000]}
    if where:
        details["location"] = where
    if module:
        details["module"] = module
    location = f" at {where}" if where else ""
    inside = f" in `{module}`" if module else ""
    return finding(
        code,
        f"{doing} raised {describe(exc)}{inside}{location}",
        hint,
        subject=module or where,
        details=details,
        severity=severity,
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors."""
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


class ModuleStack:
    """Which modules are mid-forward, so an exception can name the module that raised.

    Library-only tracebacks (an ``nn.Sequential`` of stock layers) have no user frame;
    the innermost module that started but did not finish is then the best subject.
    """

    def __init__(self) -> None:
        self._stack: list[str] = []

    @contextlib.contextmanager
    def watching(self, model: Any) -> Iterator[None]:
        handles = []
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(self._enter(name)))
            handles.append(module.register_forward_hook(self._leave))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            if not name:
                self._stack.clear()  # a new top-level forward: forget any aborted one
            self._stack.append(name)

        return hook

    def _leave(self, module: Any, args: Any, output: Any) -> None:
        if self._stack:
            self._stack.pop()

    def current(self) -> str | None:
        """The module running now (``""`` for the root), None outside every forward."""
        return self._stack[-1] if self._stack else None

    def pop_culprit(self) -> str | None:
        """The innermost unfinished non-root module (and forget the aborted forward)."""
        culprit = next((name for name in reversed(self._stack) if name), None)
        self._stack.clear()
        return culprit
