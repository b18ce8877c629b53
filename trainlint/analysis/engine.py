"""The training-state engine: an abstract interpreter over the training IR.

Each *root* (module-level code, and every function nobody visibly calls) is run once from
a neutral state. Calls into user code are followed with the callee's parameters bound to
the caller's arguments (a new :class:`Frame`), so state is context-sensitive and never
merged across call sites. Branches run from the same state and are joined where they
merge; loops run their first iteration, then later iterations from the join of what the
previous ones left, until nothing changes. Along the way the engine records the state
before every statement and op, per frame, which is all the rules ever look at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import Kind
from trainlint.analysis.brains import ignite as IGNITE
from trainlint.analysis.brains import lightning as PL
from trainlint.analysis.brains import transformers as HF
from trainlint.analysis.data import data_sources, is_loader
from trainlint.analysis.ir import (
    Block,
    Branch,
    Exit,
    Flag,
    Invoke,
    IRBuilder,
    Item,
    Loop,
    Op,
    OpKind,
    Region,
    RegionKind,
    Stmt,
    Try,
    VALUE_OPS,
    iterated,
    value_kind,
    walk_items,
)
from trainlint.analysis.keys import Frame, Key, Relation, Resolver, variable
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.state import MAX_FACTS, Interner, Iteration, ModeV, OpTable, State, Total, initial_state, join
from trainlint.analysis.tensors import holds_graph
from trainlint.analysis.transfer import Transfer
from trainlint.analysis.walk import iter_children
from trainlint.analysis.values import ClassRef, Evaluator, FuncRef, Instance, Obj, call_arg, literal_value

MAX_CALL_DEPTH = 6
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*")
# The first name of a condition's text, when a dotted name, a call or an operator follows.
_ROOT = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)(?![A-Za-z_0-9(])")
MAX_FIXPOINT = 6
MAX_CALLER_DEPTH = 3
T = TypeVar("T")
E = TypeVar("E", bound=tuple)  # type: ignore[type-arg]
_MISSING = object()


@dataclass(eq=False)
class Snapshot:
    """The state before a statement or op, in one activation of its function."""

    state: State
    frame: Frame


@dataclass(eq=False)
class Occurrence(Snapshot):
    """An op as it ran: the state before it, its frame, and where to report it (``home``,
    the frame of its innermost loop, or of its root)."""

    op: Op = field(default=None)  # type: ignore[assignment]
    home: Frame = field(default=None)  # type: ignore[assignment]

    def node_in(self, module: ModuleModel) -> cst.CSTNode:
        """Where to report the op in ``module``: the op itself when it is written there,
        else the call there that leads to it."""
        if self.op.module is module:
            return self.op.node
        return self.anchor_in(module)

    def anchor_in(self, module: ModuleModel) -> cst.CSTNode:
        """The op as its home frame (its loop, or its root) sees it: the op itself when it
        runs there, else the home frame's call that leads to it (a helper's clear is the
        loop's call of the helper)."""
        if self.home.module is module:
            found = self.node_at(self.home)
            if found is not None:
                return found
        frames = self.frame.chain()
        if self.op.module is module:
            return self.op.node
        for frame in frames:
            if frame.parent is not None and frame.parent.module is module and frame.site is not None:
                return frame.site
        return self.op.node

    def node_at(self, frame: Frame) -> cst.CSTNode | None:
        """The op as ``frame`` sees it: itself when it runs there, else the call in
        ``frame`` that leads to it; ``None`` when ``frame`` is not on the way."""
        if self.frame is frame:
            return self.op.node
        for inner in self.frame.chain():
            if inner.parent is frame and inner.site is not None:
                return inner.site
        return None

    @property
    def loops(self) -> tuple[Iteration, ...]:
        return self.state.loops


@dataclass(eq=False)
class LoopFacts:
    """What the engine saw of a loop, over every activation."""

    loop: Loop
    table: OpTable = field(default_factory=OpTable)  # bits of the ops its iterations ran
    frames: list[Frame] = field(default_factory=list)
    direct: set[Op] = field(default_factory=set)  # ops whose innermost loop this is
    children: set[int] = field(default_factory=set)  # loops run inside an iteration
    ends: list[Snapshot] = field(default_factory=list)  # states at the end of an iteration


@dataclass
class _Outcome:
    normal: list[State]
    exits: dict[str, list[State]] = field(default_factory=dict)

    def add_exit(self, kind: str, states: Iterable[State]) -> None:
        self.exits.setdefault(kind, []).extend(states)


