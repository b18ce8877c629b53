"""Running deeply recursive work on a stack big enough for it.

Trees are walked recursively (by the index, the analyses and libcst itself), so valid code
nested a few thousand levels deep (an ``if`` with a thousand ``elif`` branches) exceeds
Python's default recursion limit of 1,000, and raising the limit alone would overflow the
8 MiB C stack of the main thread: a segfault. The parser's pre-scan bounds how deep a tree
can be; this runs the work in a thread whose stack fits that bound, with the recursion
limit raised to match while it runs.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Virtual memory, reserved but touched only as deep as the recursion goes.
STACK_SIZE = 512 * 1024 * 1024
# Frames that fit in STACK_SIZE with room to spare (a frame that recurses through C code
# takes at most a few KiB of C stack).
RECURSION_LIMIT = 60_000


_lock = threading.Lock()
_running = 0  # deep threads now running; the last one to finish restores the limit
_previous_limit = 0


def run_deep(function: Callable[[], T]) -> T:
    """``function()``, on a thread with a deep stack; its exception, if any, is raised here.
    Where no such thread can be started (a tight address-space limit), it runs here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="trainlint-deep", daemon=True)
    _raise_limit()
    try:
        with _lock:
            previous_size = threading.stack_size(STACK_SIZE)
            try:
                thread.start()
            finally:
                threading.stack_size(previous_size)
    except (RuntimeError, ValueError, MemoryError):
        _restore_limit()
        return function()
    try:
        thread.join()
    finally:
        _restore_limit()
    if failure:
        raise failure[0]
    return outcome[0]


def _raise_limit() -> None:
    global _running, _previous_limit
    with _lock:
        if _running == 0:
            _previous_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_previous_limit, RECURSION_LIMIT))
        _running += 1


def _restore_limit() -> None:
    global _running
    with _lock:
        _running -= 1
        if _running == 0:
            sys.setrecursionlimit(_previous_limit)
