"""The training IR: each function body reduced to what matters for training state.

Statements stay (so that the state before any statement can be asked for), but inside them
only the calls that change training state are kept, as :class:`Op`\\ s (clear, backward,
step, mode switch...), plus :class:`Invoke`\\ s of calls that may enter user code. Control
flow is kept as branches, loops, exits, ``try`` and ``with`` regions. The IR of a function
is built once and is context-free: which objects its operands denote is decided by the
engine, per call site (see keys.py).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Union

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import Kind
from trainlint.analysis.brains import accelerate as ACC
from trainlint.analysis.brains import timm as TIMM
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.values import Evaluator, FuncRef, Instance, Lit, Obj, call_arg, literal_value
from trainlint.analysis.walk import iter_children


class OpKind(str, enum.Enum):
    CLEAR = "clear"  # optimizer.zero_grad(), model.zero_grad(), p.grad = None
    BACKWARD = "backward"  # loss.backward(), torch.autograd.backward, accelerator.backward(loss)
    STEP = "step"  # optimizer.step(), scaler.step(optimizer)
    SCHEDULER_STEP = "scheduler_step"
    CLIP = "clip"  # clip_grad_norm_(params, max_norm)
    UNSCALE = "unscale"  # scaler.unscale_(optimizer)
    SCALER_UPDATE = "scaler_update"
    MODE = "mode"  # module.train() / module.eval()
    SET_EPOCH = "set_epoch"
    GRAD_ENABLED = "grad_enabled"  # torch.set_grad_enabled(flag) as a statement
    NEW_OPTIMIZER = "new_optimizer"  # an optimizer is constructed
    ASSIGN = "assign"  # name = value / name += value (running totals, carried state)
    # Values and modules across iterations (built in lifetimes.py):
    STORE = "store"  # losses.append(v), logs[k] = v, meter.update(v): a value kept in a container
    CARRY = "carry"  # out, h = rnn(x, h): recurrent state fed back into the call that updates it
    ITERATOR = "iterator"  # params = model.parameters(): a one-shot iterator bound (operand) or the name rebound
    CONSUME = "consume"  # a bound one-shot iterator iterated to its end (optimizer, clip, for, list...)
    FREEZE = "freeze"  # module.requires_grad_(False): mode "frozen" / "trainable"
    LOAD_WEIGHTS = "load_weights"  # a module's weights overwritten: mode "reset" (load_state_dict) / "update" (EMA)


# Ops about values and modules across iterations: they are recorded like the others, but a
# branch doing only these is no training work worth keeping its condition for.
VALUE_OPS = frozenset(
    {OpKind.STORE, OpKind.CARRY, OpKind.ITERATOR, OpKind.CONSUME, OpKind.FREEZE, OpKind.LOAD_WEIGHTS}
)


class Flag(str, enum.Enum):
    SCALED = "scaled"  # backward of scaler.scale(loss)
    FRAMEWORK = "framework"  # accelerator/engine/fabric backward: scales by itself
    AUGMENTED = "augmented"  # name += value
    RETAIN_GRAPH = "retain_graph"
    HAS_ARGS = "has_args"  # scheduler.step(epoch) / step(metric)
    UNSCALES = "unscales"  # a clip that unscales first (accelerator.clip_grad_norm_)
    MEASURE_ONLY = "measure_only"  # clip_grad_norm_(params, inf): computes the norm only
    MODEL = "model"  # zero_grad on a module rather than on an optimizer
    CLEARS = "clears"  # STORE: the container is emptied (losses.clear(), meter.reset())
    RECURRENT = "recurrent"  # CARRY: the new state is computed from the old one by a model (not detached)


@dataclass(eq=False)
class Op:
    """One training action. ``target`` is the object acted on (the optimizer, the model,
    the scaler...), ``operand`` the value involved (the loss of a backward, the value of an
    assignment), ``via`` the scaler of ``scaler.step(optimizer)``."""

    kind: OpKind
    node: cst.CSTNode
    module: ModuleModel
    target: cst.BaseExpression | None = None
    operand: cst.BaseExpression | None = None
    via: cst.BaseExpression | None = None
    mode: str | None = None  # MODE: "train" / "eval" / "unknown"; GRAD_ENABLED: "on"/"off"/"unknown"
    flags: frozenset[Flag] = frozenset()
    name: str | None = None  # ASSIGN/STORE: the variable

    def has(self, flag: Flag) -> bool:
        return flag in self.flags

    def __repr__(self) -> str:
        return f"Op({self.kind.value} at {self.module.where(self.node)})"


@dataclass(eq=False)
class Invoke:
    """A call that may enter user code: resolved by the engine (per call site). ``func``
    is what is called when it is not ``site.func`` (the closure of ``optimizer.step(closure)``,
    called without arguments)."""

    site: cst.Call
    module: ModuleModel
    func: cst.BaseExpression | None = None

    @property
    def callee(self) -> cst.BaseExpression:
        return self.func if self.func is not None else self.site.func


@dataclass(eq=False)
class Stmt:
    """A statement and, in evaluation order, the ops and invocations inside it.
    ``recorded``: the engine keeps the state before it (statements without a call are never
    asked about)."""

    node: cst.CSTNode
    items: list[Item]
    recorded: bool = True


@dataclass(eq=False)
class Block:
    items: list[Item] = field(default_factory=list)


@dataclass(eq=False)
class Branch:
    """Alternatives of which exactly one runs. ``test`` is the condition of an ``if`` (the
    first alternative runs when it holds), ``None`` for match cases and conditional
    expressions."""

    node: cst.CSTNode
    test: cst.BaseExpression | None
    alternatives: list[Block]


@dataclass(eq=False)
class Loop:
    node: cst.For | cst.While
    module: ModuleModel
    body: Block
    orelse: Block | None
    # Names that count iterations from 0 (``i`` in ``for i, x in enumerate(...)``).
    counters: frozenset[str]
    # Names assigned in the body: conditions on them change from one iteration to the next.
    assigned: frozenset[str]


@dataclass(eq=False)
class Exit:
    kind: str  # "return" | "raise" | "break" | "continue"
    node: cst.CSTNode


class RegionKind(str, enum.Enum):
    GRAD_OFF = "grad_off"
    GRAD_ON = "grad_on"
    GRAD_UNKNOWN = "grad_unknown"  # set_grad_enabled(flag)
    AUTOCAST = "autocast"
    ACCUMULATE = "accumulate"  # accelerator.accumulate(model): steps run only on sync steps


@dataclass(eq=False)
class Region:
    """The body of a ``with`` whose context changes training state."""

    kind: RegionKind
    node: cst.CSTNode
    context: cst.Call | None
    body: Block


@dataclass(eq=False)
class Try:
    body: Block
    handlers: list[Block]
    orelse: Block | None
    finalbody: Block | None


Item = Union[Op, Invoke, Stmt, Block, Branch, Loop, Exit, Region, Try]

# Exact node types (libcst's classes are ABCs: ``isinstance`` against them is slow).
_DEFINITIONS = frozenset({cst.FunctionDef, cst.ClassDef, cst.Lambda})
_TARGETED = frozenset({cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr})

# Terminal names of calls that can be training ops; anything else is only followed when it
# may enter user code.
_ACTION_NAMES = frozenset(
    {"zero_grad", "zero_", "backward", "step", "clip_grad_norm_", "clip_grad_value_", "clip_grad_norm",
     "unscale_", "update", "train", "eval", "set_epoch", "set_grad_enabled", "manual_backward", "clip_gradients"}
)
# Loop wrappers whose first argument is what is iterated.
ITERATION_WRAPPERS = frozenset({"enumerate", "tqdm", "iter", "zip", "islice", "track", "progress_bar", "log_every", "trange_wrapper"})
# Longer ``elif`` chains become one many-way branch.
MAX_NESTED_ELIF = 16
# Context managers by terminal name.
_GRAD_OFF_CONTEXTS = frozenset({"no_grad", "inference_mode"})
# Projects' own wrappers say so in their names: YOLOv5's ``smart_inference_mode``.
GRAD_OFF_SUFFIXES = ("_no_grad", "_inference_mode")


class IRBuilder:
    """Builds (once) the IR of module-level code and of each function."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.ev = evaluator
        self._functions: dict[int, Block] = {}
        self._decorated: dict[int, bool] = {}

    def function(self, function: cst.FunctionDef, module: ModuleModel) -> Block:
        key = id(function)
        block = self._functions.get(key)
        if block is None:
            self._functions[key] = Block()  # recursion through decorators: empty meanwhile
            block = _Build(self, module, function.body).suite(function.body)
            if self.decorated_grad_off(function, module):
                block = Block([Region(RegionKind.GRAD_OFF, function, None, block)])
            self._functions[key] = block
        return block

    def module_code(self, module: ModuleModel) -> Block:
        key = id(module.tree)
        block = self._functions.get(key)
        if block is None:
            block = self._functions[key] = _Build(self, module, module.tree).statements(module.tree.body)
        return block

    def decorated_grad_off(self, function: cst.FunctionDef, module: ModuleModel) -> bool:
        """``@torch.no_grad()``, ``@torch.inference_mode()``, or a project's own decorator
        built on them (YOLOv5's ``@smart_inference_mode()``)."""
        key = id(function)
        known = self._decorated.get(key)
        if known is None:
            known = self._decorated[key] = any(self._disables(d.decorator, module) for d in function.decorators)
        return known

    def _disables(self, decorator: cst.BaseExpression, module: ModuleModel) -> bool:
        if context_kind(decorator, module, self.ev) is RegionKind.GRAD_OFF:
            return True
        if isinstance(decorator, cst.Call):  # a factory: ``@smart_mode()``
            wrappers = self.ev.functions_called(decorator, module)
        else:
            wrappers = [v for v in self.ev.eval(decorator, module) if isinstance(v, FuncRef)]
        return any(_mentions_grad_off(wrapper.node) for wrapper in wrappers)


