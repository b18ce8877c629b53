"""LR schedulers: what a scheduler is meant to count (batches or epochs), how often its
``step()`` actually runs, and which loop iteration a ``step()`` belongs to.

The intent is read from the constructor: the class (``OneCycleLR`` and the Hugging Face
``get_*_schedule`` helpers count optimizer steps) and the argument that sets the schedule's
length (``T_max=len(loader) * epochs`` counts steps, ``T_max=args.epochs`` counts epochs,
``StepLR(step_size=30)`` counts epochs). Anything that does not reveal its unit, such as a
bare ``T_max=100`` or a ``LambdaLR``, has no intent, and rules stay silent on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.brains import transformers as HF
from trainlint.analysis.argparse_defaults import resolve_number
from trainlint.analysis.engine import Engine
from trainlint.analysis.ir import Flag, OpKind, value_kind
from trainlint.analysis.training import frequency
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.brains import Kind
from trainlint.analysis.values import Evaluator, Instance, Obj, SeqV, call_arg
from trainlint.analysis.walk import iter_children

STEP = "step"
EPOCH = "epoch"

TORCH_SCHEDULERS = T.SCHEDULERS
HF_SCHEDULES = HF.SCHEDULE_PREFIXES
PLATEAU = "ReduceLROnPlateau"
# How project scheduler classes are named among library qualified names.
PROJECT = "<project>"
MAX_LIFT = 3
MAX_FOLLOW = 3

# Schedulers that are defined per batch whatever their arguments.
PER_STEP_CLASSES = frozenset({"OneCycleLR", "CyclicLR"})
# Hugging Face schedules that do not change the LR at all, so their frequency is moot.
CONSTANT_SCHEDULES = HF.CONSTANT_SCHEDULES
# The argument that sets a schedule's length, as (position, keyword) in the constructor.
LENGTH_ARGUMENTS: dict[str, tuple[int, str]] = {
    "CosineAnnealingLR": (1, "T_max"),
    "LinearLR": (3, "total_iters"),
    "ConstantLR": (2, "total_iters"),
    "PolynomialLR": (1, "total_iters"),
    "StepLR": (1, "step_size"),
    "MultiStepLR": (1, "milestones"),
    "ExponentialLR": (1, "gamma"),
    # A lambda counts what it is written in: ``LinearDecay(n_epochs, 0, decay_epoch).step``.
    "LambdaLR": (1, "lr_lambda"),
    "MultiplicativeLR": (1, "lr_lambda"),
}
# Numbers of epochs rarely exceed a few hundred; step counts rarely go below a thousand.
COUNTED_CLASSES = frozenset({"StepLR", "MultiStepLR"})
MAX_EPOCH_COUNT = 400
MIN_STEP_COUNT = 1000
# Per-epoch decays are coarse (0.9, 0.95); per-step ones are within a hair of 1.
MAX_EPOCH_GAMMA = 0.99
MIN_STEP_GAMMA = 0.999

_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
STEP_UNITS = frozenset({"steps", "iters", "iter", "iterations", "iteration", "batches", "updates", "niter", "niters"})
# ``max_step`` and ``total_step`` count steps; a bare ``step`` (``step_size``, ``lr_step``) does not.
STEP_QUALIFIERS = frozenset({"max", "total", "num", "n", "train", "training"})
EPOCH_UNITS = frozenset({"epoch", "epochs", "nepochs"})


@dataclass(frozen=True)
class Intent:
    """How often a scheduler is meant to be stepped, and the code that says so
    (``StepLR(step_size=30)``, ``OneCycleLR``)."""

    frequency: str
    evidence: str


@dataclass(frozen=True)
class Misstep:
    """A ``scheduler.step()`` that runs at the wrong frequency for the scheduler it steps."""

    call: cst.Call
    scheduler: Obj
    intent: Intent

    @property
    def label(self) -> str:
        return short_name(self.scheduler.qualname)

    @property
    def built_at(self) -> str:
        return self.scheduler.module.where(self.scheduler.call)


def short_name(qualname: str) -> str:
    return qualname.rsplit(".", 1)[-1]


def is_plateau(obj: Obj) -> bool:
    return obj.qualname == TORCH_SCHEDULERS + PLATEAU


def step_calls(module: ModuleModel) -> Iterator[cst.Call]:
    """``<something>.step(...)`` calls of a module."""
    for call in module.calls_by_name.get("step", []):
        if isinstance(call.func, cst.Attribute):
            yield call


def receiver(call: cst.Call) -> cst.BaseExpression:
    assert isinstance(call.func, cst.Attribute)
    return call.func.value


class Schedules:
    """Scheduler queries over one project's evaluator and engine."""

    def __init__(self, evaluator: Evaluator, engine: Engine) -> None:
        self.ev = evaluator
        self.engine = engine

    # -- which schedulers ---------------------------------------------------------------

    def schedulers(self, expr: cst.BaseExpression, module: ModuleModel) -> list[Obj]:
        """The LR schedulers ``expr`` may be, each with the call that built it; a project
        subclass of ``LRScheduler`` is named ``<project>.ClassName``."""
        found: list[Obj] = []
        for value in self.ev.eval(expr, module):
            if isinstance(value, Obj) and brains.is_scheduler(value.qualname):
                found.append(value)
            elif isinstance(value, Instance) and value.site is not None and value.where is not None:
                if value_kind(value, self.ev) is Kind.SCHEDULER:
                    found.append(Obj(f"{PROJECT}.{value.cls.node.name.value}", value.site, value.where))
        return found

    def optimizer_of(self, scheduler: Obj) -> cst.BaseExpression | None:
        """The optimizer argument of a scheduler's constructor."""
        position = 1 if short_name(scheduler.qualname) == "get_scheduler" else 0
        return call_arg(scheduler.call, position, "optimizer")

    # -- intent -------------------------------------------------------------------------

    def intent(self, scheduler: Obj, depth: int = 0) -> Intent | None:
        qualname = scheduler.qualname
        name = short_name(qualname)
        if qualname.startswith(HF_SCHEDULES):
            return self._hf_intent(scheduler)
        if qualname.startswith(PROJECT + "."):
            return self._project_intent(scheduler)
        if not qualname.startswith(TORCH_SCHEDULERS):
            return None
        if name in PER_STEP_CLASSES:
            return self._cycle_intent(scheduler, name)
        if name in ("SequentialLR", "ChainedScheduler"):
            return self._composite_intent(scheduler, depth) if depth < MAX_FOLLOW else None
        if name in LENGTH_ARGUMENTS:
            return self._length_intent(scheduler, name)
        return None

    def _project_intent(self, scheduler: Obj) -> Intent | None:
        """A project scheduler counts what its constructor's arguments count:
        ``WarmUpLR(optimizer, len(loader) * warm)`` is sized in batches."""
        call = scheduler.call
        arguments = [arg for arg in call.args if not arg.star and (arg.keyword is None or arg.keyword.value != "optimizer")]
        intents = [self.extent(arg.value, scheduler.module) for arg in arguments[1:] if arg.keyword is None] + [
            self.extent(arg.value, scheduler.module) for arg in arguments if arg.keyword is not None
        ]
        frequency = STEP if STEP in intents else EPOCH if EPOCH in intents else None
        if frequency is None:
            return None
        return Intent(frequency, f"{short_name(scheduler.qualname)}({_text(call, scheduler.module).split('(', 1)[-1]}")

    def _cycle_intent(self, scheduler: Obj, name: str) -> Intent:
        """``OneCycleLR`` counts whatever ``total_steps`` counts (``epochs=`` with
        ``steps_per_epoch=`` is steps); it is a per-step schedule unless its length is
        written in epochs."""
        total = call_arg(scheduler.call, 2, "total_steps") if name == "OneCycleLR" else None
        if total is not None and call_arg(scheduler.call, None, "steps_per_epoch") is None:
            if self.extent(total, scheduler.module) == EPOCH:
                return Intent(EPOCH, f"{name}(total_steps={_text(total, scheduler.module)})")
        return Intent(STEP, name)

    def _hf_intent(self, scheduler: Obj) -> Intent | None:
        """Every Hugging Face schedule is written in optimizer steps (warmup and training
        steps), except the constant one, whose frequency does not matter."""
        name = short_name(scheduler.qualname)
        if name == "get_scheduler":
            kind = call_arg(scheduler.call, 0, "name")
            if kind is not None and _string(kind) in CONSTANT_SCHEDULES:
                return None
        elif name in CONSTANT_SCHEDULES:
            return None
        length = call_arg(scheduler.call, None, "num_training_steps")
        detail = f"(num_training_steps={_text(length, scheduler.module)})" if length is not None else ""
        return Intent(STEP, f"{name}{detail}")

    def _length_intent(self, scheduler: Obj, name: str) -> Intent | None:
        position, keyword = LENGTH_ARGUMENTS[name]
        argument = call_arg(scheduler.call, position, keyword)
        if argument is None:
            return None
        module = scheduler.module
        frequency = self.extent(argument, module)
        if frequency is None and name in COUNTED_CLASSES:
            frequency = _by_count(self._numbers(argument, module))
        if frequency is None and name == "ExponentialLR":
            frequency = _by_gamma(resolve_number(argument, module, self.ev))
        if frequency is None:
            return None
        return Intent(frequency, f"{name}({keyword}={_text(argument, module)})")

    def _composite_intent(self, scheduler: Obj, depth: int) -> Intent | None:
        """A ``SequentialLR``/``ChainedScheduler`` counts what its children (and the
        ``SequentialLR`` milestones) agree on; any disagreement makes it unknown."""
        position = 1 if short_name(scheduler.qualname) == "SequentialLR" else 0
        children = call_arg(scheduler.call, position, "schedulers")
        if children is None:
            return None
        intents: list[Intent] = []
        for element in self._elements(children, scheduler.module):
            intent = self.combined([self.intent(obj, depth + 1) for obj in self.schedulers(element, scheduler.module)])
            if intent is not None:
                intents.append(intent)
        milestones = call_arg(scheduler.call, 2, "milestones")
        if position == 1 and milestones is not None:
            frequency = self.extent(milestones, scheduler.module)
            if frequency is not None:
                intents.append(Intent(frequency, f"milestones={_text(milestones, scheduler.module)}"))
        return self.combined(intents)

    @staticmethod
    def combined(intents: Sequence[Intent | None]) -> Intent | None:
        """The intent shared by every candidate that has one; ``None`` on disagreement."""
        known = [intent for intent in intents if intent is not None]
        if not known or len({intent.frequency for intent in known}) > 1:
            return None
        return known[0]

    def extent(self, expr: cst.BaseExpression, module: ModuleModel, depth: int = 0) -> str | None:
        """Whether an expression counts steps or epochs, by the names it is made of:
        ``len(loader) * epochs`` and ``args.max_train_steps`` count steps, ``args.epochs -
        args.warmup_epochs`` counts epochs. Step evidence wins: ``steps_per_epoch * epochs``
        is a number of steps. Local variables are followed to their definitions."""
        found: set[str | None] = set()
        for part in _parts(expr):
            if isinstance(part, str):
                found.add(_unit_of(part))
            elif isinstance(part, cst.Call):
                found.add(STEP)  # len(loader), len(dataset): a number of batches or samples
            elif depth < MAX_FOLLOW:
                found |= {self.extent(value, module, depth + 1) for value in self._definitions(part, module)}
        if STEP in found:
            return STEP
        return EPOCH if EPOCH in found else None

    def _definitions(self, name: cst.Name, module: ModuleModel) -> Iterator[cst.BaseExpression]:
        for binding in self.ev.reaching(name, module):
            if binding.kind == "assign" and binding.value is not None:
                yield binding.value

    def _elements(self, expr: cst.BaseExpression, module: ModuleModel) -> Iterator[cst.BaseExpression]:
        for value in self.ev.eval(expr, module):
            if isinstance(value, SeqV):
                yield from (element.value for element in value.node.elements)

    def _numbers(self, expr: cst.BaseExpression, module: ModuleModel) -> list[float | None]:
        """A step size or the milestones of a list, as numbers (``None`` where unknown)."""
        values = self.ev.eval(expr, module)
        sequences = [value for value in values if isinstance(value, SeqV)]
        if sequences:
            elements = [element.value for element in sequences[0].node.elements]
            return [resolve_number(element, sequences[0].module, self.ev) for element in elements]
        return [resolve_number(expr, module, self.ev)]

    # -- where it is stepped ------------------------------------------------------------

    # -- the shared check of TL301 / TL302 ------------------------------------------------

    def missteps(self, module: ModuleModel, stepped: str) -> Iterator[Misstep]:
        """Argument-less ``scheduler.step()`` calls that run once per ``stepped`` while every
        scheduler they may step that has an intent is meant for the other frequency.
        ``step(epoch)`` sets the position explicitly and is left alone."""
        for op in self.engine.ops_in(module, OpKind.SCHEDULER_STEP):
            call = op.node
            if op.has(Flag.HAS_ARGS) or op.target is None or not isinstance(call, cst.Call):
                continue
            candidates = self.schedulers(op.target, module)
            if not candidates or frequency(self.engine, op) != stepped:
                continue
            intents = [(obj, self.intent(obj)) for obj in candidates]
            if any(intent is not None and intent.frequency == stepped for _, intent in intents):
                continue
            for obj, intent in intents:
                if intent is not None:
                    yield Misstep(call, obj, intent)
                    break