class Engine:
    """Runs the roots a module needs and answers questions about the recorded states."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.ev = evaluator
        self.ir = IRBuilder(evaluator)
        self.keys = Resolver(evaluator)
        self.values = Interner()
        self.transfer = Transfer(self._target, self.owners, self._scheduled, self._graph, self.mode_initial, self.values)
        self._snapshots: dict[int, dict[tuple[object, ...], Snapshot]] = {}
        self._occurrences: dict[int, dict[tuple[object, ...], Occurrence]] = {}
        self._by_home: dict[int, list[Occurrence]] = {}
        self._by_op_module: dict[int, list[Occurrence]] = {}
        self._loops: dict[int, LoopFacts] = {}
        self._analysed: set[int] = set()  # modules whose roots ran
        self._roots: set[int] = set()  # roots that ran
        self._owners: dict[Key, tuple[Key, ...]] = {}
        self._initial_modes: dict[Key, frozenset[ModeV]] = {}
        self._invocations: dict[tuple[object, ...], _Outcome] = {}
        self._frames: dict[tuple[int, ...], Frame] = {}
        self._targets: dict[int, list[FuncRef]] = {}
        self._repeated: dict[int, frozenset[str]] = {}
        self._acting: dict[int, bool] = {}
        self._conditions: dict[int, tuple[str, bool]] = {}
        self._test_names: dict[int, frozenset[str]] = {}
        self._working: dict[tuple[int, frozenset[OpKind]], bool] = {}
        self._reached: set[int] = set()  # functions some activation entered
        self._callers_explored: dict[int, int] = {}  # function -> least caller depth explored from
        self._relevant: dict[int, bool] = {}
        self._loop_stack: list[tuple[Loop, Frame]] = []
        self._root_frame: Frame | None = None
        # Answers to queries, valid while no root runs (the recorded states change only then).
        self._generation = 0
        self._memo: dict[tuple[object, ...], Any] = {}
        self._memo_generation = 0

    # -- which code runs ----------------------------------------------------------------

    def analyse(self, module: ModuleModel) -> None:
        """Run every root whose activations reach code of ``module``."""
        if id(module) in self._analysed:
            return
        self._analysed.add(id(module))
        self._run_root(None, module)
        relevant = []
        for function in module.functions:
            if self._library_driven(function, module) is not None:
                self._run_root(function, module)  # the library's loop runs it, whatever it does
            elif self._relevant_function(function, module):
                relevant.append(function)
        unseen: list[cst.FunctionDef] = []
        for function in relevant:
            if id(function) in self._reached:
                continue  # a root already ran it with its caller's state
            callers = self.ev.call_sites(function, module)
            for call, caller in callers:
                self._run_callers_root(call, caller, 0)
            if not callers:
                unseen.append(function)
        # Functions nobody visibly calls run as roots, outer ones first: methods the
        # language calls (``obj(...)`` runs ``__call__``) are usually reached from them.
        for function in sorted(unseen, key=lambda f: f.name.value.startswith("__")):
            self._run_new_code(function, module)
        for function in relevant:
            self._run_new_code(function, module)

    def _run_new_code(self, function: cst.FunctionDef, module: ModuleModel) -> None:
        """Run a function no root reached as a root of its own, unless it only calls
        functions that other roots ran already (``def run(**kwargs): main(opt)``): another
        context for code analysed once, with no caller's state, would double the work and
        add nothing."""
        if id(function) not in self._reached and self._has_own_work(function, module):
            self._run_root(function, module)

    def _has_own_work(self, function: cst.FunctionDef, module: ModuleModel) -> bool:
        for item in walk_items(self.ir.function(function, module)):
            if isinstance(item, (Op, Region)):
                return True
            if isinstance(item, Invoke) and any(id(t.node) not in self._reached for t in self.targets(item)):
                return True
        return False

    def _run_callers_root(self, call: cst.CSTNode, caller: ModuleModel, depth: int) -> None:
        function = caller.enclosing_function(call)
        if function is None:
            self._run_root(None, caller)
            return
        # Callers met again (a method called from a hundred places, each called from a
        # hundred more) were explored once, at least as far up: exploring again would run
        # the same roots, at a cost that multiplies with every level.
        explored = self._callers_explored.get(id(function))
        if explored is not None and explored <= depth:
            return
        self._callers_explored[id(function)] = depth
        outer = self.ev.call_sites(function, caller) if depth < MAX_CALLER_DEPTH and self._library_driven(function, caller) is None else []
        if not outer:
            self._run_root(function, caller)
        for site, module in outer:
            self._run_callers_root(site, module, depth + 1)

    def _run_root(self, function: cst.FunctionDef | None, module: ModuleModel) -> None:
        key = id(function) if function is not None else id(module.tree)
        if key in self._roots:
            return
        self._roots.add(key)
        self._generation += 1
        frame = Frame(function, module)
        block = self.ir.function(function, module) if function is not None else self.ir.module_code(module)
        state = initial_state()
        driver = self._library_driven(function, module) if function is not None else None
        if driver is not None:
            block, state = self._driven(function, module, block, state, driver)  # type: ignore[arg-type]
        self._root_frame = frame
        if function is not None:
            self._reached.add(id(function))
        _Run(self, frame).block(block, [state])
        self._root_frame = None

    def _relevant_function(self, function: cst.FunctionDef, module: ModuleModel) -> bool:
        """Does the function do anything the engine tracks: ops, loops, or calls into user
        code? (Pure helpers are never roots: nothing to record.)"""
        key = id(function)
        known = self._relevant.get(key)
        if known is None:
            block = self.ir.function(function, module)
            known = self._relevant[key] = any(
                isinstance(item, (Loop, Invoke, Region)) or (isinstance(item, Op) and item.kind not in VALUE_OPS) for item in walk_items(block)
            )
        return known

    # -- loops run by libraries ---------------------------------------------------------

    def _library_driven(self, function: cst.FunctionDef, module: ModuleModel) -> str | None:
        """``"train"``/``"eval"`` for methods a library calls once per batch: Lightning's
        ``training_step``/``validation_step``, a Trainer's ``compute_loss``, ignite's
        ``Engine(step_fn)`` step function."""
        name = function.name.value
        cls = module.method_class(function)
        if cls is not None:
            bases = self.ev.base_qualnames(ClassRef(module, cls))
            if bases & PL.MODULE_BASES or any(b.startswith(("lightning.", "pytorch_lightning.")) for b in bases):
                if name in PL.TRAINING_HOOKS:
                    return "train"
                if name in PL.EVALUATION_HOOKS:
                    return "eval"
            if bases & HF.TRAINERS:
                if name in HF.TRAINER_STEP_METHODS:
                    return "train"
                if name in HF.TRAINER_EVAL_METHODS:
                    return "eval"
            return None
        if self._passed_to_ignite(function, module):
            return "train"
        return None

    def _passed_to_ignite(self, function: cst.FunctionDef, module: ModuleModel) -> bool:
        for call in module.calls_by_name.get("Engine", []):
            if self.ev.callee(call, module) & IGNITE.ENGINES:
                step = call_arg(call, 0, "process_function")
                if step is not None and any(isinstance(v, FuncRef) and v.node is function for v in self.ev.eval(step, module)):
                    return True
        return False

    def _driven(self, function: cst.FunctionDef, module: ModuleModel, block: Block, state: State, driver: str) -> tuple[Block, State]:
        """The hook's body inside the library's batch loop, in the library's mode."""
        if driver == "eval":
            state = state.with_(grad=frozenset({"off"}))
        loop = Loop(function, module, block, None, frozenset(), frozenset())  # type: ignore[arg-type]
        return Block([loop]), state

    # -- recording ----------------------------------------------------------------------

    def record(self, node: cst.CSTNode, states: list[State], frame: Frame) -> None:
        found = self._snapshots.get(id(node))
        if found is None:
            found = self._snapshots[id(node)] = {}
        for state in states:
            key = (id(state), id(frame))
            if key not in found:
                found[key] = Snapshot(state, frame)

    def record_op(self, op: Op, states: list[State], frame: Frame) -> None:
        found = self._occurrences.setdefault(id(op), {})
        home = self._loop_stack[-1][1] if self._loop_stack else self._root_frame or frame
        for state in states:
            key = (id(state), id(frame))
            if key not in found:
                occurrence = Occurrence(state, frame, op, home)
                found[key] = occurrence
                self._by_home.setdefault(id(home.module), []).append(occurrence)
                if op.module is not home.module:
                    self._by_op_module.setdefault(id(op.module), []).append(occurrence)
        if self._loop_stack:
            self._loops[id(self._loop_stack[-1][0].node)].direct.add(op)

    def enter_loop(self, loop: Loop, frame: Frame) -> LoopFacts:
        facts = self._loops.get(id(loop.node))
        if facts is None:
            facts = self._loops[id(loop.node)] = LoopFacts(loop)
        if frame not in facts.frames:
            facts.frames.append(frame)
        if self._loop_stack:
            self._loops[id(self._loop_stack[-1][0].node)].children.add(id(loop.node))
        self._loop_stack.append((loop, frame))
        return facts

    def leave_loop(self) -> None:
        self._loop_stack.pop()

    # -- queries ------------------------------------------------------------------------

    def memo(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """``compute()``, remembered until a root runs: rules ask the same question about
        one loop or one occurrence many times (once per call site, once per rule), and the
        recorded states it is answered from change only when a root runs."""
        if self._memo_generation != self._generation:
            self._memo.clear()
            self._memo_generation = self._generation
        found = self._memo.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        generation = self._generation
        value = compute()
        if generation == self._generation:
            self._memo[key] = value
        return value

    def occurrences(self, module: ModuleModel, *kinds: OpKind, home_only: bool = False) -> list[Occurrence]:
        """Ops that ran with their home (innermost loop, else root) in ``module``, and, unless
        ``home_only``, ops written in ``module`` wherever they ran (a scaler helper's
        ``__call__`` run from another file's loop), in source order."""
        self.analyse(module)
        return list(self.memo(("occurrences", id(module), kinds, home_only), lambda: self._occurrences_in(module, kinds, home_only)))

    def _occurrences_in(self, module: ModuleModel, kinds: tuple[OpKind, ...], home_only: bool) -> tuple[Occurrence, ...]:
        found = {id(o): o for o in self._by_home.get(id(module), [])}
        if not home_only:
            found.update((id(o), o) for o in self._by_op_module.get(id(module), []))
        chosen = [o for o in found.values() if not kinds or o.op.kind in kinds]
        return tuple(sorted(chosen, key=lambda o: module.order_of(o.node_in(module), 0)))

    def all_occurrences(self, kind: OpKind) -> list[Occurrence]:
        """Every recorded occurrence of ``kind``, whatever its home (call ``analyse`` first)."""
        return [o for found in self._occurrences.values() for o in found.values() if o.op.kind is kind]

    def ops_in(self, module: ModuleModel, kind: OpKind) -> list[Op]:
        """Ops of ``kind`` written in ``module`` that some activation ran, in source order."""
        self.analyse(module)
        return list(self.memo(("ops_in", id(module), kind), lambda: self._ops_in(module, kind)))

    def _ops_in(self, module: ModuleModel, kind: OpKind) -> tuple[Op, ...]:
        found = [next(iter(o.values())).op for o in self._occurrences.values() if o]
        ops = [op for op in found if op.kind is kind and op.module is module]
        return tuple(sorted(ops, key=lambda op: module.order_of(op.node, 0)))

    def occurrences_of(self, op: Op) -> list[Occurrence]:
        self.analyse(op.module)
        return list(self._occurrences.get(id(op), {}).values())

    def snapshots(self, node: cst.CSTNode, module: ModuleModel) -> list[Snapshot]:
        """States before the statement holding ``node``, in every activation that ran it."""
        self.analyse(module)
        current: cst.CSTNode | None = node
        while current is not None:
            found = self._snapshots.get(id(current))
            if found is not None:
                return list(found.values())
            current = module.parent_of(current)
        return []

    def key(self, expr: cst.BaseExpression, module: ModuleModel, frame: Frame | None) -> Key:
        return self.keys.key(expr, module, frame)

    def modes(self, expr: cst.BaseExpression, module: ModuleModel, snapshot: Snapshot) -> frozenset[ModeV]:
        """The modes a module may be in: its own last switch, else that of the model it is
        part of (``model.eval()`` puts ``model.head`` in eval mode), else how it was built."""
        current: cst.BaseExpression = expr
        while True:
            found = snapshot.state.modes.get(self.key(current, module, snapshot.frame))
            if found is not None:
                return found
            if not isinstance(current, cst.Attribute):
                break
            current = current.value
        key = self.key(expr, module, snapshot.frame)
        if not key.values and _unassigned_attribute(expr, module, self.ev):
            return frozenset({ModeV("unknown", None, False)})  # registered by name (diffusers pipelines)
        return self.mode_initial(key)

    def loop(self, node: cst.CSTNode, module: ModuleModel) -> LoopFacts | None:
        self.analyse(module)
        return self._loops.get(id(node))

    def loops(self, module: ModuleModel) -> list[LoopFacts]:
        self.analyse(module)
        return [facts for facts in self._loops.values() if facts.loop.module is module]

    def is_batch_loop(self, facts: LoopFacts) -> bool:
        """Iterates a data loader, or steps an optimizer in its own iteration."""
        return self.iterates_data(facts.loop) or any(op.kind is OpKind.STEP for op in facts.direct)

    def is_epoch_loop(self, facts: LoopFacts) -> bool:
        """Not a batch loop, but runs one in its iteration."""
        if self.is_batch_loop(facts):
            return False
        return any(self.is_batch_loop(self._loops[child]) for child in facts.children if child in self._loops)

    def is_training_loop(self, facts: LoopFacts) -> bool:
        """Its iteration backpropagates and steps, and no inner loop does both."""
        if not self._trains(facts):
            return False
        return not any(self._trains(self._loops[child]) for child in facts.children if child in self._loops)

    def _trains(self, facts: LoopFacts) -> bool:
        kinds = {op.kind for op in self._visited(facts)}
        return {OpKind.BACKWARD, OpKind.STEP} <= kinds

    def _visited(self, facts: LoopFacts) -> set[Op]:
        ops = set(facts.direct)
        for child in facts.children:
            if child in self._loops and child != id(facts.loop.node):
                ops |= self._loops[child].direct
        return ops

    def iteration_ops(self, facts: LoopFacts) -> frozenset[Op]:
        """Every op some iteration of the loop ran (nested loops and calls included)."""
        return self.memo(("iteration_ops", id(facts)), lambda: frozenset(self._iteration_ops(facts)))

    def _iteration_ops(self, facts: LoopFacts) -> frozenset[Op]:
        bits = 0
        for end in facts.ends:
            for level in end.state.loops:
                if level.loop == id(facts.loop.node):
                    bits |= level.may_bits
        return facts.table.decode(bits) | self._visited(facts)

    def iterates_data(self, loop: Loop) -> bool:
        node = loop.node
        if isinstance(node, cst.FunctionDef):
            return True  # a hook a library calls once per batch
        return any(is_loader(source, loop.module, self.ev) or _named_like_data(source) for source in data_sources(loop, self.ev))

    def clears(self, clear: Occurrence, optimizer: Key) -> Relation:
        """Whether a clear (as it ran) clears ``optimizer``'s gradients."""
        target = self._target(clear.op, clear.frame)
        return self.transfer.clears(target, optimizer, clear.op, list(clear.state.grads))

    # -- facts the transfer functions need ------------------------------------------------

    def _target(self, op: Op, frame: Frame) -> Key | None:
        return self.keys.key(op.target, op.module, frame) if op.target is not None else None

    def owners(self, optimizer: Key) -> tuple[Key, ...]:
        """The models whose ``parameters()`` an optimizer was built over (none: unknown)."""
        found = self._owners.get(optimizer)
        if found is None:
            found = ()
            for call, module in _constructions(optimizer, Kind.OPTIMIZER, self.ev):
                params = call_arg(call, 0, "params")
                models = _parameter_owners(params, module, self.ev, 0) if params is not None else []
                if models:
                    found = tuple(self.keys.key(model, module, None) for model in models)
                    break
            self._owners[optimizer] = found
        return found

    def _scheduled(self, op: Op, frame: Frame) -> Key | None:
        """The optimizer a scheduler was built for."""
        scheduler = self._target(op, frame)
        for call, module in _constructions(scheduler, Kind.SCHEDULER, self.ev) if scheduler is not None else ():
            position = 1 if terminal_name(call.func) == "get_scheduler" else 0
            optimizer = call_arg(call, position, "optimizer")
            if optimizer is not None:
                return self.keys.key(optimizer, module, None)
        return None

    def _graph(self, op: Op, frame: Frame, state: State) -> bool:
        def values(name: str) -> frozenset[Total]:
            return state.totals.get(variable(frame, name), frozenset())

        if op.operand is None:
            return False
        if "on" not in state.grad and (op.has(Flag.AUGMENTED) or not isinstance(op.operand, (cst.Name, cst.Attribute, cst.Subscript))):
            return False  # computed with gradients off (``total += loss`` too): no graph
        return holds_graph(op.operand, op.module, self.ev, values)

    def mode_initial(self, key: Key) -> frozenset[ModeV]:
        """How a module starts: in eval mode when loaded by ``from_pretrained`` or built by
        a wrapper whose constructor calls ``.eval()``; unknown when nothing says where it
        comes from (registered by ``setattr``); else in training mode."""
        known = self._initial_modes.get(key)
        if known is None:
            # A module nothing is known about is taken to start in training mode, the
            # default of a new module, but not as a certainty.
            known = self._initial_modes[key] = frozenset({ModeV(self._initial_mode(key), None, bool(key.values))})
        return known

    def _initial_mode(self, key: Key) -> str:
        modes = {self._mode_of_value(value) for value in key.values}
        modes.discard(None)
        if len(modes) == 1:
            return modes.pop()  # type: ignore[return-value]
        if modes:
            return "unknown"
        return "train"

    def _mode_of_value(self, value: object) -> str | None:
        if isinstance(value, Obj):
            if brains.starts_in_eval_mode(value.qualname):
                return "eval"
            return "train"
        if isinstance(value, Instance):
            return "eval" if self._constructor_calls_eval(value) else "train"
        return None

    def _constructor_calls_eval(self, instance: Instance) -> bool:
        """Inference wrappers (YOLOv5's ``DetectMultiBackend``) put what they load in eval
        mode in ``__init__``, themselves or through a loader function."""
        init = self.ev.method(instance.cls, "__init__")
        if init is None:
            return False
        calls = init.module.calls_by_function.get(init.node, [])
        if any(terminal_name(c.func) == "eval" for c in calls):
            return True
        return any(
            terminal_name(inner.func) == "eval"
            for c in calls
            for loader in self.ev.functions_called(c, init.module)
            for inner in loader.module.calls_by_function.get(loader.node, [])
        )

    # -- helpers for the interpreter ----------------------------------------------------

    def callee_frame(self, invoke: Invoke, function: FuncRef, frame: Frame) -> Frame:
        key = (id(invoke), id(frame), id(function.node))
        found = self._frames.get(key)
        if found is None:
            bindings = {**self._closure_bindings(invoke, function, frame), **_bindings(invoke, function, frame, self.ev)}
            found = self._frames[key] = Frame(function.node, function.module, frame, invoke.site, bindings, frame.depth + 1)
        return found

    def _closure_bindings(self, invoke: Invoke, function: FuncRef, frame: Frame) -> dict[str, tuple[cst.BaseExpression, ModuleModel, Frame | None]]:
        """A closure called after its factory returned (``step = make_step(model, optimizer)``
        then ``step(batch)``): the factory's parameters, which the closure reads, are bound to
        the arguments of the factory call that made it."""
        enclosing = function.module.enclosing_function(function.node)
        callee = invoke.callee
        if enclosing is None or frame.active(enclosing) or not isinstance(callee, cst.Name):
            return {}
        factories: list[tuple[cst.Call, FuncRef]] = []
        for binding in self.ev.reaching(callee, invoke.module):
            value = binding.value
            if binding.kind == "assign" and not binding.path and isinstance(value, cst.Call) and binding.scope_node is frame.function:
                made = [v for v in self.ev.eval(value.func, invoke.module) if isinstance(v, FuncRef) and v.node is enclosing]
                factories.extend((value, ref) for ref in made)
        if len(factories) != 1:
            return {}
        call, factory = factories[0]
        return _bindings(Invoke(call, invoke.module), factory, frame, self.ev)

    def targets(self, invoke: Invoke) -> list[FuncRef]:
        key = id(invoke)
        found = self._targets.get(key)
        if found is None:
            values = self.ev.eval(invoke.callee, invoke.module)
            found = []
            for value in values:
                if isinstance(value, FuncRef):
                    found.append(value)
                elif isinstance(value, ClassRef):
                    init = self.ev.method(value, "__init__")
                    if init is not None:
                        found.append(FuncRef(init.module, init.node, Instance(value, invoke.site, invoke.module)))
                elif isinstance(value, Instance):
                    # Callable objects run ``__call__``; a model's forward never clears,
                    # steps or backpropagates, so it is not entered.
                    method = self.ev.method(value.cls, "__call__")
                    if method is not None:
                        found.append(FuncRef(method.module, method.node, value))
            self._targets[key] = found
        return found

    def repeated_tests(self, block: Block, module: ModuleModel) -> frozenset[str]:
        """Conditions tested more than once in a body: their outcome is kept on each path,
        so that the second test agrees with the first."""
        found = self._repeated.get(id(block))
        if found is None:
            counts: dict[str, int] = {}
            for item in walk_items(block):
                if isinstance(item, Branch) and item.test is not None:
                    text = self.condition(item.test, module)[0]
                    counts[text] = counts.get(text, 0) + 1
            found = self._repeated[id(block)] = frozenset(text for text, count in counts.items() if count > 1)
        return found

    def acts(self, branch: Branch) -> bool:
        """Some alternative of the branch does training work: an op, or a call into code
        that does."""
        known = self._acting.get(id(branch))
        if known is None:
            known = self._acting[id(branch)] = any(self._works(alternative, 0) for alternative in branch.alternatives)
        return known

    def _works(self, block: Block, depth: int) -> bool:
        return self.reaches(block, frozenset(OpKind) - VALUE_OPS, depth)

    def reaches(self, block: Block, kinds: frozenset[OpKind] | set[OpKind], depth: int = 0) -> bool:
        """The block, or project code it calls (three calls deep), runs an op of ``kinds``."""
        for item in walk_items(block):
            if isinstance(item, Op) and item.kind in kinds:
                return True
            if isinstance(item, Invoke) and depth < 3:
                for target in self.targets(item):
                    key = (id(target.node), frozenset(kinds))
                    if key not in self._working:
                        self._working[key] = False  # recursion: nothing found on the way
                        self._working[key] = self.reaches(self.ir.function(target.node, target.module), kinds, depth + 1)
                    if self._working[key]:
                        return True
        return False

    def loops_in(self, function: cst.FunctionDef, module: ModuleModel) -> bool:
        return any(isinstance(item, Loop) for item in walk_items(self.ir.function(function, module)))

    def names_in(self, test: cst.BaseExpression) -> frozenset[str]:
        found = self._test_names.get(id(test))
        if found is None:
            found = self._test_names[id(test)] = frozenset(_names_in(test))
        return found

    def fact_text(self, text: str, frame: Frame) -> str:
        """A condition's text in the terms of the outermost caller: its root, while a
        parameter bound to a named argument, becomes the argument (``scaler`` -> the caller's
        ``self.scaler``); a root that is then a local variable of a function is qualified by
        that function's activation, so that its facts end with it."""
        text, home = outermost(text, frame)
        match = _ROOT.match(text)
        if home is not None and home.function is not None and match is not None and match.group(1) in _local_names(home.function, home.module):
            return variable(home, text)
        return text

    def from_unseen_caller(self, expr: cst.BaseExpression, frame: Frame) -> bool:
        """``expr`` is, in the outermost caller's terms, a parameter of a function that no
        visible code calls: what it holds is up to callers outside the project."""
        text = dotted(expr)
        if text is None:
            return False
        text, home = outermost(text, frame)
        match = _ROOT.match(text)
        if home is None or home.function is None or match is None:
            return False
        params = {p.name.value for p in (*home.function.params.posonly_params, *home.function.params.params, *home.function.params.kwonly_params)}
        return match.group(1) in params and not self.ev.call_sites(home.function, home.module)

    def condition(self, test: cst.BaseExpression, module: ModuleModel) -> tuple[str, bool]:
        found = self._conditions.get(id(test))
        if found is None:
            found = self._conditions[id(test)] = condition(test, module)
        return found

    def invocation(self, key: tuple[object, ...]) -> _Outcome | None:
        return self._invocations.get(key)

    def remember(self, key: tuple[object, ...], outcome: _Outcome) -> None:
        self._invocations[key] = outcome


class _Run:
    """One run of a root: executes IR blocks over lists of states."""

    def __init__(self, engine: Engine, root: Frame) -> None:
        self.engine = engine
        self.root = root

    def block(self, block: Block, states: list[State], frame: Frame | None = None) -> _Outcome:
        return self.items(block.items, states, frame or self.root)

    def items(self, items: list[Item], states: list[State], frame: Frame) -> _Outcome:
        outcome = _Outcome([])
        for item in items:
            if not states:
                break
            item_type = type(item)
            if item_type is Stmt:
                # The most common item: a statement with nothing in it for training.
                stmt: Stmt = item  # type: ignore[assignment]
                if stmt.recorded:
                    self.engine.record(stmt.node, states, frame)
                if not stmt.items:
                    continue
                step = self.items(stmt.items, states, frame)
            elif item_type is Op:
                op: Op = item  # type: ignore[assignment]
                self.engine.record_op(op, states, frame)
                states = [self.engine.transfer.apply(op, state, frame) for state in states]
                continue
            else:
                step = self.item(item, states, frame)
            for kind, exited in step.exits.items():
                outcome.add_exit(kind, exited)
            states = step.normal
        outcome.normal = states
        return outcome

    def item(self, item: Item, states: list[State], frame: Frame) -> _Outcome:
        if isinstance(item, (Stmt, Op)):
            return self.items([item], states, frame)
        if isinstance(item, Invoke):
            return self.invoke(item, states, frame)
        if isinstance(item, Block):
            return self.block(item, states, frame)
        if isinstance(item, Branch):
            return self.branch(item, states, frame)
        if isinstance(item, Loop):
            return self.loop(item, states, frame)
        if isinstance(item, Exit):
            outcome = _Outcome([])
            outcome.add_exit(item.kind, states)
            return outcome
        if isinstance(item, Region):
            return self.region(item, states, frame)
        assert isinstance(item, Try)
        return self.try_(item, states, frame)

    # -- calls ----------------------------------------------------------------------------

    def invoke(self, invoke: Invoke, states: list[State], frame: Frame) -> _Outcome:
        targets = [t for t in self.engine.targets(invoke) if not frame.active(t.node)]
        if not targets or frame.depth >= MAX_CALL_DEPTH:
            return _Outcome(states)
        results: list[State] = []
        outcome = _Outcome([])
        for function in targets:
            callee = self.engine.callee_frame(invoke, function, frame)
            self.engine._reached.add(id(function.node))
            key = (id(function.node), id(callee), tuple(s.identity() for s in states))
            done = self.engine.invocation(key)
            if done is None:
                body = self.engine.ir.function(function.node, function.module)
                inner = self.block(body, states, callee)
                # Conditions on the callee's own names mean nothing once it returns (its
                # next call binds them anew).
                local = _local_names(function.node, function.module)
                returned = [_drop_locals(_forget(s, callee), callee, local) for s in inner.normal + inner.exits.get("return", [])]
                done = _Outcome(returned, {"raise": inner.exits.get("raise", [])})
                self.engine.remember(key, done)
            results.extend(done.normal)
            outcome.add_exit("raise", done.exits.get("raise", []))
        outcome.normal = join(results, self.engine.mode_initial, self.engine.values)
        return outcome

    # -- branches -------------------------------------------------------------------------

    def branch(self, branch: Branch, states: list[State], frame: Frame) -> _Outcome:
        raw = self.engine.condition(branch.test, frame.module) if branch.test is not None else None
        # Facts are kept in the terms of the outermost caller: a helper's ``if scaler is not
        # None:`` tests its caller's ``scaler``, so the AMP sides of two helpers called with
        # the same argument never mix.
        test = (self.engine.fact_text(raw[0], frame), raw[1]) if raw is not None else None
        routed: list[list[State]] = [[] for _ in branch.alternatives]
        for state in states:
            tracked = raw is not None and self._tracked(branch, raw[0], state, frame)
            for index in self._feasible(branch, test, state, frame):
                routed[index].append(_assume(state, test, index) if tracked else state)  # type: ignore[arg-type]
        outcome = _Outcome([])
        normal: list[State] = []
        for alternative, inputs in zip(branch.alternatives, routed):
            if not inputs:
                continue
            result = self.block(alternative, inputs, frame)
            normal.extend(result.normal)
            for kind, exited in result.exits.items():
                outcome.add_exit(kind, exited)
        outcome.normal = join(normal, self.engine.mode_initial, self.engine.values)
        return outcome

    def _feasible(self, branch: Branch, test: tuple[str, bool] | None, state: State, frame: Frame) -> list[int]:
        every = list(range(len(branch.alternatives)))
        if branch.test is None or test is None or len(every) != 2:
            return every
        text, polarity = test
        for known, value, _ in state.facts:
            if known == text:
                return [0 if value == polarity else 1]
        outcome = self._counter_outcome(branch.test, state, frame)
        if outcome is not None:
            return [0 if outcome else 1]
        return every

    def _counter_outcome(self, test: cst.BaseExpression, state: State, frame: Frame) -> bool | None:
        """``if i == 0:`` in ``for i, x in enumerate(...)``: known on the first iteration."""
        for level in reversed(state.loops):
            facts = self.engine._loops.get(level.loop)
            if facts is None or not facts.loop.counters:
                continue
            if self.engine.names_in(test) & facts.loop.counters:
                return first_iteration(test, facts.loop.counters, level.first)
        return None

    def _tracked(self, branch: Branch, text: str, state: State, frame: Frame) -> bool:
        """Conditions worth keeping on each path: tested again later in the function, or a
        setting the loop does not change (``if use_amp:`` picks one side for every
        iteration, so the AMP and the fp32 branch never mix)."""
        if not self.engine.acts(branch):
            return False  # both sides leave training state alone: nothing to keep apart
        if state.loops:
            loop = self.engine._loops.get(state.loops[-1].loop)
            if loop is None or _words(text) & (loop.loop.assigned | loop.loop.counters):
                return False  # changes from one iteration to the next
        function = frame.function
        block = self.engine.ir.function(function, frame.module) if function is not None else self.engine.ir.module_code(frame.module)
        if text in self.engine.repeated_tests(block, frame.module):
            return True
        # A setting also outside loops: a step function called once per batch (the loop is
        # its caller's, or a library's) tests the same flags in the helpers it calls.
        return bool(state.loops) and branch.test is not None and _setting(branch.test)

    # -- loops ------------------------------------------------------------------------------

    def loop(self, loop: Loop, states: list[State], frame: Frame) -> _Outcome:
        facts = self.engine.enter_loop(loop, frame)
        try:
            return self._iterate(loop, facts, states, frame)
        finally:
            self.engine.leave_loop()

    def _iterate(self, loop: Loop, facts: LoopFacts, states: list[State], frame: Frame) -> _Outcome:
        mode_initial, values = self.engine.mode_initial, self.engine.values
        outcome = _Outcome([])
        head = [_enter(state, facts, True, values) for state in states]
        finished: list[State] = []
        seen: set[tuple[object, ...]] = set()
        for _ in range(MAX_FIXPOINT):
            result = self.block(loop.body, head, frame)
            ends = result.normal + result.exits.get("continue", [])
            for state in ends:
                self.engine._loops[id(loop.node)].ends.append(Snapshot(state, frame))
            finished.extend(ends)
            finished.extend(result.exits.get("break", []))
            for kind in ("return", "raise"):
                outcome.add_exit(kind, [_leave(s) for s in result.exits.get(kind, [])])
            head = join([_enter(state, facts, False, values) for state in ends], mode_initial, values)
            identities = {s.identity() for s in head}
            if identities <= seen:
                break
            seen |= identities
        normal = join([_leave(s) for s in finished], mode_initial, values)
        if loop.orelse is not None and normal:
            after = self.block(loop.orelse, normal, frame)
            for kind, exited in after.exits.items():
                outcome.add_exit(kind, exited)
            normal = after.normal
        outcome.normal = normal
        return outcome

    # -- regions and try --------------------------------------------------------------------

    def region(self, region: Region, states: list[State], frame: Frame) -> _Outcome:
        inside = [self._enter_region(region, state, frame) for state in states]
        result = self.block(region.body, inside, frame)
        grad = frozenset().union(*(s.grad for s in states))
        autocast = frozenset().union(*(s.autocast for s in states))
        gated = states[0].gated

        def restore(state: State) -> State:
            return state.with_(grad=grad, autocast=autocast, gated=gated)

        outcome = _Outcome(join([restore(s) for s in result.normal], self.engine.mode_initial, self.engine.values))
        for kind, exited in result.exits.items():
            outcome.add_exit(kind, [restore(s) for s in exited])
        return outcome

    def _enter_region(self, region: Region, state: State, frame: Frame) -> State:
        if region.kind is RegionKind.GRAD_OFF:
            return state.with_(grad=frozenset({"off"}))
        if region.kind is RegionKind.GRAD_ON:
            return state.with_(grad=frozenset({"on"}))
        if region.kind is RegionKind.GRAD_UNKNOWN:
            return state.with_(grad=frozenset({"on", "off"}))
        if region.kind is RegionKind.ACCUMULATE:
            return state.with_(gated=True)
        from trainlint.analysis.amp import autocast_dtype

        dtype = autocast_dtype(region.context, frame.module, self.engine.ev) if region.context is not None else None
        return state.with_(autocast=frozenset({dtype or "unknown"}))

    def try_(self, statement: Try, states: list[State], frame: Frame) -> _Outcome:
        body = self.block(statement.body, states, frame)
        outcome = _Outcome([])
        for kind, exited in body.exits.items():
            if kind != "raise" or not statement.handlers:
                outcome.add_exit(kind, exited)
        normal = body.normal
        if statement.orelse is not None and normal:
            after = self.block(statement.orelse, normal, frame)
            normal = after.normal
            for kind, exited in after.exits.items():
                outcome.add_exit(kind, exited)
        caught = join(states + body.normal + body.exits.get("raise", []), self.engine.mode_initial, self.engine.values)
        for handler in statement.handlers:
            result = self.block(handler, caught, frame)
            normal = normal + result.normal
            for kind, exited in result.exits.items():
                outcome.add_exit(kind, exited)
        normal = join(normal, self.engine.mode_initial, self.engine.values)
        if statement.finalbody is not None and normal:
            final = self.block(statement.finalbody, normal, frame)
            normal = final.normal
            for kind, exited in final.exits.items():
                outcome.add_exit(kind, exited)
        outcome.normal = normal
        return outcome


# -- loop entry and exit ------------------------------------------------------------------


def _enter(state: State, seen: LoopFacts, first: bool, values: Interner) -> State:
    """The state at the head of an iteration: a fresh iteration record; on later
    iterations, what was assigned in the body is from an earlier iteration and conditions
    on it no longer hold."""
    loop = seen.loop
    key = id(loop.node)
    stepped = _without_loop(state.stepped, 1, key)
    schedules = _without_loop(state.schedules, 2, key)
    if first:
        return state.with_(loops=(*state.loops, Iteration(key, True, seen.table)), stepped=stepped, schedules=schedules)
    loops = (*state.loops[:-1], Iteration(key, False, seen.table))
    facts = frozenset(fact for fact in state.facts if not (_words(fact[0]) & loop.assigned))
    totals = values.each(state.totals, "carried", _carried)
    return state.with_(loops=loops, facts=facts, totals=totals, stepped=stepped, schedules=schedules)


def _carried(total: Total) -> Total:
    return total._replace(carried=True)


def _leave(state: State) -> State:
    """Out of the loop: what was kept per iteration of it is over."""
    if not state.loops:
        return state
    key = state.loops[-1].loop
    return state.with_(loops=state.loops[:-1], stepped=_without_loop(state.stepped, 1, key), schedules=_without_loop(state.schedules, 2, key))


def _without_loop(entries: frozenset[E], position: int, loop: int) -> frozenset[E]:
    """The entries (``stepped``, ``schedules``) not about ``loop`` (the same set when none is)."""
    if not any(entry[position] == loop for entry in entries):  # type: ignore[index]
        return entries
    return frozenset(entry for entry in entries if entry[position] != loop)  # type: ignore[index]


def _unassigned_attribute(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``self.unet`` that no method of the class assigns: set by ``setattr`` or a registry."""
    if not (isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self"):
        return False
    cls = module.method_class(module.enclosing_function(expr))
    return cls is not None and not any(True for _ in ev.attribute_values(Instance(ClassRef(module, cls)), expr.attr.value))


def _local_names(function: cst.FunctionDef, module: ModuleModel) -> frozenset[str]:
    scope = module.scopes.get(function)
    return frozenset(scope.bindings) if scope is not None else frozenset()


def _forget(state: State, frame: Frame) -> State:
    """Conditions on a callee's own variables end with its activation."""
    if not state.facts:
        return state
    prefix = variable(frame, "")
    kept = frozenset(fact for fact in state.facts if not fact[0].startswith(prefix))
    return state.with_(facts=kept) if kept != state.facts else state


def _drop_locals(state: State, frame: Frame, names: frozenset[str]) -> State:
    """The callee's local variables (totals, containers, iterators) die when it returns:
    its next call starts them anew (a global it appends to lives on)."""
    dead = {variable(frame, name) for name in names}
    if not dead & {*state.totals, *state.iterators}:
        return state
    return state.with_(
        totals={name: values for name, values in state.totals.items() if name not in dead},
        iterators={name: values for name, values in state.iterators.items() if name not in dead},
    )


def _assume(state: State, test: tuple[str, bool], index: int) -> State:
    text, polarity = test
    if len(state.facts) >= MAX_FACTS:
        return state
    return state.with_(facts=state.facts | {(text, polarity if index == 0 else not polarity, len(state.loops))})


# -- conditions -----------------------------------------------------------------------------


def condition(test: cst.BaseExpression, module: ModuleModel) -> tuple[str, bool]:
    """A test as (text, polarity): ``not x`` and ``x is None`` are (``x``, False)."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        text, polarity = condition(test.expression, module)
        return text, not polarity
    if (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and literal_value(test.comparisons[0].comparator) is None
        and isinstance(test.comparisons[0].operator, (cst.Is, cst.IsNot, cst.Equal, cst.NotEqual))
    ):
        positive = isinstance(test.comparisons[0].operator, (cst.IsNot, cst.NotEqual))
        return _text(test.left, module), positive
    return _text(test, module), True




def outermost(text: str, frame: Frame) -> tuple[str, Frame | None]:
    """``text`` with its root, while a parameter bound to a named argument, replaced by
    the argument, and the frame whose terms the result is in."""
    current: Frame | None = frame
    while current is not None:
        match = _ROOT.match(text)
        bound = current.bindings.get(match.group(1)) if match is not None else None
        named = dotted(bound[0]) if bound is not None else None
        if match is None or bound is None or named is None:
            return text, current
        text = named + text[match.end(1) :]
        current = bound[2]
    return text, current


def _text(node: cst.CSTNode, module: ModuleModel) -> str:
    return dotted(node) or module.tree.code_for_node(node).strip()  # type: ignore[arg-type]


def _setting(test: cst.BaseExpression) -> bool:
    """A test of a flag or option: ``use_amp``, ``not args.fp32``, ``scaler is None``,
    ``args.precision == "fp16"``."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return _setting(test.expression)
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        other = test.comparisons[0].comparator
        return dotted(test.left) is not None and (literal_value(other) is not ... or dotted(other) is not None)
    return dotted(test) is not None and literal_value(test) is ...


def _words(text: str) -> set[str]:
    """Names a condition mentions: ``self.step`` counts as ``self.step`` and ``self``."""
    words = set(_WORD.findall(text))
    return words | {word.split(".")[0] for word in words}


def _names_in(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, cst.Name):
            names.add(current.value)
        elif isinstance(current, cst.Attribute):
            pending.append(current.value)
        else:
            pending.extend(iter_children(current))
    return names


def first_iteration(test: cst.BaseExpression, counters: frozenset[str], first: bool) -> bool | None:
    """The value of a test on a loop counter: with the counter at 0 on the first iteration,
    and at some value >= 1 later (``i == 0`` is then False, ``i % k == 0`` unknown)."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = first_iteration(test.expression, counters, first)
        return None if inner is None else not inner
    if isinstance(test, cst.Name) and test.value in counters:
        return not first  # ``if i:``
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return None
    left, comparison = test.left, test.comparisons[0]
    a = _counter_value(left, counters, first)
    b = _counter_value(comparison.comparator, counters, first)
    if a is None or b is None:
        return None
    operator = comparison.operator
    if first:
        if isinstance(a, int) and isinstance(b, int):
            return _compare(a, b, operator)
        return None
    # Later iterations: the counter is some value >= 1 ("pos"); only comparisons with 0 or 1 decide.
    if a == "pos" and isinstance(b, int):
        return _compare_positive(operator, b)
    if b == "pos" and isinstance(a, int):
        return _compare_positive(_mirrored(operator), a)
    return None


def _counter_value(expr: cst.BaseExpression, counters: frozenset[str], first: bool) -> int | str | None:
    if isinstance(expr, cst.Name) and expr.value in counters:
        return 0 if first else "pos"
    value = literal_value(expr)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if first and isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Modulo, cst.Multiply)):
        left = _counter_value(expr.left, counters, first)
        if left == 0:
            return 0  # 0 % k == 0 and 0 * k == 0 whatever k is
    return None


def _compare(a: int, b: int, operator: cst.BaseCompOp) -> bool | None:
    if isinstance(operator, cst.Equal):
        return a == b
    if isinstance(operator, cst.NotEqual):
        return a != b
    if isinstance(operator, cst.LessThan):
        return a < b
    if isinstance(operator, cst.LessThanEqual):
        return a <= b
    if isinstance(operator, cst.GreaterThan):
        return a > b
    if isinstance(operator, cst.GreaterThanEqual):
        return a >= b
    return None


def _compare_positive(operator: cst.BaseCompOp, value: int) -> bool | None:
    """``x <op> value`` for some unknown x >= 1."""
    if value <= 0:
        return _compare(1, value, operator) if not isinstance(operator, (cst.Equal, cst.NotEqual)) else isinstance(operator, cst.NotEqual)
    if value == 1 and isinstance(operator, (cst.GreaterThanEqual, cst.LessThan)):
        return isinstance(operator, cst.GreaterThanEqual)
    return None


_MIRRORED: dict[type[cst.BaseCompOp], cst.BaseCompOp] = {
    cst.LessThan: cst.GreaterThan(),
    cst.GreaterThan: cst.LessThan(),
    cst.LessThanEqual: cst.GreaterThanEqual(),
    cst.GreaterThanEqual: cst.LessThanEqual(),
}


def _mirrored(operator: cst.BaseCompOp) -> cst.BaseCompOp:
    """``0 < i`` is ``i > 0``."""
    return _MIRRORED.get(type(operator), operator)


# -- binding arguments ----------------------------------------------------------------------


def _bindings(invoke: Invoke, function: FuncRef, frame: Frame, ev: Evaluator) -> dict[str, tuple[cst.BaseExpression, ModuleModel, Frame | None]]:
    """The callee's parameters bound to the arguments of this call site."""
    node = function.node
    module = invoke.module
    params = [*node.params.posonly_params, *node.params.params]
    bindings: dict[str, tuple[cst.BaseExpression, ModuleModel, Frame | None]] = {}
    is_method = function.module.method_class(node) is not None and not any(dotted(d.decorator) == "staticmethod" for d in node.decorators)
    if is_method and params:
        receiver = _receiver(invoke, function)
        if receiver is not None:
            bindings[params[0].name.value] = (receiver, module, frame)
        params = params[1:]
    if invoke.func is not None:
        return bindings  # a closure: called without arguments
    positional = [arg for arg in invoke.site.args if arg.keyword is None]
    for param, arg in zip(params, positional):
        if arg.star:
            break
        bindings[param.name.value] = (arg.value, module, frame)
    names = {p.name.value for p in [*params, *node.params.kwonly_params]}
    for arg in invoke.site.args:
        if arg.keyword is not None and arg.keyword.value in names:
            bindings[arg.keyword.value] = (arg.value, module, frame)
    return bindings


def _receiver(invoke: Invoke, function: FuncRef) -> cst.BaseExpression | None:
    """What ``self`` is at this call: ``obj`` in ``obj.method()``, the new instance for
    ``Cls(...)``, the object itself for ``obj(...)``."""
    func = invoke.callee
    if function.node.name.value == "__init__":
        return invoke.site
    if function.node.name.value == "__call__":
        return func
    if isinstance(func, cst.Attribute):
        return func.value
    return None


def _constructions(key: Key, kind: Kind, ev: Evaluator) -> list[tuple[cst.Call, ModuleModel]]:
    """The calls that built an object of ``kind`` (library objects and project subclasses)."""
    found = []
    for value in key.values:
        if value_kind(value, ev) is not kind:
            continue
        if isinstance(value, Obj):
            found.append((value.call, value.module))
        elif isinstance(value, Instance) and value.site is not None and value.where is not None:
            found.append((value.site, value.where))
    return found


def _parameter_owners(params: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int) -> list[cst.BaseExpression]:
    """``model`` in ``model.parameters()``, also inside ``filter``/``list``/``chain``, summed
    lists, and through a variable bound to one of those."""
    if depth > 3:
        return []
    if isinstance(params, cst.Call):
        func = params.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters"):
            return [func.value]
        if terminal_name(func) in ("list", "filter", "tuple") and params.args:
            return _parameter_owners(params.args[-1].value, module, ev, depth + 1)
        if terminal_name(func) == "chain":
            return [owner for arg in params.args for owner in _parameter_owners(arg.value, module, ev, depth + 1)]
    if isinstance(params, cst.BinaryOperation) and isinstance(params.operator, cst.Add):
        return _parameter_owners(params.left, module, ev, depth + 1) + _parameter_owners(params.right, module, ev, depth + 1)
    if isinstance(params, cst.Name):
        bindings = [b for b in ev.reaching(params, module) if b.kind == "assign" and not b.path and b.value is not None]
        if len(bindings) == 1:
            return _parameter_owners(bindings[0].value, module, ev, depth + 1)  # type: ignore[arg-type]
    return []


def _named_like_data(expr: cst.BaseExpression) -> bool:
    name = (terminal_name(expr) or "").lower()
    if isinstance(expr, cst.Subscript):
        name = (terminal_name(expr.value) or "").lower()
    return "loader" in name or name.endswith(("_dl", "batches", "prefetcher")) or name in ("dl", "train_iter", "data_iter", "batch_iter")


__all__ = ["Engine", "LoopFacts", "Occurrence", "Snapshot"]