class _Build:
    """Builds the IR of one body. Assignments are kept only for ``accumulators``, the names
    the body adds to (``total += x``): a state holding every variable of a long script
    would cost more than it tells."""

    def __init__(self, builder: IRBuilder, module: ModuleModel, body: cst.CSTNode) -> None:
        from trainlint.analysis.lifetimes import ValueOps, tracked_names

        self.b = builder
        self.ev = builder.ev
        self.module = module
        tracked = tracked_names(body)
        # Containers get their assignments too: ``losses = []`` starts a new one.
        self.accumulators = _accumulators(body) | tracked.containers
        self.values = ValueOps(self, tracked)

    # -- statements -------------------------------------------------------------------

    def suite(self, suite: cst.BaseSuite) -> Block:
        if isinstance(suite, cst.SimpleStatementSuite):
            return Block([self._line(suite, list(suite.body))])
        return self.statements(suite.body)  # type: ignore[arg-type]

    def statements(self, statements: Sequence[cst.CSTNode]) -> Block:
        return Block([item for statement in statements for item in self._statement(statement)])

    def _statement(self, statement: cst.CSTNode) -> list[Item]:
        if isinstance(statement, cst.SimpleStatementLine):
            return [self._line(statement, list(statement.body))]
        if isinstance(statement, cst.If):
            return self._if(statement)
        if isinstance(statement, (cst.For, cst.While)):
            return self._loop(statement)
        if isinstance(statement, cst.With):
            return self._with(statement)
        if isinstance(statement, cst.Try) or (hasattr(cst, "TryStar") and isinstance(statement, cst.TryStar)):
            return [self._try(statement)]  # type: ignore[arg-type]
        if hasattr(cst, "Match") and isinstance(statement, cst.Match):
            subject = Stmt(statement, self.expression(statement.subject))
            return [subject, Branch(statement, None, [self.suite(case.body) for case in statement.cases])]
        return [Stmt(statement, [])]  # nested def/class: runs only when called

    def _line(self, node: cst.CSTNode, smalls: list[cst.BaseSmallStatement]) -> Stmt:
        items: list[Item] = []
        for small in smalls:
            items.extend(self._small(small))
        return Stmt(node, items, recorded=bool(items) or _has_call(node))

    def _if(self, statement: cst.If) -> list[Item]:
        """``if``/``elif``/``else``: a two-way branch per test, nested for ``elif``; a long
        ``elif`` chain (a dispatch table) becomes one many-way branch instead, so that a
        thousand branches neither recurse nor keep conditions apart."""
        chain: list[cst.If] = [statement]
        while isinstance(chain[-1].orelse, cst.If):
            chain.append(chain[-1].orelse)
        last = chain[-1].orelse
        tests: list[Item] = [Stmt(link, self.expression(link.test)) for link in chain]
        otherwise = self.suite(last.body) if isinstance(last, cst.Else) else Block()
        if len(chain) > MAX_NESTED_ELIF:
            alternatives = [self.suite(link.body) for link in chain] + [otherwise]
            return [*tests, Branch(statement, None, alternatives)]
        tail = otherwise
        for link in reversed(chain):
            body = self.suite(link.body)
            if not tail.items and _clears_only_existing_grads(link.test, body):
                # ``if p.grad is not None: p.grad.zero_()``: a missing gradient is a clear one.
                tail = Block([Stmt(link, self.expression(link.test)), *body.items])
                continue
            tail = Block([Stmt(link, self.expression(link.test)), Branch(link, link.test, [body, tail])])
        return tail.items

    def _loop(self, loop: cst.For | cst.While) -> list[Item]:
        header = loop.iter if isinstance(loop, cst.For) else loop.test
        body = self.suite(loop.body)
        orelse = self.suite(loop.orelse.body) if loop.orelse is not None else None
        counters = _counters(loop) if isinstance(loop, cst.For) else frozenset()
        node = Loop(loop, self.module, body, orelse, counters, _assigned_names(loop))
        return [Stmt(loop, [*self.expression(header), *self.values.loop_header(loop)]), node]

    def _with(self, statement: cst.With) -> list[Item]:
        header: list[Item] = []
        regions: list[tuple[RegionKind, cst.Call | None]] = []
        for with_item in statement.items:
            kind = context_kind(with_item.item, self.module, self.ev)
            if kind is None:
                header.extend(self.expression(with_item.item))
            else:
                call = with_item.item if isinstance(with_item.item, cst.Call) else None
                if call is not None:
                    header.extend(item for arg in call.args for item in self.expression(arg.value))
                regions.append((kind, call))
        body = self.suite(statement.body)
        for kind, call in reversed(regions):
            body = Block([Region(kind, statement, call, body)])
        return [Stmt(statement, header), *body.items]

    def _try(self, statement: cst.Try) -> Try:
        return Try(
            self.suite(statement.body),
            [self.suite(handler.body) for handler in statement.handlers],
            self.suite(statement.orelse.body) if statement.orelse is not None else None,
            self.suite(statement.finalbody.body) if statement.finalbody is not None else None,
        )

    def _small(self, small: cst.BaseSmallStatement) -> list[Item]:
        if isinstance(small, cst.Return):
            return [*(self.expression(small.value) if small.value is not None else []), Exit("return", small)]
        if isinstance(small, cst.Raise):
            return [*(self.expression(small.exc) if small.exc is not None else []), Exit("raise", small)]
        if isinstance(small, cst.Continue):
            return [Exit("continue", small)]
        if isinstance(small, cst.Break):
            return [Exit("break", small)]
        if isinstance(small, cst.Assign):
            return [*self.expression(small.value), *self._assignment(small), *self.values.assignment(small)]
        if isinstance(small, cst.AugAssign):
            items = self.expression(small.value)
            if isinstance(small.target, cst.Name) and small.target.value in self.accumulators:
                items.append(Op(OpKind.ASSIGN, small, self.module, small.target, small.value, flags=frozenset({Flag.AUGMENTED}), name=small.target.value))
            return items
        if isinstance(small, cst.AnnAssign) and small.value is not None and isinstance(small.target, cst.Name) and small.target.value in self.accumulators:
            return [*self.expression(small.value), Op(OpKind.ASSIGN, small, self.module, small.target, small.value, name=small.target.value)]
        if isinstance(small, cst.Expr):
            items = self.expression(small.value)
            grad = self._grad_statement(small.value)
            return [*items, grad] if grad is not None else items
        return self.expression(small)

    def _assignment(self, assign: cst.Assign) -> list[Item]:
        if _clears_by_assignment(assign):
            owner = assign.targets[0].target
            assert isinstance(owner, cst.Attribute)
            return [Op(OpKind.CLEAR, assign, self.module, owner.value, flags=frozenset({Flag.MODEL}))]
        return [
            self._assign_op(assign, target.target)
            for target in assign.targets
            if isinstance(target.target, cst.Name) and target.target.value in self.accumulators
        ]

    def _assign_op(self, assign: cst.Assign, target: cst.Name) -> Op:
        """``total = total + x`` accumulates like ``total += x``."""
        value = assign.value
        if (
            isinstance(value, cst.BinaryOperation)
            and isinstance(value.operator, cst.Add)
            and isinstance(value.left, cst.Name)
            and value.left.value == target.value
        ):
            return Op(OpKind.ASSIGN, assign, self.module, target, value.right, flags=frozenset({Flag.AUGMENTED}), name=target.value)
        return Op(OpKind.ASSIGN, assign, self.module, target, value, name=target.value)

    def _grad_statement(self, expr: cst.BaseExpression) -> Op | None:
        """``torch.set_grad_enabled(False)`` as a statement switches gradients until changed."""
        if not (isinstance(expr, cst.Call) and terminal_name(expr.func) == "set_grad_enabled"):
            return None
        if not self.ev.callee(expr, self.module) & T.SET_GRAD_ENABLED:
            return None
        flag = literal_value(call_arg(expr, 0, "mode") or cst.Name("None"))
        mode = "on" if flag is True else "off" if flag is False else "unknown"
        return Op(OpKind.GRAD_ENABLED, expr, self.module, mode=mode)

    # -- expressions ------------------------------------------------------------------

    def expression(self, expr: cst.CSTNode) -> list[Item]:
        """Ops and invocations in ``expr``, arguments before the call they are passed to;
        the arms of conditional expressions become branches. Lambdas are not entered."""
        items: list[Item] = []
        pending: list[tuple[cst.CSTNode, bool]] = [(expr, False)]
        while pending:
            node, done = pending.pop()
            if done:
                items.extend(self.call(node))  # type: ignore[arg-type]  # only calls are pushed so
                continue
            node_type = type(node)
            if node_type is cst.IfExp:
                assert isinstance(node, cst.IfExp)
                items.extend(self.expression(node.test))
                alternatives = [Block(self.expression(node.body)), Block(self.expression(node.orelse))]
                if alternatives[0].items or alternatives[1].items:
                    items.append(Branch(node, None, alternatives))
                continue
            if node_type is cst.BooleanOperation:
                assert isinstance(node, cst.BooleanOperation)
                items.extend(self.expression(node.left))
                right = self.expression(node.right)
                if right:
                    items.append(Branch(node, None, [Block(right), Block()]))
                continue
            if node_type in (cst.Lambda, cst.FunctionDef, cst.ClassDef):
                continue
            if node_type is cst.CompFor:
                items.extend(self.values.comprehension(node))  # type: ignore[arg-type]
            if node_type is cst.Call:
                pending.append((node, True))
            children = list(iter_children(node))
            pending.extend((child, False) for child in reversed(children))
        return items

    def call(self, call: cst.Call) -> list[Item]:
        return [*self.values.call(call), *self._training_call(call)]

    def _training_call(self, call: cst.Call) -> list[Item]:
        name = terminal_name(call.func)
        if name in _ACTION_NAMES:
            ops = self._classify(call, name)
            if ops is not None:
                return ops
        library = self._library_call(call)
        if library is not None:
            return library
        if self.ev.project.may_be_user_callable(call.func, self.module) or self._held_object(call.func):
            return [Invoke(call, self.module)]
        return []

    def _held_object(self, func: cst.BaseExpression) -> bool:
        """A call of an object held in a parameter, a local or ``self.<attr>``: it may be a
        callable object whose ``__call__`` does training work (a loss scaler)."""
        if isinstance(func, cst.Name):
            bindings = self.module.scope_of(func).bindings.get(func.value, [])
            return bool(bindings) and all(b.kind in ("param", "assign", "with") for b in bindings)
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            cls = self.module.method_class(self.module.enclosing_function(func))
            return cls is not None and func.attr.value in self.module.self_attrs.get(cls, {})
        return False

    # -- classifying calls ------------------------------------------------------------

    def _classify(self, call: cst.Call, name: str | None) -> list[Item] | None:
        """The ops a call with an action name performs; ``None`` when it is not one (it may
        still be a user function named ``train``)."""
        func = call.func
        qualnames = self.ev.callee(call, self.module)
        m = self.module
        if qualnames & T.CLIP_FUNCTIONS:
            return [Op(OpKind.CLIP, call, m, call_arg(call, 0, "parameters"), flags=_clip_flags(call))]
        if qualnames & T.BACKWARD_FUNCTIONS:
            return [Op(OpKind.BACKWARD, call, m, operand=call_arg(call, 0, "tensors"), flags=self._backward_flags(call, call_arg(call, 0, "tensors")))]
        if qualnames & T.SET_GRAD_ENABLED or not isinstance(func, cst.Attribute):
            return None
        if qualnames and not any(isinstance(v, (Obj, Instance)) for v in self.ev.eval(func.value, m)):
            return None  # a library function, not a method of an object
        receiver = func.value
        if name == "zero_grad":
            # An unknown receiver is taken for a model: which optimizers it clears is then
            # decided by what each optimizer was built over.
            flags = frozenset({Flag.MODEL}) if self.kind(receiver) is not Kind.OPTIMIZER else frozenset()
            return [Op(OpKind.CLEAR, call, m, receiver, flags=flags)]
        if name == "zero_" and _is_grad(receiver):
            return [Op(OpKind.CLEAR, call, m, _grad_owner(receiver), flags=frozenset({Flag.MODEL}))]
        if name in ("backward", "manual_backward"):
            return self._backward(call, receiver)
        if name in ("clip_grad_norm_", "clip_grad_value_", "clip_gradients"):
            flags = _clip_flags(call) | {Flag.UNSCALES}
            return [Op(OpKind.CLIP, call, m, call_arg(call, 0, "parameters"), flags=flags)]
        if name == "step":
            return self._step(call, receiver)
        if name == "unscale_" and self.kind(receiver) is Kind.SCALER:
            return [Op(OpKind.UNSCALE, call, m, call_arg(call, 0, "optimizer"), via=receiver)]
        if name == "update" and self.kind(receiver) is Kind.SCALER:
            return [Op(OpKind.SCALER_UPDATE, call, m, receiver)]
        if name in ("train", "eval"):
            return self._mode(call, receiver, name)
        if name == "set_epoch":
            return [Op(OpKind.SET_EPOCH, call, m, receiver)]
        return None

    def _backward(self, call: cst.Call, receiver: cst.BaseExpression) -> list[Item]:
        m = self.module
        kind = self.kind(receiver)
        if call.args and call.args[0].keyword is None and kind in (Kind.FRAMEWORK, None) and _framework_receiver(receiver, m, self.ev):
            # ``accelerator.backward(loss)``, ``engine.backward(loss)``: the framework scales.
            operand = call.args[0].value
            return [Op(OpKind.BACKWARD, call, m, operand=operand, flags=frozenset({Flag.FRAMEWORK}))]
        if terminal_name(call.func) == "manual_backward":
            return [Op(OpKind.BACKWARD, call, m, operand=call_arg(call, 0, "loss"), flags=frozenset({Flag.FRAMEWORK}))]
        if kind in (Kind.OPTIMIZER, Kind.SCHEDULER, Kind.LOADER, Kind.MODEL):
            return []
        return [Op(OpKind.BACKWARD, call, m, operand=receiver, flags=self._backward_flags(call, receiver))]

    def _backward_flags(self, call: cst.Call, operand: cst.BaseExpression | None) -> frozenset[Flag]:
        flags: set[Flag] = set()
        retain = call_arg(call, None, "retain_graph")
        if retain is not None and literal_value(retain) is not False:
            flags.add(Flag.RETAIN_GRAPH)
        if operand is not None and self._scaled(operand, 0):
            flags.add(Flag.SCALED)
        return frozenset(flags)

    def _scaled(self, expr: cst.BaseExpression, depth: int) -> bool:
        """``scaler.scale(loss)``, also through ``scaled = scaler.scale(loss)``."""
        if isinstance(expr, cst.Call):
            func = expr.func
            return isinstance(func, cst.Attribute) and func.attr.value == "scale"
        if isinstance(expr, cst.BinaryOperation):
            return self._scaled(expr.left, depth) or self._scaled(expr.right, depth)
        if isinstance(expr, cst.Name) and depth < 3:
            return any(
                b.value is not None and self._scaled(b.value, depth + 1)
                for b in self.ev.reaching(expr, self.module)
                if b.kind == "assign"
            )
        return False

    def _step(self, call: cst.Call, receiver: cst.BaseExpression) -> list[Item] | None:
        m = self.module
        kind = self.kind(receiver)
        if kind is Kind.SCALER:
            optimizer = call_arg(call, 0, "optimizer")
            return [*self._closure(call, 1), Op(OpKind.STEP, call, m, optimizer, via=receiver)]
        if kind is Kind.SCHEDULER:
            flags = frozenset({Flag.HAS_ARGS}) if call.args else frozenset()
            return [Op(OpKind.SCHEDULER_STEP, call, m, receiver, flags=flags)]
        if kind is Kind.OPTIMIZER:
            return [*self._closure(call, 0), Op(OpKind.STEP, call, m, receiver)]
        return None

    def _closure(self, call: cst.Call, position: int) -> list[Item]:
        """``optimizer.step(closure)``: the closure runs (clears, backward) before the step."""
        closure = call_arg(call, position, "closure")
        if closure is None:
            return []
        return [Invoke(call, self.module, closure)] if self._calls_user_function(closure) else []

    def _calls_user_function(self, expr: cst.BaseExpression) -> bool:
        return any(isinstance(v, FuncRef) for v in self.ev.eval(expr, self.module))

    def _mode(self, call: cst.Call, receiver: cst.BaseExpression, name: str) -> list[Item] | None:
        if self.ev.functions_called(call, self.module):
            return None  # a user method called train(): a training loop, entered as code
        if self.kind(receiver) in (Kind.OPTIMIZER, Kind.LOSS, Kind.SCHEDULER, Kind.LOADER, Kind.SCALER):
            return []  # schedule-free optimizers and losses have train()/eval() too
        if name == "eval":
            mode = "eval" if not call.args else "unknown"
        else:
            flag = call_arg(call, 0, "mode")
            value = literal_value(flag) if flag is not None else True
            mode = "train" if value is True else "eval" if value is False else "unknown"
        return [Op(OpKind.MODE, call, self.module, receiver, mode=mode)]

    def _library_call(self, call: cst.Call) -> list[Item] | None:
        """Library calls that perform training ops: optimizer construction, timm's loss
        scaler (scale, backward, unscale, clip, step and update in one call)."""
        func = call.func
        name = terminal_name(func)
        if name is None:
            return None
        m = self.module
        if name in T.OPTIMIZER_NAMES or name.startswith(("create_optimizer", "build_optimizer")):
            if any(brains.is_optimizer(q) for q in self.ev.callee(call, m)):
                return [Op(OpKind.NEW_OPTIMIZER, call, m, call_arg(call, 0, "params"))]
            return None
        if name[:1].islower() and "scaler" in name.lower():
            values = self.ev.eval(func, m)
            if any(isinstance(v, Obj) and v.qualname in TIMM.LOSS_SCALERS for v in values):
                optimizer = call_arg(call, 1, "optimizer")
                return [
                    Op(OpKind.BACKWARD, call, m, operand=call_arg(call, 0, "loss"), flags=frozenset({Flag.FRAMEWORK})),
                    Op(OpKind.STEP, call, m, optimizer),
                ]
        return None

    def kind(self, expr: cst.BaseExpression) -> Kind | None:
        return object_kind(expr, self.module, self.ev)


