"""Training state: what the engine knows at a program point, joined where paths merge.

Like mypy's binder frames, a :class:`State` maps each object to the set of values it may
have (its gradients, its train/eval mode...). Paths are never enumerated: where branches
merge, states are joined by taking the union of each object's possible values. A state
also carries the conditions known to hold on its path (``if scaler is not None:`` tested
twice means the same thing both times), so states under different known conditions are
kept apart instead of joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from trainlint.analysis.ir import Op
from trainlint.analysis.keys import Key


class Grad(NamedTuple):
    """The gradients an optimizer would apply: what is in ``.grad`` of its parameters."""

    # Holds gradients a step already applied (no clear since): the loop whose iteration ran
    # that step (``0`` outside loops), ``None`` when nothing applied is left.
    applied: int | None = None
    pending: bool = False  # a backward ran since the last step or clear
    wiped: Op | None = None  # the clear that emptied pending gradients (no backward since)
    scaled: Op | None = None  # pending gradients come from this scaled backward, not unscaled yet
    plain: Op | None = None  # pending gradients come from this unscaled backward
    stepped: Op | None = None  # the step that applied the gradients (no backward or clear since)


class ModeV(NamedTuple):
    """A module's train/eval mode; ``origin`` is the switch that set it (``None``: how it was
    built), ``certain`` is False when the switch may have been on another object."""

    mode: str  # "train" | "eval" | "unknown"
    origin: Op | None = None
    certain: bool = True
    trained: bool = False  # a backward ran since the mode was set


class Total(NamedTuple):
    """What a variable holds, for running totals and carried state."""

    graph: bool  # a tensor attached to an autograd graph (a loss, an RNN output)
    carried: bool = False  # from an earlier iteration of the innermost loop
    origin: Op | None = None
    stepped: bool = False  # an optimizer step ran since it was last assigned


@dataclass(frozen=True)
class Iteration:
    """One level of the loop stack: which ops the current iteration ran, on some path
    (``may``) and on every path (``must``)."""

    loop: int  # id of the loop node
    first: bool
    may: frozenset[Op] = frozenset()
    must: frozenset[Op] = frozenset()


GRAD_ON = frozenset({"on"})
NOT_FROZEN = frozenset({False})
# A condition known on a path: (its text, its value, the loop depth where it was tested).
Fact = tuple[str, bool, int]
# Distinct sets of known conditions kept apart at one point; more are merged.
MAX_PARTITIONS = 8
# Known conditions one state carries at most.
MAX_FACTS = 4
MAX_DEPTH_FORGOTTEN = 8



@dataclass(frozen=True, eq=False)
class State:
    grads: Mapping[Key, frozenset[Grad]]
    # The gradients of optimizers not met yet on this path: every backward and every clear
    # that may concern them applies here too, and an optimizer starts from these values.
    grads_default: frozenset[Grad]
    modes: Mapping[Key, frozenset[ModeV]]
    totals: Mapping[str, frozenset[Total]]
    grad: frozenset[str] = GRAD_ON  # "on" / "off"
    autocast: frozenset[str | None] = frozenset({None})  # "float16" / "other" / "unknown" / None: off
    gated: bool = False  # inside accelerate's accumulate(): steps and clears run on some micro-batches
    group: frozenset[Op] = frozenset()  # first backward of the group feeding the next step
    group_open: bool = False
    # (scheduler step, its optimizer, loop): a scheduler stepped before its optimizer in the
    # current iteration of that loop.
    schedules: frozenset[tuple[Op, Key | None, int]] = frozenset()
    stepped: frozenset[tuple[Key, int]] = frozenset()  # (optimizer, loop): stepped in the current iteration
    loops: tuple[Iteration, ...] = ()
    facts: frozenset[Fact] = frozenset()
    # Modules whose parameters may be frozen (``requires_grad_(False)``) or not.
    frozen: Mapping[Key, frozenset[bool]] = field(default_factory=dict)
    # One-shot iterators bound to variables: per path, the op that first consumed it
    # (``None``: not consumed yet).
    iterators: Mapping[str, frozenset[Op | None]] = field(default_factory=dict)

    def identity(self) -> tuple[object, ...]:
        """Equality of states (for fixpoints and de-duplication)."""
        cached = self.__dict__.get("_identity")
        if cached is None:
            cached = (
                _frozen(self.grads), self.grads_default, _frozen(self.modes), _frozen(self.totals), self.grad, self.autocast,
                self.gated, self.group, self.group_open, self.schedules, self.stepped, self.loops, self.facts,
                _frozen(self.frozen), _frozen(self.iterators),
            )
            object.__setattr__(self, "_identity", cached)
        return cached

    def partition(self) -> tuple[object, ...]:
        """States are joined only within a partition: same known conditions, same loops."""
        return (self.facts, tuple((it.loop, it.first) for it in self.loops), self.gated)

    def with_(self, **changes: object) -> State:
        return replace(self, **changes)  # type: ignore[arg-type]

    def grad_of(self, key: Key) -> frozenset[Grad]:
        return self.grads.get(key, self.grads_default)

    def visit(self, op: Op) -> State:
        if not self.loops:
            return self
        loops = tuple(Iteration(it.loop, it.first, it.may | {op}, it.must | {op}) for it in self.loops)
        return self.with_(loops=loops)


def _frozen(table: Mapping[Any, frozenset[Any]]) -> frozenset[Any]:
    return frozenset(table.items())


ModeInitial = Callable[[Key], frozenset[ModeV]]


def initial_state() -> State:
    return State(grads={}, grads_default=frozenset({Grad()}), modes={}, totals={})


def join(states: Iterable[State], mode_initial: ModeInitial) -> list[State]:
    """Merge states of the same partition (union of every object's values). Past
    :data:`MAX_PARTITIONS`, known conditions are forgotten, those of outer loops first:
    the conditions of the loop being run are the ones that keep its paths apart."""
    states = list(states)
    groups = _partitions(states)
    depth = 0
    while len(groups) > MAX_PARTITIONS:
        states = [s.with_(facts=frozenset(f for f in s.facts if f[2] > depth)) if s.facts else s for s in states]
        groups = _partitions(states)
        depth += 1
        if depth > MAX_DEPTH_FORGOTTEN:
            states = [s.with_(facts=frozenset()) for s in states]
            groups = _partitions(states)
    return [_join_group(group, mode_initial) for group in groups.values()]


def _partitions(states: list[State]) -> dict[tuple[object, ...], list[State]]:
    groups: dict[tuple[object, ...], list[State]] = {}
    for state in states:
        groups.setdefault(state.partition(), []).append(state)
    return groups


def _join_group(group: list[State], mode_initial: ModeInitial) -> State:
    unique: dict[tuple[object, ...], State] = {}
    for state in group:
        unique.setdefault(state.identity(), state)
    if len(unique) == 1:
        return next(iter(unique.values()))
    states = list(unique.values())
    first = states[0]
    return State(
        grads=_union([s.grads for s in states], [s.grads_default for s in states]),
        grads_default=frozenset().union(*(s.grads_default for s in states)),
        modes=_union([s.modes for s in states], [mode_initial] * len(states)),
        totals=_union([s.totals for s in states], [frozenset()] * len(states)),
        grad=frozenset().union(*(s.grad for s in states)),
        autocast=frozenset().union(*(s.autocast for s in states)),
        gated=first.gated,
        group=frozenset().union(*(s.group for s in states)),
        group_open=any(s.group_open for s in states),
        schedules=frozenset().union(*(s.schedules for s in states)),
        stepped=frozenset().union(*(s.stepped for s in states)),
        loops=tuple(_join_iterations([s.loops[level] for s in states]) for level in range(len(first.loops))),
        facts=first.facts,
        frozen=_union([s.frozen for s in states], [NOT_FROZEN] * len(states)),
        iterators=_union([s.iterators for s in states], [frozenset()] * len(states)),
    )


def _union(tables: list[Mapping[Any, frozenset[Any]]], defaults: list[Any]) -> dict[Any, frozenset[Any]]:
    """Per key, the union of the values; a state that has not met a key yet contributes
    its default for it (a frozenset, or a function of the key)."""
    keys = {key for table in tables for key in table}
    merged: dict[Any, frozenset[Any]] = {}
    for key in keys:
        values: frozenset[Any] = frozenset()
        for table, default in zip(tables, defaults):
            found = table.get(key)
            if found is None:
                found = default(key) if callable(default) else default
            values = values | found
        merged[key] = values
    return merged


def _join_iterations(levels: list[Iteration]) -> Iteration:
    first = levels[0]
    must = first.must
    for level in levels[1:]:
        must &= level.must
    return Iteration(first.loop, first.first, frozenset().union(*(l.may for l in levels)), must)
