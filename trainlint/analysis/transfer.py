"""What each training op does to the state (the transfer functions of the engine).

Objects are matched by :func:`keys.relation`. An op on an object that is certainly the
tracked one updates it outright; an op on an object that only *may* be it (an unresolved
name next to a known optimizer) updates it weakly: clears still count as clears (so that
a missing one is not reported on a guess), switches add their mode next to the old one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from trainlint.analysis.brains import Kind
from trainlint.analysis.ir import Flag, Op, OpKind
from trainlint.analysis.keys import Frame, Key, Relation, home, relation, variable
from trainlint.analysis.state import Grad, Interner, ModeV, State, Total

# Resolves an op's expression in the frame it runs in.
KeyOf = Callable[[Op, Frame], "Key | None"]


class Transfer:
    """The transfer function of every op kind; ``owners`` gives the models an optimizer's
    parameters come from, ``scheduled`` the optimizer a scheduler steps, ``graph`` whether an
    assigned value holds an autograd graph."""

    def __init__(
        self,
        target: KeyOf,
        owners: Callable[[Key], tuple[Key, ...]],
        scheduled: Callable[[Op, Frame], Key | None],
        graph: Callable[[Op, Frame, State], bool],
        mode_initial: Callable[[Key], frozenset[ModeV]],
        values: Interner,
    ) -> None:
        self.target = target
        self.owners = owners
        self.scheduled = scheduled
        self.graph = graph
        self.mode_initial = mode_initial
        self.values = values

    def apply(self, op: Op, state: State, frame: Frame) -> State:
        state = state.visit(op)
        handler = _HANDLERS.get(op.kind)
        return handler(self, op, state, frame) if handler is not None else state

    # -- gradients ----------------------------------------------------------------------

    def backward(self, op: Op, state: State, frame: Frame) -> State:
        scaled = op.has(Flag.SCALED)
        plain = not scaled and not op.has(Flag.FRAMEWORK)

        def fed(g: Grad) -> Grad:
            return Grad(
                applied=g.applied,
                pending=True,
                scaled=op if scaled else (g.scaled if g.pending else None),
                plain=op if plain else (g.plain if g.pending else None),
            )

        group = state.group if state.group_open else frozenset({op})
        return state.with_(
            grads=self.values.each(state.grads, op, fed),  # ``fed`` depends on the op alone
            grads_default=frozenset(map(fed, state.grads_default)),
            modes=self.values.each(state.modes, "trained", _trained),
            group=group,
            group_open=True,
        )

    def clear(self, op: Op, state: State, frame: Frame) -> State:
        target = self.target(op, frame)
        model_clear = _model_clear(op, target)
        grads = dict(state.grads)
        optimizers = list(state.grads)
        claimed = functools.cache(lambda: self.claimed(target, optimizers) if target is not None else [])
        for key, values in state.grads.items():
            how = self.clears(target, key, op, optimizers, claimed)
            if how is not Relation.DIFFERENT:
                grads[key] = frozenset(_cleared(g, op, strong=how is Relation.SAME) for g in values)
        default = state.grads_default
        if model_clear or target is None:
            strong = not state.grads
            default = frozenset(_cleared(g, op, strong=strong) for g in default)
        elif target is not None and target not in grads:
            grads[target] = frozenset(_cleared(g, op, strong=True) for g in default)
        if state.gated:
            grads = {key: values | state.grads.get(key, state.grads_default) for key, values in grads.items()}
        return state.with_(grads=grads, grads_default=default)

    def clears(
        self, target: Key | None, optimizer: Key, op: Op, optimizers: list[Key], claimed: Callable[[], list[Key]] | None = None
    ) -> Relation:
        """Whether clearing ``target`` clears ``optimizer``'s gradients. A model's clear is
        another optimizer's when that one is built over the model (GANs: ``netD.zero_grad()``
        is not the generator's). ``claimed``: :meth:`claimed` of ``target`` and
        ``optimizers``, computed once for all the optimizers of a state."""
        if target is None:
            return Relation.MAYBE
        if not _model_clear(op, target):
            found = relation(target, optimizer)
            if found is Relation.MAYBE and target.text is not None and optimizer.text is not None:
                return Relation.DIFFERENT  # two optimizers known by different names
            return found
        if relation(target, optimizer) is Relation.SAME:
            return Relation.SAME
        owners = self.owners(optimizer)
        if owners:
            if any(owner.is_part_of(target) or relation(target, owner) is Relation.SAME for owner in owners):
                return Relation.SAME
            if all(relation(target, owner) is Relation.DIFFERENT for owner in owners):
                return Relation.MAYBE if len(optimizers) <= 1 else Relation.DIFFERENT
            if any(target.is_part_of(owner) for owner in owners):
                return Relation.MAYBE
        if any(other != optimizer for other in (claimed() if claimed is not None else self.claimed(target, optimizers))):
            return Relation.DIFFERENT  # the model is another optimizer's
        return Relation.SAME if len(optimizers) <= 1 else Relation.MAYBE

    def claimed(self, target: Key, optimizers: list[Key]) -> list[Key]:
        """The optimizers built over the cleared model itself (computed once per clear,
        not once per optimizer of the state)."""
        return [other for other in optimizers if any(relation(target, owner) is Relation.SAME for owner in self.owners(other))]

    def step(self, op: Op, state: State, frame: Frame) -> State:
        target = self.target(op, frame)
        if target is None:
            return state.with_(group_open=False)
        before = state.grad_of(target)
        loop = state.loops[-1].loop if state.loops else 0
        after = frozenset(Grad(applied=loop if g.pending else g.applied, stepped=op) for g in before)
        if state.gated:
            after = after | before
        grads = dict(state.grads)
        grads[target] = after
        schedules = frozenset(
            entry for entry in state.schedules if entry[1] is not None and relation(entry[1], target) is Relation.DIFFERENT
        )
        stepped = state.stepped | {(target, level.loop) for level in state.loops}
        totals = self.values.each(state.totals, "stepped", _stepped)
        return state.with_(grads=grads, group_open=False, schedules=schedules, stepped=stepped, totals=totals)

    def unscale(self, op: Op, state: State, frame: Frame) -> State:
        target = self.target(op, frame)
        grads = {
            key: frozenset(g._replace(scaled=None) for g in values) if target is None or relation(target, key) is not Relation.DIFFERENT else values
            for key, values in state.grads.items()
        }
        return state.with_(grads=grads, grads_default=frozenset(g._replace(scaled=None) for g in state.grads_default))

    def clip(self, op: Op, state: State, frame: Frame) -> State:
        if not op.has(Flag.UNSCALES):
            return state
        unscaled = {key: frozenset(g._replace(scaled=None) for g in values) for key, values in state.grads.items()}
        return state.with_(grads=unscaled)

    def scheduler_step(self, op: Op, state: State, frame: Frame) -> State:
        if op.has(Flag.HAS_ARGS) or not state.loops:
            return state
        optimizer = self.scheduled(op, frame)
        loop = state.loops[-1].loop
        if any(level == loop and (optimizer is None or relation(optimizer, key) is not Relation.DIFFERENT) for key, level in state.stepped):
            return state  # its optimizer already stepped in this iteration
        return state.with_(schedules=state.schedules | {(op, optimizer, loop)})

    # -- modes --------------------------------------------------------------------------

    def mode(self, op: Op, state: State, frame: Frame) -> State:
        target = self.target(op, frame)
        if target is None or op.mode is None:
            return state
        certain = ModeV(op.mode, op, True)
        modes = dict(state.modes)
        for key, values in state.modes.items():
            found = relation(target, key)
            if found is Relation.SAME or key.is_part_of(target):
                modes[key] = frozenset({certain})
            elif found is Relation.MAYBE and not target.is_part_of(key):
                modes[key] = values | {ModeV(op.mode, op, False)}
        modes[target] = frozenset({certain})
        return state.with_(modes=modes)

    def grad_enabled(self, op: Op, state: State, frame: Frame) -> State:
        grad = {"on": frozenset({"on"}), "off": frozenset({"off"})}.get(op.mode or "", frozenset({"on", "off"}))
        return state.with_(grad=grad)

    # -- values -------------------------------------------------------------------------

    def assign(self, op: Op, state: State, frame: Frame) -> State:
        if op.name is None:
            return state
        graph = self.graph(op, frame, state)
        key = variable(frame, op.name)
        totals = dict(state.totals)
        if op.has(Flag.AUGMENTED):
            totals[key] = self.values.one(_added(state.totals.get(key, frozenset()), graph, op))
        else:
            totals[key] = self.values.one(frozenset({Total(graph, False, op)}))
        return state.with_(totals=totals)

    def store(self, op: Op, state: State, frame: Frame) -> State:
        """A container lives like a running total (carried, stepped) from one iteration to
        the next; emptying it starts over. Whether a kept value holds a graph is judged
        where it is stored (``training.kept_loss``), not here."""
        if op.name is None:
            return state
        key = variable(frame, op.name)
        totals = dict(state.totals)
        if op.has(Flag.CLEARS):
            totals[key] = self.values.one(frozenset({Total(False, False, op)}))
        else:
            totals[key] = self.values.one(_added(state.totals.get(key, frozenset()), False, op))
        return state.with_(totals=totals)

    def carry(self, op: Op, state: State, frame: Frame) -> State:
        """Recurrent state holds a graph when a model computed it from the old state with
        gradients on; detached or re-initialised state holds none."""
        if op.name is None:
            return state
        graph = op.has(Flag.RECURRENT) and "on" in state.grad
        return state.with_(totals={**state.totals, variable(frame, op.name): frozenset({Total(graph, False, op)})})

    # -- iterators and modules -------------------------------------------------------------

    def iterator(self, op: Op, state: State, frame: Frame) -> State:
        if op.name is None:
            return state
        key = home(frame, op.name)
        iterators = {name: values for name, values in state.iterators.items() if name != key}
        if op.operand is not None:
            iterators[key] = frozenset({None})
        return state.with_(iterators=iterators)

    def consume(self, op: Op, state: State, frame: Frame) -> State:
        key = home(frame, op.name or "")
        values = state.iterators.get(key)
        if values is None:
            return state
        return state.with_(iterators={**state.iterators, key: frozenset(v if v is not None else op for v in values)})

    def freeze(self, op: Op, state: State, frame: Frame) -> State:
        target = self.target(op, frame)
        if target is None:
            return state
        value = frozenset({op.mode == "frozen"})
        frozen = {key: value if key.is_part_of(target) else values for key, values in state.frozen.items()}
        frozen[target] = value
        return state.with_(frozen=frozen)


def _added(old: frozenset[Total], graph: bool, op: Op) -> frozenset[Total]:
    """A total (or container) after ``op`` adds a value that may hold a graph."""
    return frozenset(t._replace(graph=t.graph or graph, origin=op if graph else t.origin) for t in old) or frozenset({Total(graph, False, op)})


def _trained(value: ModeV) -> ModeV:
    return value._replace(trained=True)


def _stepped(total: Total) -> Total:
    return total._replace(stepped=True)


def _model_clear(op: Op, target: Key | None) -> bool:
    return op.has(Flag.MODEL) or (target is not None and target.kind not in (Kind.OPTIMIZER, None))


def _cleared(g: Grad, op: Op, strong: bool) -> Grad:
    if not strong:
        return g._replace(applied=None)
    return Grad(wiped=op if g.pending else g.wiped if not g.stepped else None)


_HANDLERS: dict[OpKind, Callable[[Transfer, Op, State, Frame], State]] = {
    OpKind.BACKWARD: Transfer.backward,
    OpKind.CLEAR: Transfer.clear,
    OpKind.STEP: Transfer.step,
    OpKind.UNSCALE: Transfer.unscale,
    OpKind.CLIP: Transfer.clip,
    OpKind.SCHEDULER_STEP: Transfer.scheduler_step,
    OpKind.MODE: Transfer.mode,
    OpKind.GRAD_ENABLED: Transfer.grad_enabled,
    OpKind.ASSIGN: Transfer.assign,
    OpKind.STORE: Transfer.store,
    OpKind.CARRY: Transfer.carry,
    OpKind.ITERATOR: Transfer.iterator,
    OpKind.CONSUME: Transfer.consume,
    OpKind.FREEZE: Transfer.freeze,
}
