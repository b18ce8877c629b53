"""Turning exceptions raised by user code into findings that point at the user's own line."""

from __future__ import annotations

import os
import sysconfig
import traceback
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
    subject: str | None = None,
) -> Finding:
    """A finding for user code that raised while the probe was ``doing`` something."""
    where = user_frame(exc)
    details: dict[str, Any] = {"exception": type(exc).__name__, "error": str(exc)[:2000]}
    if where:
        details["location"] = where
    location = f" at {where}" if where else ""
    return finding(
        code,
        f"{doing} raised {describe(exc)}{location}",
        hint,
        subject=subject or where,
        details=details,
        severity=severity,
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors."""
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"
