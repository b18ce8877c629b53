"""What the code does with a variable's value later: whether it needs a tensor, whether it is
backpropagated, and whether it leaves what the analysis can see.

A fix that turns a running total into a Python number (``total += loss.item()``) or cuts it
from its graph (``loss.detach()``) is safe only when every later use works the same on the
new value. The uses of the variable are followed through arithmetic, formatting, local
names it is assigned to, containers it is put into, and ``return`` to the visible callers
of its function. Every occurrence of the name in its scope counts (a reset followed by
other uses included): erring on the side of "used" only makes a fix more careful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from trainlint.analysis.brains import lightning as PL
from trainlint.analysis.brains import torch as T
from trainlint.analysis.lifetimes import STORING
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.values import ClassRef, Evaluator, FuncRef, Instance
from trainlint.analysis.walk import iter_children

# How many names, callers and containers a value is followed through.
MAX_DEPTH = 4
# Builtins that make a number or text of their argument: a float does as well as a tensor.
NUMBER_SINKS = frozenset({"print", "float", "int", "bool", "str", "repr", "format"})
# Builtins whose result is of their argument's kind (a tensor for a tensor).
PASSING = frozenset({"abs", "round", "min", "max", "sum", "sorted"})
# Attributes that read or extend the autograd graph.
GRAPH_ATTRIBUTES = frozenset({"backward", "requires_grad", "requires_grad_", "grad", "grad_fn", "is_leaf", "register_hook", "retain_grad"})
# Tensor methods whose result has no graph left (the value's kind stops mattering).
DETACHING = frozenset({"item", "tolist", "detach", "detach_", "numpy"})
BACKWARD_CALLS = T.BACKWARD_FUNCTIONS | T.GRAD_FUNCTIONS


@dataclass
class Uses:
    """``tensor``: some use needs a tensor (a tensor method or attribute, a torch function,
    a call the analysis cannot prove takes a number); ``graph``: the value, or one derived
    from it, is backpropagated or its graph is read; ``unknown``: it reaches code the
    analysis cannot see (a project function, an attribute, callers it cannot find)."""

    tensor: bool = False
    graph: bool = False
    unknown: bool = False
    _seen: set[tuple[int, str]] = field(default_factory=set, repr=False)
    _parents: dict[int, cst.CSTNode] = field(default_factory=dict, repr=False)


def variable_uses(name: str, statement: cst.CSTNode, module: ModuleModel, ev: Evaluator) -> Uses:
    """The uses of the local variable ``name`` that ``statement`` assigns, in its scope."""
    uses = Uses()
    _follow_name(uses, name, module.scope_of(statement).node, module, ev, 0)
    return uses


def _follow_name(uses: Uses, name: str, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int) -> None:
    if (id(scope), name) in uses._seen:
        return
    uses._seen.add((id(scope), name))
    if depth > MAX_DEPTH:
        uses.unknown = uses.tensor = True
        return
    for occurrence in _occurrences(uses, scope, name):
        parent = uses._parents[id(occurrence)]
        if isinstance(parent, cst.NameItem):
            uses.unknown = uses.tensor = True  # ``global total``: other functions use it too
        elif _loaded(parent, occurrence):
            _follow(uses, occurrence, scope, module, ev, depth)


def _occurrences(uses: Uses, scope: cst.CSTNode, name: str) -> list[cst.Name]:
    """Every ``name`` in ``scope`` (nested functions, lambdas and f-strings included), with
    the parents of the nodes on the way recorded (the module index skips f-strings)."""
    found: list[cst.Name] = []
    pending: list[cst.CSTNode] = [scope]
    while pending:
        node = pending.pop()
        for child in iter_children(node):
            uses._parents[id(child)] = node
            if isinstance(child, cst.Name):
                if child.value == name:
                    found.append(child)
            else:
                pending.append(child)
    return found


def _follow(uses: Uses, expr: cst.CSTNode, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int) -> None:
    """Record what the code around ``expr`` (the value or one derived from it) needs."""
    parent = uses._parents.get(id(expr)) or module.parent_of(expr)
    if isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation, cst.Comparison, cst.ComparisonTarget, cst.BooleanOperation)):
        if not _formats(parent, expr):
            _follow(uses, parent, scope, module, ev, depth)  # ``total / n``, ``total < best``
    elif isinstance(parent, cst.Attribute) and parent.value is expr:
        _attribute(uses, parent, scope, module, ev, depth)
    elif isinstance(parent, cst.Arg):
        call = uses._parents.get(id(parent)) or module.parent_of(parent)
        if isinstance(call, cst.Call):
            _argument(uses, call, scope, module, ev, depth)
        else:
            uses.unknown = uses.tensor = True
    elif isinstance(parent, (cst.Element, cst.DictElement, cst.StarredElement, cst.StarredDictElement)):
        container = uses._parents.get(id(parent)) or module.parent_of(parent)
        if container is not None:
            _follow(uses, container, scope, module, ev, depth)  # ``[total, n]``, ``{"loss": total}``
    elif isinstance(parent, cst.IfExp) and parent.test is not expr:
        _follow(uses, parent, scope, module, ev, depth)
    elif isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
        _assigned(uses, parent, scope, module, ev, depth)
    elif isinstance(parent, cst.Return):
        _returned(uses, scope, module, ev, depth)
    elif isinstance(parent, cst.Subscript) and parent.value is expr:
        uses.tensor = True
        _follow(uses, parent, scope, module, ev, depth)
    elif isinstance(parent, (cst.FormattedStringExpression, cst.If, cst.While, cst.Assert, cst.IfExp, cst.Expr, cst.Del, cst.SubscriptElement, cst.Index)):
        pass  # formatted, tested, discarded, or used as an index: a number does as well
    elif isinstance(parent, (cst.For, cst.CompFor)):
        uses.tensor = True  # iterated
    else:
        uses.unknown = uses.tensor = True  # yield, with, lambda body, await...


def _loaded(parent: cst.CSTNode, name: cst.Name) -> bool:
    """``name`` reads the variable: it is not an attribute's or a keyword's name, nor a
    name being bound (``total = 0.0``, ``for total in``, ``def total``, ``import total``)."""
    if isinstance(parent, (cst.AssignTarget, cst.Param, cst.AsName, cst.ImportAlias, cst.FunctionDef, cst.ClassDef)):
        return False
    if isinstance(parent, (cst.For, cst.CompFor)) and parent.target is name:
        return False
    if isinstance(parent, (cst.AugAssign, cst.AnnAssign, cst.NamedExpr)) and parent.target is name:
        return False  # ``total += x``: a binding of the variable, whose uses are all followed
    if isinstance(parent, cst.Attribute):
        return parent.attr is not name
    return not (isinstance(parent, cst.Arg) and parent.keyword is name)


def _formats(operation: cst.CSTNode, expr: cst.CSTNode) -> bool:
    """``"%.3f" % total``: old-style formatting makes text of the value."""
    return (
        isinstance(operation, cst.BinaryOperation)
        and isinstance(operation.operator, cst.Modulo)
        and operation.right is expr
        and isinstance(operation.left, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString))
    )


def _attribute(uses: Uses, attribute: cst.Attribute, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int) -> None:
    """``total.item()``, ``total.detach()``, ``total.backward()``, ``total.shape``."""
    uses.tensor = True
    name = attribute.attr.value
    if name in GRAPH_ATTRIBUTES:
        uses.graph = True
        return
    call = uses._parents.get(id(attribute)) or module.parent_of(attribute)
    if isinstance(call, cst.Call) and call.func is attribute and name not in DETACHING:
        _follow(uses, call, scope, module, ev, depth)  # ``total.mean()``: still a tensor with its graph


def _argument(uses: Uses, call: cst.Call, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int) -> None:
    """The value passed to a call: ``print(total)``, ``dist.all_reduce(total)``,
    ``accelerator.backward(total)``, ``losses.append(total)``, ``helper(total)``."""
    func = call.func
    called = terminal_name(func)
    if called in PL.BACKWARD_METHODS or ev.callee(call, module) & BACKWARD_CALLS:
        uses.graph = uses.tensor = True
    elif isinstance(func, cst.Name) and called in NUMBER_SINKS and not _project_code(func, module, ev):
        return
    elif isinstance(func, cst.Attribute) and called == "format" and isinstance(func.value, (cst.SimpleString, cst.ConcatenatedString)):
        return  # ``"{:.3f}".format(total)``
    elif isinstance(func, cst.Name) and called in PASSING and not _project_code(func, module, ev):
        _follow(uses, call, scope, module, ev, depth)
    elif isinstance(func, cst.Attribute) and called in STORING:
        uses.tensor = True
        _stored(uses, func.value, scope, module, ev, depth)
    elif _project_code(func, module, ev):
        uses.unknown = uses.tensor = True  # its parameter's uses are not followed
    else:
        # A library call (``torch.stack``, ``dist.all_reduce``, ``writer.add_scalar``): a
        # float is not proven to do, and its result may carry the value on.
        uses.tensor = True
        _follow(uses, call, scope, module, ev, depth)


def _project_code(func: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    return any(isinstance(v, (FuncRef, ClassRef, Instance)) for v in ev.eval(func, module))


def _stored(uses: Uses, container: cst.BaseExpression, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int) -> None:
    """The value is kept in ``container``: the container's uses are the value's."""
    if isinstance(container, cst.Name):
        _follow_name(uses, container.value, scope, module, ev, depth + 1)
    else:
        uses.unknown = True  # ``self.history.append(total)``


def _assigned(
    uses: Uses, statement: cst.Assign | cst.AnnAssign | cst.AugAssign | cst.NamedExpr, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int
) -> None:
    """``avg = total / n``, ``best += total``, ``(avg := total / n)``: the name's uses."""
    targets: list[cst.BaseExpression] = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else [statement.target]
    for target in targets:
        if isinstance(target, cst.Name):
            _follow_name(uses, target.value, scope, module, ev, depth + 1)
        else:
            uses.unknown = uses.tensor = True  # ``self.total = total``, ``a, b = total``


def _returned(uses: Uses, scope: cst.CSTNode, module: ModuleModel, ev: Evaluator, depth: int) -> None:
    """The value is returned: its uses are those of the calls of its function."""
    sites = ev.call_sites(scope, module) if isinstance(scope, cst.FunctionDef) else []
    if not sites or depth >= MAX_DEPTH:
        uses.unknown = uses.tensor = True  # called from code the analysis does not see
    for call, caller in sites:
        _follow(uses, call, caller.scope_of(call).node, caller, ev, depth + 1)
