"""The rule interface and the registry that discovers rules through entry points.

Built-in rules are found exactly like third-party ones: the ``trainlint.rules``
entry-point group names a module or package; every :class:`Rule` subclass defined in it
(or in its submodules) with a ``code`` is registered.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

import libcst as cst

from trainlint.diagnostics import Severity
from trainlint.fixing import Fix, FixSafety

if TYPE_CHECKING:
    from trainlint.analysis.engine import Engine
    from trainlint.analysis.module import ModuleModel
    from trainlint.analysis.project import Project
    from trainlint.analysis.values import Evaluator

ENTRY_POINT_GROUP = "trainlint.rules"
BUILTIN_RULES = "trainlint.rules"


@dataclass(frozen=True)
class Report:
    """What a rule yields: a node of the file being checked, optionally overriding the
    rule's default message, hint or severity."""

    node: cst.CSTNode
    message: str | None = None
    hint: str | None = None
    severity: Severity | None = None


@dataclass
class Context:
    """Everything a rule may look at for one file."""

    path: Path
    display_path: str
    source: str
    model: ModuleModel
    project: Project
    evaluator: Evaluator
    engine: Engine


class Rule:
    """Base class of every rule. Subclasses set the class attributes and implement check;
    a rule with an autofix also sets ``fix_safety`` and implements ``fix``."""

    code: ClassVar[str] = ""
    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.ERROR
    summary: ClassVar[str] = ""  # one line for `trainlint rules`
    message: ClassVar[str] = ""  # default message of a report
    hint: ClassVar[str] = ""  # default "what to do"
    # Cheap text prefilter: the rule runs only on files containing one of these strings.
    triggers: ClassVar[tuple[str, ...]] = ()
    # The safety of the rule's autofix, or None when it has none. One finding's fix may be
    # less safe than this (``Fix.safety``), never safer.
    fix_safety: ClassVar[FixSafety | None] = None
    # Off unless a selector names it (``select``/``extend-select``), like ruff's RUF100.
    opt_in: ClassVar[bool] = False

    def check(self, ctx: Context) -> Iterator[Report]:
        raise NotImplementedError

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        """The fix of the finding reported at ``node`` (called only when ``fix_safety`` is
        set); ``None`` when the right rewrite is not evident: the finding stays, unfixed."""
        return None

    @classmethod
    def applies_to(cls, source: str) -> bool:
        return not cls.triggers or any(trigger in source for trigger in cls.triggers)


@lru_cache(maxsize=1)
def all_rules() -> tuple[type[Rule], ...]:
    """Every registered rule class, sorted by code."""
    found: dict[str, type[Rule]] = {}
    for target in _entry_point_targets():
        for rule in _rules_in(target):
            other = found.get(rule.code)
            if other is not None and other is not rule:
                raise RuntimeError(f"rule code {rule.code} is defined twice ({other.__module__}, {rule.__module__})")
            found[rule.code] = rule
    return tuple(sorted(found.values(), key=lambda r: r.code))


def rule_by_code(code: str) -> type[Rule] | None:
    wanted = code.strip()
    for rule in all_rules():
        if wanted.upper() == rule.code or wanted == rule.name:
            return rule
    return None


def _entry_point_targets() -> Iterator[object]:
    seen: set[str] = set()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        seen.add(entry.value)
        yield entry.load()
    # Running from a source checkout that was never installed has no entry-point metadata;
    # the built-in package is then loaded by the same name the entry point would use.
    if BUILTIN_RULES not in seen:
        yield importlib.import_module(BUILTIN_RULES)


def _rules_in(target: object) -> Iterator[type[Rule]]:
    if isinstance(target, type) and issubclass(target, Rule):
        yield target
        return
    if not isinstance(target, ModuleType):
        return
    modules = [target]
    if hasattr(target, "__path__"):
        modules += [
            importlib.import_module(f"{target.__name__}.{info.name}")
            for info in pkgutil.iter_modules(target.__path__)
            if not info.name.startswith("_")
        ]
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Rule)
                and value.code
                and value.__module__ == module.__name__
            ):
                yield value