# -- helpers ---------------------------------------------------------------------------------


def _parts(expr: cst.CSTNode) -> Iterator[str | cst.Name | cst.Call]:
    """What a length expression is made of: attribute names and subscript keys (as
    strings: ``args.epochs``, ``cfg["max_steps"]``), local names (as strings, and as nodes to
    follow), and ``len(...)`` calls. Receivers and called functions are not looked into:
    ``args`` and ``math.ceil`` say nothing about units."""
    if isinstance(expr, cst.Attribute):
        yield expr.attr.value
        if isinstance(expr.value, cst.Call):  # ``Decay(n_epochs, decay_epoch).step``
            yield from _parts(expr.value)
    elif isinstance(expr, cst.Subscript):
        index = expr.slice[0].slice if len(expr.slice) == 1 else None
        key = _string(index.value) if isinstance(index, cst.Index) else None
        if key is not None:
            yield key
    elif isinstance(expr, cst.Name):
        yield expr.value
        yield expr
    elif isinstance(expr, cst.Call):
        if dotted(expr.func) == "len":
            yield expr
        else:
            for arg in expr.args:
                yield from _parts(arg.value)  # not the keyword: ``f(epochs=3)`` says nothing
    elif isinstance(expr, cst.Lambda):
        # The lambda's own parameter is the scheduler's counter, whatever it is called.
        own = {param.name.value for param in expr.params.params}
        yield from (part for part in _parts(expr.body) if not (isinstance(part, (str, cst.Name)) and _name_of(part) in own))
    elif not isinstance(expr, cst.SimpleString):
        for child in iter_children(expr):
            yield from _parts(child)


