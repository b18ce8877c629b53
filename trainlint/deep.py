"""Running deeply recursive work on a stack big enough for it.

Trees are walked recursively (by the index, the analyses and libcst itself), so valid code
nested a few thousand levels deep (an ``if`` with a thousand ``elif`` branches) exceeds
Python's default recursion limit of 1,000, and raising the limit alone would overflow the
8 MiB C stack of the main thread: a segfault. The parser's pre-scan bounds how deep a tree
can be; this runs the work on a thread whose stack fits that bound, with the recursion
limit raised to match while it runs.

One such thread per process serves every call: a thread per call would also work, but
each new thread can get a malloc arena of its own, and memory spread over many arenas is
not reused (a third more peak memory on a large run).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Virtual memory, reserved but touched only as deep as the recursion goes.
STACK_SIZE = 512 * 1024 * 1024
# Frames that fit in STACK_SIZE with room to spare (a frame that recurses through C code
# takes at most a few KiB of C stack).
RECURSION_LIMIT = 60_000

_Task = tuple[Callable[[], Any], list[Any], threading.Event]

_lock = threading.Lock()
_tasks: queue.SimpleQueue[_Task] | None = None
_owner = 0  # the process that started the thread: a forked child must start its own
_running = 0  # calls in flight; the last one to finish restores the recursion limit
_previous_limit = 0


def run_deep(function: Callable[[], T]) -> T:
    """``function()``, on the deep-stack thread; its exception, if any, is raised here.
    Where no such thread can be started (a tight address-space limit), it runs here."""
    tasks = _deep_thread()
    if tasks is None:
        return function()
    outcome: list[Any] = []
    done = threading.Event()
    _raise_limit()
    try:
        tasks.put((function, outcome, done))
        done.wait()
    finally:
        _restore_limit()
    kind, value = outcome
    if kind == "error":
        raise value
    result: T = value
    return result


def _deep_thread() -> queue.SimpleQueue[_Task] | None:
    global _tasks, _owner
    with _lock:
        if _tasks is None or _owner != os.getpid():
            tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
            thread = threading.Thread(target=_serve, args=(tasks,), name="trainlint-deep", daemon=True)
            previous_size = threading.stack_size(STACK_SIZE)
            try:
                thread.start()
            except RuntimeError:
                return None
            finally:
                threading.stack_size(previous_size)
            _tasks, _owner = tasks, os.getpid()
        return _tasks


def _serve(tasks: queue.SimpleQueue[_Task]) -> None:
    while True:
        function, outcome, done = tasks.get()
        try:
            outcome.extend(("value", function()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.extend(("error", exc))
        done.set()
        del function, outcome, done  # keep nothing of this task while waiting for the next


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
