from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.flow import Action, Flow
from trainlint.analysis.modes import disables_grad
from trainlint.analysis.module import Loop, ModuleModel
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.values import Evaluator, TensorV, call_arg
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

MAX_DEPTH = 4
# Calls that turn a tensor into a Python number or cut it from the graph.
DETACHING_METHODS = frozenset({"item", "detach", "detach_", "tolist", "numpy"})
DETACHING_FUNCTIONS = frozenset({"float", "int"})
# Tensor methods whose result stays in the graph of their receiver.
GRAPH_METHODS = frozenset(
    {"mean", "sum", "float", "double", "half", "clone", "to", "cpu", "cuda", "squeeze", "view", "reshape", "mul", "div", "add"}
)
# ``args.loss`` / ``self.loss`` are settings or attributes, not a model output's loss.
NOT_OUTPUTS = frozenset({"self", "args", "cfg", "config", "opt", "hparams"})


class LossAccumulatedAsTensor(Rule):
    code = "TL205"
    name = "loss-accumulated-as-tensor"
    severity = Severity.WARNING
    summary = "A running total adds the loss tensor itself, keeping every iteration's autograd graph alive."
    message = "the loss tensor is added to a running total, which keeps each iteration's graph in memory"
    hint = "Accumulate a number instead: `total += loss.item()` (or `loss.detach()` to stay on the device)."
    # The accumulated value is a loss: its name, or the loss call, mentions "loss".
    triggers = ("loss",)

    def check(self, ctx: Context) -> Iterator[Report]:
        checker = _Checker(ctx.model, ctx.evaluator, ctx.flow)
        for statement, target, value in _accumulations(ctx.model):
            loss = checker.leaked_loss(statement, target, value)
            if loss is not None:
                yield Report(
                    statement,
                    message=(
                        f"`{target.value}` accumulates the loss tensor `{_code(ctx.model, loss)}` across iterations: "
                        "each addition chains that iteration's autograd history onto the total, so memory grows with every step"
                    ),
                    hint=f"Add a number instead: `{target.value} += {_code(ctx.model, loss)}.item()` (or `.detach()` to stay on the device).",
                )


def _accumulations(module: ModuleModel) -> Iterator[tuple[cst.CSTNode, cst.Name, cst.BaseExpression]]:
    """``total += x`` and ``total = total + x``: (statement, accumulator, added value)."""
    for aug in module.aug_assigns:
        if isinstance(aug.operator, cst.AddAssign) and isinstance(aug.target, cst.Name):
            yield aug, aug.target, aug.value
    for assign in module.assigns:
        value = assign.value
        if len(assign.targets) != 1 or not isinstance(value, cst.BinaryOperation) or not isinstance(value.operator, cst.Add):
            continue
        target = assign.targets[0].target
        if isinstance(target, cst.Name) and isinstance(value.left, cst.Name) and value.left.value == target.value:
            yield assign, target, value.right


def _code(module: ModuleModel, node: cst.CSTNode) -> str:
    return module.tree.code_for_node(node).strip()


