"""Training actions in control flow: what a loop iteration or a function *does*, on which paths.

A block of statements is summarised as a small tree of the actions that matter for training
(clearing gradients, backward, optimizer / scheduler / scaler steps, clipping), with
branches, nested loops and early exits kept. Calls to user functions (a ``train_step``
helper, a model's ``forward``, an LBFGS closure) are expanded in place, so a helper called
from a loop counts as done by the loop. Paths through the tree answer "on every iteration?"
questions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Union

import libcst as cst

from trainlint.analysis import catalog
from trainlint.analysis.module import Loop, ModuleModel
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.values import Evaluator, FuncRef, Lit, Obj, call_arg
from trainlint.analysis.walk import calls_innermost_first

MAX_EXPANSION_DEPTH = 4
MAX_PATHS = 512
# Terminal names of the calls that can be training actions (see ``classify``).
ACTION_NAMES = frozenset(
    {"zero_grad", "zero_", "backward", "step", "clip_grad_norm_", "clip_grad_value_", "clip_grad_norm",
     "unscale_", "update"}
)


class Action(str, enum.Enum):
    CLEAR = "clear"  # zero_grad(), p.grad = None
    BACKWARD = "backward"
    STEP = "step"  # optimizer.step() or scaler.step(optimizer)
    SCHEDULER_STEP = "scheduler_step"
    CLIP = "clip"
    UNSCALE = "unscale"
    SCALER_UPDATE = "scaler_update"


@dataclass(frozen=True, eq=False)
class Event:
    """One training action. ``site`` is the call in the analysed block that led to it when
    it happens inside a helper (``None`` when it is written in the block itself)."""

    action: Action
    node: cst.CSTNode
    module: ModuleModel
    receiver: str | None = None
    site: cst.CSTNode | None = None
    via_scaler: bool = False

    @property
    def anchor(self) -> cst.CSTNode:
        """Where to report this event in the analysed block."""
        return self.site if self.site is not None else self.node


@dataclass(eq=False)
class Seq:
    items: list[Item] = field(default_factory=list)


@dataclass(eq=False)
class Branch:
    alternatives: list[Seq]


@dataclass(eq=False)
class LoopItem:
    node: Loop
    module: ModuleModel
    body: Seq


@dataclass(eq=False)
class Exit:
    kind: str  # "return" | "raise" | "break" | "continue"


Item = Union[Event, Seq, Branch, LoopItem, Exit]
Path = tuple[Event, ...]


class Flow:
    """Builds and queries action trees; memoized per function and loop."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.ev = evaluator
        self._functions: dict[int, Seq] = {}
        self._expanding: set[int] = set()
        self._batch: dict[int, bool] = {}
        self._loops: dict[int, Seq] = {}

    # -- building -----------------------------------------------------------------------

    def function_block(self, function: FuncRef) -> Seq:
        key = id(function.node)
        block = self._functions.get(key)
        if block is None:
            self._expanding.add(key)
            try:
                block = self._suite(function.node.body, function.module, 0)
            finally:
                self._expanding.discard(key)
            self._functions[key] = block
        return block

    def loop_body(self, loop: Loop, module: ModuleModel) -> Seq:
        key = id(loop)
        body = self._loops.get(key)
        if body is None:
            body = self._loops[key] = self._suite(loop.body, module, 0)
        return body

    def _suite(self, suite: cst.BaseSuite, module: ModuleModel, depth: int) -> Seq:
        if isinstance(suite, cst.SimpleStatementSuite):
            return Seq([item for small in suite.body for item in self._small(small, module, depth)])
        return self._statements(suite.body, module, depth)  # type: ignore[arg-type]

    def _statements(self, statements: list[cst.BaseStatement], module: ModuleModel, depth: int) -> Seq:
        items: list[Item] = []
        for statement in statements:
            items.extend(self._statement(statement, module, depth))
        return Seq(items)

    def _statement(self, statement: cst.CSTNode, module: ModuleModel, depth: int) -> list[Item]:
        if isinstance(statement, cst.SimpleStatementLine):
            return [item for small in statement.body for item in self._small(small, module, depth)]
        if isinstance(statement, cst.If):
            orelse = statement.orelse
            if isinstance(orelse, cst.If):
                other = Seq(self._statement(orelse, module, depth))
            elif isinstance(orelse, cst.Else):
                other = self._suite(orelse.body, module, depth)
            else:
                other = Seq()
            return [*self._calls_in(statement.test, module, depth),
                    Branch([self._suite(statement.body, module, depth), other])]
        if isinstance(statement, (cst.For, cst.While)):
            return [LoopItem(statement, module, self._suite(statement.body, module, depth))]
        if isinstance(statement, cst.With):
            header = [i for item in statement.items for i in self._calls_in(item.item, module, depth)]
            return [*header, *self._suite(statement.body, module, depth).items]
        if isinstance(statement, cst.Try):
            items = self._suite(statement.body, module, depth).items
            if statement.orelse is not None:  # runs when the body did not raise
                items = [*items, *self._suite(statement.orelse.body, module, depth).items]
            if statement.finalbody is not None:
                items = [*items, *self._suite(statement.finalbody.body, module, depth).items]
            return items
        if hasattr(cst, "Match") and isinstance(statement, cst.Match):
            return [Branch([self._suite(case.body, module, depth) for case in statement.cases])]
        return []  # nested def/class: runs only when called

    def _small(self, small: cst.BaseSmallStatement, module: ModuleModel, depth: int) -> list[Item]:
        if isinstance(small, cst.Return):
            calls = self._calls_in(small.value, module, depth) if small.value is not None else []
            return [*calls, Exit("return")]
        if isinstance(small, cst.Raise):
            return [Exit("raise")]
        if isinstance(small, cst.Continue):
            return [Exit("continue")]
        if isinstance(small, cst.Break):
            return [Exit("break")]
        if isinstance(small, cst.Assign) and _clears_by_assignment(small):
            return [Event(Action.CLEAR, small, module, _grad_owner(small))]
        return self._calls_in(small, module, depth)

    def _calls_in(self, node: cst.CSTNode, module: ModuleModel, depth: int) -> list[Item]:
        """Events of the calls inside an expression/statement, innermost-first order."""
        return [item for call in calls_innermost_first(node) for item in self._call(call, module, depth)]

    def _call(self, call: cst.Call, module: ModuleModel, depth: int) -> list[Item]:
        # Syntactic filters first: evaluating every call of every function is what would
        # make the linter slow, and only these names or user-defined callables can act.
        name = terminal_name(call.func)
        if name in ACTION_NAMES:
            event = self.classify(call, module)
            if event is not None:
                closure = self._closure_events(call, module, depth) if event.action is Action.STEP else []
                return [*closure, event]
        if depth >= MAX_EXPANSION_DEPTH or not self.ev.project.may_be_user_callable(call.func, module):
            return []
        return self._expand(call, module, depth)

    def _expand(self, call: cst.Call, module: ModuleModel, depth: int) -> list[Item]:
        """Inline the actions of user functions the call enters."""
        alternatives: list[Seq] = []
        for function in self.ev.functions_called(call, module):
            if function.node.name.value == "forward":
                continue  # a model's forward pass never clears, steps or backpropagates
            body = self._helper_block(function, depth + 1)
            if body is not None:
                alternatives.append(_relocate(body, call))
        alternatives = [_without_returns(alternative) for alternative in alternatives]
        if len(alternatives) > 1:
            return [Branch(alternatives)]
        return list(alternatives[0].items) if alternatives else []

    def _helper_block(self, function: FuncRef, depth: int) -> Seq | None:
        """A helper's block, built once (``None`` while it is being built: recursion)."""
        key = id(function.node)
        body = self._functions.get(key)
        if body is None:
            if key in self._expanding:
                return None
            self._expanding.add(key)
            try:
                body = self._suite(function.node.body, function.module, depth)
            finally:
                self._expanding.discard(key)
            self._functions[key] = body
        return body

    def _closure_events(self, call: cst.Call, module: ModuleModel, depth: int) -> list[Item]:
        """``optimizer.step(closure)``: the closure runs (clears, backward) before the step."""
        closure = call_arg(call, 0, "closure")
        if closure is None or depth >= MAX_EXPANSION_DEPTH:
            return []
        items: list[Item] = []
        for value in self.ev.eval(closure, module):
            body = self._helper_block(value, depth + 1) if isinstance(value, FuncRef) else None
            if body is not None:
                items.extend(_without_returns(_relocate(body, call)).items)
        return items

    # -- classifying calls ----------------------------------------------------------------

    def classify(self, call: cst.Call, module: ModuleModel) -> Event | None:
        """The training action a call performs directly, if any."""
        func = call.func
        qualnames = self.ev.callee(call, module)
        if qualnames & catalog.CLIP_FUNCTIONS:
            return Event(Action.CLIP, call, module)
        if qualnames & catalog.BACKWARD_FUNCTIONS:
            return Event(Action.BACKWARD, call, module)
        if not isinstance(func, cst.Attribute) or qualnames:
            return None
        method = func.attr.value
        receiver = func.value
        text = dotted(receiver)
        if method == "zero_grad":
            return Event(Action.CLEAR, call, module, text)
        if method == "zero_" and _is_grad(receiver):
            return Event(Action.CLEAR, call, module, _grad_owner_text(receiver))
        if method == "backward":
            return Event(Action.BACKWARD, call, module, text, via_scaler=_is_scaled(receiver))
        if method in ("clip_grad_norm_", "clip_grad_value_"):
            return Event(Action.CLIP, call, module, text)
        if method == "step":
            return self._classify_step(call, receiver, module)
        if method == "unscale_" and self._is_scaler(receiver, module):
            return Event(Action.UNSCALE, call, module, _arg_text(call))
        if method == "update" and self._is_scaler(receiver, module):
            return Event(Action.SCALER_UPDATE, call, module, text)
        return None

    def _classify_step(self, call: cst.Call, receiver: cst.BaseExpression, module: ModuleModel) -> Event | None:
        kind = self.object_kind(receiver, module)
        if kind == "scaler":
            return Event(Action.STEP, call, module, _arg_text(call), via_scaler=True)
        if kind == "scheduler":
            return Event(Action.SCHEDULER_STEP, call, module, dotted(receiver))
        if kind == "optimizer":
            return Event(Action.STEP, call, module, dotted(receiver))
        return None

    def object_kind(self, expr: cst.BaseExpression, module: ModuleModel) -> str | None:
        """``optimizer`` / ``scheduler`` / ``scaler`` / ``None`` for a receiver expression."""
        # ``scaler=None`` / ``scheduler=None`` parameters are optional objects, not another kind.
        values = tuple(v for v in self.ev.eval(expr, module) if v != Lit(None))
        for value in values:
            if isinstance(value, Obj):
                if value.qualname in catalog.GRAD_SCALERS:
                    return "scaler"
                if catalog.is_scheduler(value.qualname):
                    return "scheduler"
                if catalog.is_optimizer(value.qualname):
                    return "optimizer"
        if any(isinstance(v, FuncRef) for v in values) or (values and not all(isinstance(v, Obj) for v in values)):
            return None
        return _kind_from_name(terminal_name(expr))

    def _is_scaler(self, expr: cst.BaseExpression, module: ModuleModel) -> bool:
        return self.object_kind(expr, module) == "scaler"

    # -- queries --------------------------------------------------------------------------

    def events(self, block: Seq, nested_loops: bool = True) -> Iterator[Event]:
        for item in block.items:
            if isinstance(item, Event):
                yield item
            elif isinstance(item, Seq):
                yield from self.events(item, nested_loops)
            elif isinstance(item, Branch):
                for alternative in item.alternatives:
                    yield from self.events(alternative, nested_loops)
            elif isinstance(item, LoopItem) and nested_loops:
                yield from self.events(item.body, nested_loops)

    def nested_loops(self, block: Seq) -> Iterator[LoopItem]:
        for item in block.items:
            if isinstance(item, LoopItem):
                yield item
                yield from self.nested_loops(item.body)
            elif isinstance(item, Seq):
                yield from self.nested_loops(item)
            elif isinstance(item, Branch):
                for alternative in item.alternatives:
                    yield from self.nested_loops(alternative)

    def paths(self, block: Seq) -> list[Path]:
        """Every path through one execution of ``block`` (nested loops run once; paths that
        raise are dropped)."""
        running, exited = _run(block, [()])
        return _unique([*running, *(path for path, kind in exited if kind != "raise")])

    def is_batch_loop(self, loop: Loop, module: ModuleModel) -> bool:
        """Iterates a data loader, or steps an optimizer outside any nested loop."""
        key = id(loop)
        if key not in self._batch:
            self._batch[key] = self._iterates_loader(loop, module) or any(
                e.action is Action.STEP for e in self.events(self.loop_body(loop, module), nested_loops=False)
            )
        return self._batch[key]

    def is_epoch_loop(self, loop: Loop, module: ModuleModel) -> bool:
        """Not a batch loop itself, but runs one (directly or inside a called function)."""
        if self.is_batch_loop(loop, module):
            return False
        return any(self.is_batch_loop(inner.node, inner.module) for inner in self.nested_loops(self.loop_body(loop, module)))

    def _iterates_loader(self, loop: Loop, module: ModuleModel) -> bool:
        if not isinstance(loop, cst.For):
            return False
        iterable = _unwrap_iteration(loop.iter)
        if any(o.qualname in catalog.DATA_LOADERS for o in self.ev.objects(iterable, module)):
            return True
        name = (terminal_name(iterable) or "").lower()
        return "loader" in name or name.endswith(("_dl", "batches")) or name in ("dl", "train_iter")

    def training_loops(self, module: ModuleModel) -> list[tuple[Loop, Seq]]:
        """Innermost loops whose iteration runs both a backward pass and an optimizer step."""
        found: list[tuple[Loop, Seq]] = []
        for loop in module.loops:
            body = self.loop_body(loop, module)
            actions = {e.action for e in self.events(body)}
            if {Action.BACKWARD, Action.STEP} <= actions and not self._has_inner_training_loop(body):
                found.append((loop, body))
        return found

    def _has_inner_training_loop(self, body: Seq) -> bool:
        for inner in self.nested_loops(body):
            actions = {e.action for e in self.events(inner.body)}
            if {Action.BACKWARD, Action.STEP} <= actions:
                return True
        return False

    def frequency(self, node: cst.CSTNode, module: ModuleModel, depth: int = 0) -> str | None:
        """``"step"`` if ``node`` runs once per batch, ``"epoch"`` if once per epoch."""
        loops = module.enclosing_loops(node)
        if loops:
            innermost = loops[0]
            if self.is_batch_loop(innermost, module):
                return "step"
            if self.is_epoch_loop(innermost, module):
                return "epoch"
            return None
        function = module.enclosing_function(node)
        if function is None or depth >= 3:
            return None
        verdicts = {self.frequency(call, caller, depth + 1) for call, caller in self.ev.call_sites(function, module)}
        verdicts.discard(None)
        return verdicts.pop() if len(verdicts) == 1 else None


