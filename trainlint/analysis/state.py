"""Training state: what the engine knows at a program point, joined where paths merge.

Like mypy's binder frames, a :class:`State` maps each object to the set of values it may
have (its gradients, its train/eval mode...). Paths are never enumerated: where branches
merge, states are joined by taking the union of each object's possible values. A state
also carries the conditions known to hold on its path (``if scaler is not None:`` tested
twice means the same thing both times), so states under different known conditions are
kept apart instead of joined.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, NamedTuple, TypeVar

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


class OpTable:
    """The ops one loop's iterations ran, each with a bit of its own: what an iteration ran
    is kept as bit sets (ints), so that one more op costs no copy of a set of ops, and the
    states recorded along a long loop body do not each hold one."""

    __slots__ = ("ops", "bits", "_decoded")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.bits: dict[int, int] = {}  # id(op) -> its bit
        self._decoded: dict[int, frozenset[Op]] = {}

    def bit(self, op: Op) -> int:
        found = self.bits.get(id(op))
        if found is None:
            found = self.bits[id(op)] = 1 << len(self.ops)
            self.ops.append(op)
        return found

    def decode(self, bits: int) -> frozenset[Op]:
        found = self._decoded.get(bits)
        if found is None:
            ops = self.ops
            found = self._decoded[bits] = frozenset(ops[i] for i, digit in enumerate(reversed(bin(bits)[2:])) if digit == "1")
        return found


class Iteration(NamedTuple):
    """One level of the loop stack: which ops the current iteration ran, on some path
    (``may``) and on every path (``must``), as bits of the loop's :class:`OpTable` (one per
    loop: equal loops have the same table)."""

    loop: int  # id of the loop node
    first: bool
    table: OpTable
    may_bits: int = 0
    must_bits: int = 0

    @property
    def may(self) -> frozenset[Op]:
        return self.table.decode(self.may_bits)

    @property
    def must(self) -> frozenset[Op]:
        return self.table.decode(self.must_bits)


GRAD_ON = frozenset({"on"})
NOT_FROZEN = frozenset({False})
# A condition known on a path: (its text, its value, the loop depth where it was tested).
Fact = tuple[str, bool, int]
# Distinct sets of known conditions kept apart at one point; more are merged.
MAX_PARTITIONS = 8
# Known conditions one state carries at most.
MAX_FACTS = 4
MAX_DEPTH_FORGOTTEN = 8
K = TypeVar("K")
V = TypeVar("V")



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
        cached = self.__dict__.get("_partition")
        if cached is None:
            cached = (self.facts, tuple((it.loop, it.first) for it in self.loops), self.gated)
            object.__setattr__(self, "_partition", cached)
        return cached

    def with_(self, **changes: object) -> State:
        """A copy with ``changes`` (``dataclasses.replace`` without re-running ``__init__``:
        states are copied on every op)."""
        state = object.__new__(State)
        fields = state.__dict__
        fields.update(self.__dict__)
        fields.pop("_identity", None)
        fields.pop("_partition", None)
        fields.update(changes)
        return state

    def grad_of(self, key: Key) -> frozenset[Grad]:
        return self.grads.get(key, self.grads_default)

    def visit(self, op: Op) -> State:
        if not self.loops:
            return self
        loops = []
        for it in self.loops:
            bit = it.table.bit(op)
            loops.append(it if it.must_bits & bit else Iteration(it.loop, it.first, it.table, it.may_bits | bit, it.must_bits | bit))
        return self.with_(loops=tuple(loops))


class Interner:
    """One shared copy of each set of values. States are copied on every op and recorded
    before every statement, and transfer functions rebuild the values of every object
    (``carried``, ``stepped``, ``trained``): without sharing, a long script's recorded
    states would hold millions of copies of a few hundred distinct sets."""

    def __init__(self) -> None:
        self._sets: dict[frozenset[Any], frozenset[Any]] = {}
        self._mapped: dict[tuple[Hashable, frozenset[Any]], frozenset[Any]] = {}
        self._unions: dict[tuple[frozenset[Any], frozenset[Any]], frozenset[Any]] = {}

    def one(self, values: frozenset[V]) -> frozenset[V]:
        return self._sets.setdefault(values, values)

    def union(self, a: frozenset[V], b: frozenset[V]) -> frozenset[V]:
        if a is b:
            return a
        found = self._unions.get((a, b))
        if found is None:
            found = self._unions[(a, b)] = self.one(a | b)
        return found

    def each(self, table: Mapping[K, frozenset[V]], how: Hashable, function: Callable[[V], V]) -> Mapping[K, frozenset[V]]:
        """``function`` applied to every value of every object (``how`` names it, and all
        it depends on); the same table when that changes nothing."""
        # A state of a long script tracks hundreds of objects with a handful of distinct
        # values: each distinct value is mapped once, and the table is rebuilt in C.
        mapping: dict[frozenset[V], frozenset[V]] = {}
        changed = False
        for values in set(table.values()):
            new = self._mapped.get((how, values))
            if new is None:
                new = self._mapped[(how, values)] = self.one(frozenset(map(function, values)))
            mapping[values] = new
            changed = changed or new is not values
        if not changed:
            return table
        return dict(zip(table.keys(), map(mapping.__getitem__, table.values())))


def _frozen(table: Mapping[Any, frozenset[Any]]) -> frozenset[Any]:
    """A table's items as a set. Most ops leave most tables alone, so many states share
    one: the last few thousand tables frozen are remembered by identity (with the table
    itself, so that its id stays its own), tables are never changed once in a state."""
    if not table:
        return _NOTHING
    found = _FROZEN.get(id(table))
    if found is not None:
        return found[1]
    frozen = frozenset(table.items())
    if len(_FROZEN) >= FROZEN_TABLES:
        _FROZEN.clear()
    _FROZEN[id(table)] = (table, frozen)
    return frozen


FROZEN_TABLES = 4096
_FROZEN: dict[int, tuple[Mapping[Any, frozenset[Any]], frozenset[Any]]] = {}
_NOTHING: frozenset[Any] = frozenset()


ModeInitial = Callable[[Key], frozenset[ModeV]]


def _state(**fields: object) -> State:
    """``State(**fields)`` without a frozen dataclass's ``__init__`` (a joined state is made
    at most branch merges)."""
    state = object.__new__(State)
    state.__dict__.update(_DEFAULTS)
    state.__dict__.update(fields)
    return state


_DEFAULTS = {
    f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc,operator]
    for f in fields(State)
    if f.default is not MISSING or f.default_factory is not MISSING
}


def initial_state() -> State:
    return State(grads={}, grads_default=frozenset({Grad()}), modes={}, totals={})


def join(states: Iterable[State], mode_initial: ModeInitial, values: Interner) -> list[State]:
    """Merge states of the same partition (union of every object's values). Past
    :data:`MAX_PARTITIONS`, known conditions are forgotten, those of outer loops first:
    the conditions of the loop being run are the ones that keep its paths apart."""
    states = list(states)
    if len(states) < 2:
        return states
    groups = _partitions(states)
    depth = 0
    while len(groups) > MAX_PARTITIONS:
        states = [s.with_(facts=frozenset(f for f in s.facts if f[2] > depth)) if s.facts else s for s in states]
        groups = _partitions(states)
        depth += 1
        if depth > MAX_DEPTH_FORGOTTEN:
            states = [s.with_(facts=frozenset()) for s in states]
            groups = _partitions(states)
    return [_join_group(group, mode_initial, values) for group in groups.values()]


def _partitions(states: list[State]) -> dict[tuple[object, ...], list[State]]:
    groups: dict[tuple[object, ...], list[State]] = {}
    for state in states:
        groups.setdefault(state.partition(), []).append(state)
    return groups


def _join_group(group: list[State], mode_initial: ModeInitial, values: Interner) -> State:
    distinct = list({id(state): state for state in group}.values())
    if len(distinct) == 1:
        return distinct[0]
    unique: dict[tuple[object, ...], State] = {}
    for state in distinct:
        unique.setdefault(state.identity(), state)
    if len(unique) == 1:
        return next(iter(unique.values()))
    states = list(unique.values())
    first = states[0]
    return _state(
        grads=_union([s.grads for s in states], [s.grads_default for s in states], values),
        grads_default=frozenset().union(*(s.grads_default for s in states)),
        modes=_union([s.modes for s in states], [mode_initial] * len(states), values),
        totals=_union([s.totals for s in states], [frozenset()] * len(states), values),
        grad=frozenset().union(*(s.grad for s in states)),
        autocast=frozenset().union(*(s.autocast for s in states)),
        gated=first.gated,
        group=frozenset().union(*(s.group for s in states)),
        group_open=any(s.group_open for s in states),
        schedules=frozenset().union(*(s.schedules for s in states)),
        stepped=frozenset().union(*(s.stepped for s in states)),
        loops=tuple(_join_iterations([s.loops[level] for s in states]) for level in range(len(first.loops))),
        facts=first.facts,
        frozen=_union([s.frozen for s in states], [NOT_FROZEN] * len(states), values),
        iterators=_union([s.iterators for s in states], [frozenset()] * len(states), values),
    )


def _union(tables: list[Mapping[Any, frozenset[Any]]], defaults: list[Any], interner: Interner) -> Mapping[Any, frozenset[Any]]:
    """Per key, the union of the values; a state that has not met a key yet contributes
    its default for it (a frozenset, or a function of the key)."""
    first = tables[0]
    if all(table is first for table in tables):
        return first
    # Only the objects whose values differ between the tables (or that some table has not
    # met) need a union: the rest is copied as it is.
    keys: set[Any] = set()
    for table in tables[1:]:
        if table is not first:
            keys.update(key for key, _ in first.items() ^ table.items())
    merged = dict(first)
    for key in keys:
        values: frozenset[Any] | None = None
        for table, default in zip(tables, defaults):
            found = table.get(key)
            if found is None:
                found = default(key) if callable(default) else default
            values = interner.one(found) if values is None else interner.union(values, found)
        merged[key] = values  # type: ignore[assignment]
    return merged


def _join_iterations(levels: list[Iteration]) -> Iteration:
    first = levels[0]
    may, must = first.may_bits, first.must_bits
    for level in levels[1:]:
        may |= level.may_bits
        must &= level.must_bits
    return Iteration(first.loop, first.first, first.table, may, must)