class _Checker:
    def __init__(self, module: ModuleModel, ev: Evaluator, flow: Flow) -> None:
        self.module = module
        self.ev = ev
        self.flow = flow

    def leaked_loss(self, statement: cst.CSTNode, target: cst.Name, value: cst.BaseExpression) -> cst.BaseExpression | None:
        """The part of ``value`` that is a loss with a graph, when ``statement`` adds it to an
        accumulator that outlives the iteration of a training loop."""
        loop = self._training_loop(statement)
        if loop is None or self._no_grad(statement):
            return None
        if self._reset_in_iteration(target, statement, loop) or target.value in self._backpropagated(statement):
            return None
        return self._graph_part(value, self._backpropagated(loop), 0)

    def _training_loop(self, node: cst.CSTNode) -> Loop | None:
        """The innermost loop around ``node`` whose iteration runs backward."""
        for loop in self.module.enclosing_loops(node):
            body = self.flow.loop_body(loop, self.module)
            if any(e.action is Action.BACKWARD for e in self.flow.events(body)):
                return loop
        return None

    def _no_grad(self, node: cst.CSTNode) -> bool:
        for ancestor in self.module.ancestors(node):
            if isinstance(ancestor, cst.With) and any(disables_grad(item.item) for item in ancestor.items):
                return True
            if isinstance(ancestor, cst.FunctionDef) and any(disables_grad(d.decorator) for d in ancestor.decorators):
                return True
        return False

    def _reset_in_iteration(self, target: cst.Name, statement: cst.CSTNode, loop: Loop) -> bool:
        """``total = ...`` earlier in the same iteration: the sum lives for one iteration only
        (``loss = a; loss += b`` builds one loss)."""
        for binding in self.module.scope_of(target).bindings.get(target.value, []):
            if (
                binding.kind in ("assign", "for", "with")
                and binding.node is not statement
                and self.module.is_within(binding.node, loop.body)
                and self.module.order_of(binding.node) < self.module.order_of(statement)
                and self.module.dominates(binding.node, statement)
            ):
                return True
        return False

    def _backpropagated(self, within: cst.CSTNode) -> set[str]:
        """Names ``backward()`` is called on inside ``within`` (or its function, for a statement)."""
        scope = self.module.enclosing_function(within) if not isinstance(within, (cst.For, cst.While)) else within
        names: set[str] = set()
        for call in self.module.calls_by_name.get("backward", []):
            if scope is not None and not self.module.is_within(call, scope):
                continue
            if scope is None and self.module.enclosing_function(call) is not None:
                continue
            backpropagated = _backward_operand(call)
            text = dotted(backpropagated) if backpropagated is not None else None
            if text:
                names.add(text)
        return names

    def _graph_part(self, expr: cst.BaseExpression, backpropagated: set[str], depth: int) -> cst.BaseExpression | None:
        """The sub-expression of ``expr`` that is a loss tensor still attached to its graph."""
        if depth > MAX_DEPTH or _detached(expr):
            return None
        if isinstance(expr, cst.BinaryOperation):
            return self._graph_part(expr.left, backpropagated, depth + 1) or self._graph_part(expr.right, backpropagated, depth + 1)
        if isinstance(expr, cst.UnaryOperation):
            return self._graph_part(expr.expression, backpropagated, depth + 1)
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in GRAPH_METHODS:
            return expr if self._graph_part(expr.func.value, backpropagated, depth + 1) is not None else None
        if _is_output_loss(expr) or self._is_loss_value(expr):
            return expr
        if isinstance(expr, cst.Name):
            return expr if self._name_is_graph(expr, backpropagated, depth) else None
        return None

    def _name_is_graph(self, name: cst.Name, backpropagated: set[str], depth: int) -> bool:
        values = [b.value for b in self.ev.reaching(name, self.module) if b.kind == "assign" and b.value is not None and not b.path]
        if any(_detached(value) for value in values):
            return False
        if name.value in backpropagated:
            return True
        return any(self._graph_part(value, backpropagated, depth + 1) is not None for value in values)

    def _is_loss_value(self, expr: cst.BaseExpression) -> bool:
        return any(isinstance(v, TensorV) and v.kind == "loss" for v in self.ev.eval(expr, self.module))


def _backward_operand(call: cst.Call) -> cst.BaseExpression | None:
    """``loss`` in ``loss.backward()``, ``scaler.scale(loss).backward()``, ``accelerator.backward(loss)``."""
    func = call.func
    if isinstance(func, cst.Attribute):
        receiver = func.value
        if isinstance(receiver, cst.Call) and terminal_name(receiver.func) == "scale":
            return call_arg(receiver, 0, "outputs")
        # ``loss.backward(retain_graph=True)`` passes no positional tensor.
        return call_arg(call, 0, None) or receiver
    return call_arg(call, 0, "tensors")


def _detached(expr: cst.BaseExpression) -> bool:
    """A plain number or an explicitly detached tensor."""
    if isinstance(expr, (cst.Integer, cst.Float)):
        return True
    if isinstance(expr, cst.Attribute):
        return expr.attr.value == "data"
    if not isinstance(expr, cst.Call):
        return False
    func = expr.func
    if isinstance(func, cst.Name):
        return func.value in DETACHING_FUNCTIONS
    return isinstance(func, cst.Attribute) and (func.attr.value in DETACHING_METHODS or _detached(func.value))


def _is_output_loss(expr: cst.BaseExpression) -> bool:
    """``outputs.loss`` / ``outputs["loss"]`` of a model output (Hugging Face style)."""
    if isinstance(expr, cst.Attribute):
        return expr.attr.value == "loss" and isinstance(expr.value, cst.Name) and expr.value.value not in NOT_OUTPUTS
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        index = expr.slice[0].slice
        return (
            isinstance(index, cst.Index)
            and isinstance(index.value, cst.SimpleString)
            and index.value.evaluated_value == "loss"
        )
    return False

