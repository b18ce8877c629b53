"""Whether a value is a tensor still attached to an autograd graph (a loss, a model output)
or a detached one / a Python number."""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from trainlint.analysis.brains import transformers as HF
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.state import Total
from trainlint.analysis.values import Evaluator, FuncRef, TensorV
from trainlint.analysis.walk import iter_children

MAX_DEPTH = 4
# Calls that turn a tensor into a Python number or cut it from the graph.
DETACHING_METHODS = frozenset({"item", "detach", "detach_", "tolist", "numpy", "cpu_numpy"})
DETACHING_FUNCTIONS = frozenset({"float", "int", "bool"})
# Tensor methods whose result stays in the graph of their receiver.
GRAPH_METHODS = frozenset(
    {"mean", "sum", "float", "double", "half", "clone", "to", "cpu", "cuda", "squeeze", "view", "reshape", "mul",
     "div", "add", "sub", "pow", "abs", "sqrt", "exp", "log", "unsqueeze", "flatten", "max", "min"}
)
# ``args.loss`` / ``self.loss`` are settings or attributes, not a model output's loss.
NOT_OUTPUTS = frozenset({"self", "args", "cfg", "config", "opt", "hparams", "params", "hp", "conf"})

Variable = Callable[[str], frozenset[Total]]


def holds_graph(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, variable: Variable) -> bool:
    """Some part of ``expr`` is a tensor with an autograd history. ``variable`` tells what
    a local name holds at this point (from the engine's state)."""
    return graph_part(expr, module, ev, variable) is not None


def graph_part(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, variable: Variable, depth: int = 0) -> cst.BaseExpression | None:
    """The sub-expression of ``expr`` that is a tensor still attached to its graph."""
    if depth > MAX_DEPTH or detached(expr):
        return None
    if isinstance(expr, cst.BinaryOperation):
        return graph_part(expr.left, module, ev, variable, depth + 1) or graph_part(expr.right, module, ev, variable, depth + 1)
    if isinstance(expr, cst.UnaryOperation):
        return graph_part(expr.expression, module, ev, variable, depth + 1)
    if isinstance(expr, (cst.List, cst.Tuple, cst.Dict)):  # ``{"loss": loss, "acc": acc}``
        parts = (graph_part(e.value, module, ev, variable, depth + 1) for e in expr.elements)
        return next((part for part in parts if part is not None), None)
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in GRAPH_METHODS:
        return expr if graph_part(expr.func.value, module, ev, variable, depth + 1) is not None else None
    if output_loss(expr) or is_loss_value(expr, module, ev):
        return expr
    if isinstance(expr, cst.Name):
        if _backpropagated_in_function(expr, module):
            return expr  # ``loss.backward()`` in the same function: it is a loss
        known = variable(expr.value)
        if known:
            return expr if any(total.graph for total in known) else None
        values = [b.value for b in ev.reaching(expr, module) if b.kind == "assign" and b.value is not None and not b.path]
        return expr if any(graph_part(value, module, ev, variable, depth + 1) is not None for value in values) else None
    return None


def is_loss_value(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    return any(isinstance(v, TensorV) and v.kind == "loss" for v in ev.eval(expr, module))


def detached(expr: cst.BaseExpression) -> bool:
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
    return isinstance(func, cst.Attribute) and (func.attr.value in DETACHING_METHODS or detached(func.value))


def detaching_call(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    """A call whose result is cut from the graph: ``h.detach()``, or a project function
    that returns only detached values (``repackage_hidden(h)``, recursively over tuples)."""
    if detached(call):
        return True
    functions = [v for v in ev.eval(call.func, module) if isinstance(v, FuncRef)]
    return bool(functions) and all(_returns_detached(f.node) for f in functions)


def own_returns(function: cst.FunctionDef) -> list[cst.Return]:
    """The return statements of a function (not of functions nested in it)."""
    return [node for node in _own_nodes(function) if isinstance(node, cst.Return)]


def _returns_detached(function: cst.FunctionDef) -> bool:
    returns = own_returns(function)
    return bool(returns) and all(r.value is not None and _detached_value(r.value, function, 0) for r in returns)


def _detached_value(expr: cst.BaseExpression, function: cst.FunctionDef, depth: int) -> bool:
    """``h.detach()``, ``Variable(h.data)``, ``tuple(f(v) for v in h)`` with ``f`` the
    function itself, tuples of those."""
    if depth > MAX_DEPTH:
        return False
    if detached(expr):
        return True
    if isinstance(expr, (cst.Tuple, cst.List)):
        return bool(expr.elements) and all(_detached_value(e.value, function, depth + 1) for e in expr.elements)
    if isinstance(expr, (cst.GeneratorExp, cst.ListComp)):
        return _detached_value(expr.elt, function, depth + 1)
    if isinstance(expr, cst.Call) and expr.args:
        name = expr.func.value if isinstance(expr.func, cst.Name) else None
        if name == function.name.value:
            return True  # recursion over the items of a tuple of states
        if name in ("tuple", "list", "Variable"):
            return _detached_value(expr.args[0].value, function, depth + 1)
    return False


def _own_nodes(function: cst.FunctionDef) -> list[cst.CSTNode]:
    """Nodes of a function body, nested definitions excluded."""
    found: list[cst.CSTNode] = []
    pending: list[cst.CSTNode] = [function.body]
    while pending:
        node = pending.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        found.append(node)
        pending.extend(iter_children(node))
    return found


def output_loss(expr: cst.BaseExpression) -> bool:
    """``outputs.loss`` / ``outputs["loss"]`` / ``model(**batch).loss`` of a model output
    (Hugging Face style)."""
    if isinstance(expr, cst.Attribute):
        owner = expr.value
        return expr.attr.value in HF.OUTPUT_LOSS_ATTRIBUTES and (isinstance(owner, cst.Call) or (isinstance(owner, cst.Name) and owner.value not in NOT_OUTPUTS))
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        index = expr.slice[0].slice
        return (
            isinstance(index, cst.Index)
            and isinstance(index.value, cst.SimpleString)
            and index.value.evaluated_value in HF.OUTPUT_LOSS_ATTRIBUTES
        )
    return False


def _backpropagated_in_function(name: cst.Name, module: ModuleModel) -> bool:
    """``name.backward()`` in the same function, or ``loss = name + reg; loss.backward()``:
    what is backpropagated (or summed into it) is a tensor with a graph."""
    names = module.cached("backpropagated_names", lambda: _backpropagated_names(module))
    return name.value in names.get(module.enclosing_function(name), frozenset())


def _backpropagated_names(module: ModuleModel) -> dict[cst.FunctionDef | None, frozenset[str]]:
    """Per function: the names backpropagated there, or summed into one that is."""
    targets: dict[cst.FunctionDef | None, set[str]] = {}
    for call in module.calls_by_name.get("backward", []):
        if isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Name):
            targets.setdefault(module.enclosing_function(call), set()).add(call.func.value.value)
    names = {function: set(found) for function, found in targets.items()}
    for assign in module.assigns:
        function = module.enclosing_function(assign)
        summed = targets.get(function)
        if summed and any(isinstance(t.target, cst.Name) and t.target.value in summed for t in assign.targets):
            names[function] |= _added_names(assign.value)
    return {function: frozenset(values) for function, values in names.items()}


def _added_names(expr: cst.BaseExpression) -> set[str]:
    """Names summed into an expression: ``raw_loss`` in ``raw_loss + alpha * reg``."""
    if isinstance(expr, cst.Name):
        return {expr.value}
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract)):
        return _added_names(expr.left) | _added_names(expr.right)
    return set()