# -- helpers ---------------------------------------------------------------------------------


def _run(item: Item, states: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Abstractly execute ``item`` from ``states``: (paths still running, exited paths)."""
    if isinstance(item, Event):
        return [(*state, item) for state in states], []
    if isinstance(item, Exit):
        return [], [(state, item.kind) for state in states]
    if isinstance(item, Seq):
        exited: list[tuple[Path, str]] = []
        for inner in item.items:
            if not states:
                break
            states, out = _run(inner, states)
            exited.extend(out)
        return states, exited
    if isinstance(item, Branch):
        running: list[Path] = []
        exited = []
        for alternative in item.alternatives:
            alt_running, alt_exited = _run(alternative, states)
            running.extend(alt_running)
            exited.extend(alt_exited)
        return _unique(running), exited
    # A nested loop: assume it runs its body once; its break/continue resume after it.
    running, exited = _run(item.body, states)
    resumed = [path for path, kind in exited if kind in ("break", "continue")]
    return _unique([*running, *resumed]), [(p, k) for p, k in exited if k in ("return", "raise")]


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[tuple[int, ...]] = set()
    unique: list[Path] = []
    for path in paths:
        key = tuple(id(e) for e in path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
        if len(unique) >= MAX_PATHS:
            break
    return unique


def _relocate(block: Seq, site: cst.CSTNode) -> Seq:
    """Copy ``block`` with every event attributed to the call site ``site``."""
    items: list[Item] = []
    for item in block.items:
        if isinstance(item, Event):
            # The outermost call wins: nested helpers still report at the analysed block's call.
            items.append(replace(item, site=site))
        elif isinstance(item, Seq):
            items.append(_relocate(item, site))
        elif isinstance(item, Branch):
            items.append(Branch([_relocate(alt, site) for alt in item.alternatives]))
        elif isinstance(item, LoopItem):
            items.append(LoopItem(item.node, item.module, _relocate(item.body, site)))
        else:
            items.append(item)
    return Seq(items)


def _without_returns(block: Seq) -> Seq:
    """A helper's ``return`` ends the helper, not the caller's iteration."""
    items: list[Item] = []
    for item in block.items:
        if isinstance(item, Exit) and item.kind == "return":
            break
        if isinstance(item, Branch):
            # An early return inside a branch of a helper resumes the caller after the call.
            items.append(Branch([_without_returns(alt) for alt in item.alternatives]))
        else:
            items.append(item)
    return Seq(items)


def _kind_from_name(name: str | None) -> str | None:
    if not name:
        return None
    lowered = name.lower()
    if "scaler" in lowered:
        return "scaler"
    if "sched" in lowered or lowered in ("lr", "lr_sched", "warmup"):
        return "scheduler"
    if "optim" in lowered or lowered in ("opt", "optimiser") or lowered.startswith("opt_") or lowered.endswith("_opt"):
        return "optimizer"
    return None


def _unwrap_iteration(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``enumerate(tqdm(loader))`` → ``loader``."""
    while isinstance(expr, cst.Call) and expr.args:
        name = terminal_name(expr.func)
        if name not in ("enumerate", "tqdm", "iter", "zip", "islice", "track", "progress_bar", "log_every"):
            break
        expr = expr.args[0].value
    return expr


def _is_grad(expr: cst.BaseExpression) -> bool:
    text = dotted(expr) or ""
    return text.endswith(".grad") or ".grad." in text or text.endswith(".grad.data")


def _grad_owner_text(expr: cst.BaseExpression) -> str | None:
    text = dotted(expr) or ""
    return text.split(".grad")[0] or None


def _clears_by_assignment(assign: cst.Assign) -> bool:
    """``p.grad = None``."""
    return (
        isinstance(assign.value, cst.Name)
        and assign.value.value == "None"
        and any(isinstance(t.target, cst.Attribute) and t.target.attr.value == "grad" for t in assign.targets)
    )


def _grad_owner(assign: cst.Assign) -> str | None:
    target = assign.targets[0].target
    return dotted(target.value) if isinstance(target, cst.Attribute) else None


def _is_scaled(receiver: cst.BaseExpression) -> bool:
    """``scaler.scale(loss).backward()``."""
    return (
        isinstance(receiver, cst.Call)
        and isinstance(receiver.func, cst.Attribute)
        and receiver.func.attr.value == "scale"
    )


def _arg_text(call: cst.Call) -> str | None:
    first = call_arg(call, 0, "optimizer")
    return dotted(first) if first is not None else None