def _name_of(part: str | cst.Name) -> str:
    return part if isinstance(part, str) else part.value


def _unit_of(identifier: str) -> str | None:
    """``STEP`` for ``max_steps``, ``num_training_steps``, ``steps_per_epoch``, ``maxIters``;
    ``EPOCH`` for ``epochs``, ``num_train_epochs``; ``None`` otherwise. ``lr_steps`` is the
    torchvision name of epoch milestones, so a unit right after ``lr`` does not count."""
    tokens = [token.lower() for token in _TOKEN.findall(identifier)]
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index else ""
        if previous == "lr":
            continue
        if token in STEP_UNITS or (token == "step" and previous in STEP_QUALIFIERS):
            return STEP
    return EPOCH if any(token in EPOCH_UNITS for token in tokens) else None


def _by_count(numbers: list[float | None]) -> str | None:
    if not numbers or any(number is None for number in numbers):
        return None
    known = [number for number in numbers if number is not None]
    if max(known) <= MAX_EPOCH_COUNT:
        return EPOCH
    return STEP if min(known) >= MIN_STEP_COUNT else None


def _by_gamma(gamma: float | None) -> str | None:
    if gamma is None or not 0 < gamma < 1:
        return None
    if gamma <= MAX_EPOCH_GAMMA:
        return EPOCH
    return STEP if gamma >= MIN_STEP_GAMMA else None


def _string(expr: cst.BaseExpression) -> str | None:
    return expr.evaluated_value if isinstance(expr, cst.SimpleString) and isinstance(expr.evaluated_value, str) else None


def _text(expr: cst.CSTNode, module: ModuleModel, limit: int = 48) -> str:
    text = " ".join(module.tree.code_for_node(expr).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