# -- shared classification helpers --------------------------------------------------------


def object_kind(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> Kind | None:
    """The kind of object ``expr`` is: by what built it, else by its name."""
    values = tuple(v for v in ev.eval(expr, module) if v != Lit(None))
    kinds = {value_kind(v, ev) for v in values}
    kinds.discard(None)
    if len(kinds) == 1:
        return kinds.pop()
    if kinds or any(isinstance(v, (FuncRef, Instance)) for v in values) or (values and not all(isinstance(v, Obj) for v in values)):
        return None
    return brains.kind_from_name(terminal_name(expr))


def value_kind(value: object, ev: Evaluator) -> Kind | None:
    """What a library object or an instance of a project class is (a project class is
    what its library base is: ``class LARS(torch.optim.Optimizer)`` is an optimizer)."""
    if isinstance(value, Obj):
        return brains.kind_of(value.qualname)
    if isinstance(value, Instance):
        kinds = {brains.base_kind(base) for base in ev.base_qualnames(value.cls)}
        kinds.discard(None)
        if len(kinds) == 1:
            return kinds.pop()
        return Kind.MODEL if ev.method(value.cls, "forward") is not None else None
    return None


def context_kind(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> RegionKind | None:
    """What a ``with`` context (or decorator) does to training state."""
    target = expr.func if isinstance(expr, cst.Call) else expr
    name = terminal_name(target) or ""
    if name in _GRAD_OFF_CONTEXTS or name.endswith(GRAD_OFF_SUFFIXES):
        return RegionKind.GRAD_OFF
    if name == "enable_grad":
        return RegionKind.GRAD_ON
    if name == "set_grad_enabled" and isinstance(expr, cst.Call):
        flag = literal_value(call_arg(expr, 0, "mode") or cst.Name("None"))
        return RegionKind.GRAD_OFF if flag is False else RegionKind.GRAD_ON if flag is True else RegionKind.GRAD_UNKNOWN
    if name == "autocast" and isinstance(expr, cst.Call) and ev.callee(expr, module) & T.AUTOCASTS:
        return RegionKind.AUTOCAST
    if name in ACC.ACCUMULATE_CONTEXTS and isinstance(target, cst.Attribute):
        if object_kind(target.value, module, ev) is Kind.FRAMEWORK:
            return RegionKind.ACCUMULATE
    return None


def iterated(loop: cst.For) -> cst.BaseExpression:
    """The data a ``for`` walks: ``loader`` in ``enumerate(tqdm(loader))``."""
    expr = loop.iter
    while isinstance(expr, cst.Call) and expr.args:
        if terminal_name(expr.func) not in ITERATION_WRAPPERS:
            break
        expr = expr.args[0].value
    return expr


def _counters(loop: cst.For) -> frozenset[str]:
    """``i`` in ``for i, x in enumerate(xs)`` and in ``for i in range(n)``."""
    iterable, target = loop.iter, loop.target
    if isinstance(iterable, cst.Call) and terminal_name(iterable.func) == "enumerate":
        start = call_arg(iterable, 1, "start")
        if start is not None and literal_value(start) != 0:
            return frozenset()
        if isinstance(target, (cst.Tuple, cst.List)) and target.elements and isinstance(target.elements[0].value, cst.Name):
            return frozenset({target.elements[0].value.value})
    if isinstance(iterable, cst.Call) and terminal_name(iterable.func) == "range" and len(iterable.args) == 1:
        if isinstance(target, cst.Name):
            return frozenset({target.value})
    return frozenset()


def _assigned_names(loop: cst.For | cst.While) -> frozenset[str]:
    names: set[str] = set()
    if isinstance(loop, cst.For):
        names.update(_target_names(loop.target))
    pending: list[cst.CSTNode] = [loop.body]
    while pending:
        node = pending.pop()
        kind = type(node)  # exact types: ``isinstance`` against libcst's ABCs is slow
        if kind is cst.Assign:
            for target in node.targets:  # type: ignore[attr-defined]
                names.update(_target_names(target.target))
        elif kind in _TARGETED:
            names.update(_target_names(node.target))  # type: ignore[attr-defined]
        elif kind in _DEFINITIONS:
            continue
        pending.extend(iter_children(node))
    return frozenset(names)


def _target_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _target_names(element.value)
    elif isinstance(target, (cst.Attribute, cst.Subscript)):
        text = dotted(target.value if isinstance(target, cst.Subscript) else target)
        if text:
            yield text


def _clears_only_existing_grads(test: cst.BaseExpression, body: Block) -> bool:
    """``if X.grad is not None:`` around clears of X's gradient."""
    if not (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, cst.IsNot)
        and literal_value(test.comparisons[0].comparator) is None
        and isinstance(test.left, cst.Attribute)
        and test.left.attr.value == "grad"
    ):
        return False
    owner = dotted(test.left.value)
    ops = [item for item in walk_items(body) if isinstance(item, Op)]
    return bool(ops) and all(op.kind is OpKind.CLEAR and op.target is not None and dotted(op.target) == owner for op in ops)


def _has_call(node: cst.CSTNode) -> bool:
    pending: list[cst.CSTNode] = [node]
    while pending:
        current = pending.pop()
        if type(current) is cst.Call:
            return True
        pending.extend(iter_children(current))
    return False


def _accumulators(body: cst.CSTNode) -> frozenset[str]:
    """Names a body adds to: ``total += x`` or ``total = total + x`` (nested definitions
    excluded)."""
    names: set[str] = set()
    pending: list[cst.CSTNode] = [body]
    while pending:
        node = pending.pop()
        kind = type(node)  # exact types: ``isinstance`` against libcst's ABCs is slow
        if kind is cst.AugAssign:
            assert isinstance(node, cst.AugAssign)
            if isinstance(node.target, cst.Name) and isinstance(node.operator, cst.AddAssign):
                names.add(node.target.value)
        elif kind is cst.Assign:
            assert isinstance(node, cst.Assign)
            if isinstance(node.value, cst.BinaryOperation) and isinstance(node.value.left, cst.Name) and isinstance(node.value.operator, cst.Add):
                names.update(t.target.value for t in node.targets if isinstance(t.target, cst.Name) and t.target.value == node.value.left.value)  # type: ignore[union-attr]
        elif kind in _DEFINITIONS and node is not body:
            continue
        pending.extend(iter_children(node))
    return frozenset(names)


def _clip_flags(call: cst.Call) -> frozenset[Flag]:
    """``clip_grad_norm_(params, float("inf"))`` only computes the norm (for logging)."""
    limit = call_arg(call, 1, "max_norm") or call_arg(call, 1, "clip_value")
    if limit is not None and _is_infinite(limit):
        return frozenset({Flag.MEASURE_ONLY})
    return frozenset()


def _is_infinite(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.Call) and dotted(expr.func) == "float" and expr.args:
        return literal_value(expr.args[0].value) in ("inf", "Inf", "+inf", "infinity")
    return dotted(expr) in ("math.inf", "float.inf", "torch.inf", "np.inf", "numpy.inf")


def _framework_receiver(receiver: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``accelerator.backward(loss)``, ``model_engine.backward(loss)``, ``fabric.backward(loss)``."""
    name = (dotted(receiver) or "").lower()
    if any(word in name for word in brains.FRAMEWORK_NAMES):
        return True
    return any(isinstance(v, Obj) and brains.is_framework(v.qualname) for v in ev.eval(receiver, module))


def _is_grad(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Attribute) and (
        expr.attr.value == "grad" or (expr.attr.value == "data" and isinstance(expr.value, cst.Attribute) and expr.value.attr.value == "grad")
    )


def _grad_owner(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """``p`` in ``p.grad.zero_()`` / ``p.grad.data.zero_()``."""
    while isinstance(expr, cst.Attribute) and expr.attr.value in ("grad", "data"):
        expr = expr.value
    return expr


def _clears_by_assignment(assign: cst.Assign) -> bool:
    """``p.grad = None``."""
    return (
        isinstance(assign.value, cst.Name)
        and assign.value.value == "None"
        and len(assign.targets) == 1
        and isinstance(assign.targets[0].target, cst.Attribute)
        and assign.targets[0].target.attr.value == "grad"
    )


def _mentions_grad_off(function: cst.FunctionDef) -> bool:
    """``torch.no_grad``/``inference_mode`` anywhere in the body, nested functions included:
    what a decorator (factory) that turns gradients off is built from."""
    pending: list[cst.CSTNode] = [function.body]
    while pending:
        node = pending.pop()
        if type(node) is cst.Name and node.value in _GRAD_OFF_CONTEXTS:  # type: ignore[attr-defined]
            return True
        pending.extend(iter_children(node))
    return False


def walk_items(block: Block) -> Iterator[Item]:
    """Every item of ``block``, nested ones included (not entering invoked functions)."""
    pending: list[Item] = [block]
    while pending:
        item = pending.pop()
        yield item
        if isinstance(item, (Block,)):
            pending.extend(reversed(item.items))
        elif isinstance(item, Stmt):
            pending.extend(reversed(item.items))
        elif isinstance(item, Branch):
            pending.extend(reversed(item.alternatives))
        elif isinstance(item, Loop):
            pending.append(item.body)
            if item.orelse is not None:
                pending.append(item.orelse)
        elif isinstance(item, Region):
            pending.append(item.body)
        elif isinstance(item, Try):
            pending.extend([item.body, *item.handlers, *(b for b in (item.orelse, item.finalbody) if b is not None)])
