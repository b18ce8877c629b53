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

from dataclasses import dataclass

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
# Uses that need nothing of the value but what a number has: tested, formatted, discarded,
# used as an index.
NUMBER_CONTEXTS = (cst.FormattedStringExpression, cst.If, cst.While, cst.Assert, cst.IfExp, cst.Expr, cst.Del, cst.Index)


@dataclass
class Uses:
    """``tensor``: some use needs a tensor (a tensor method or attribute, a torch function,
    a call the analysis cannot prove takes a number); ``graph``: the value, or one derived
    from it, is backpropagated or its graph is read; ``unknown``: it reaches code the
    analysis cannot see (a project function, an attribute, callers it cannot find)."""

    tensor: bool = False
    graph: bool = False
    unknown: bool = False


def variable_uses(name: str, statement: cst.CSTNode, module: ModuleModel, ev: Evaluator) -> Uses:
    """The uses of the local variable ``name`` that ``statement`` assigns, in its scope."""
    follower = _Follower(ev)
    follower.name(name, module.scope_of(statement).node, module, 0)
    return follower.uses


class _Follower:
    """Follows a value from use to use, recording what the uses need in ``uses``."""

    def __init__(self, ev: Evaluator) -> None:
        self.ev = ev
        self.uses = Uses()
        self._seen: set[tuple[int, str]] = set()
        # Parents of the nodes of the scopes walked: the module index skips f-strings.
        self._parents: dict[int, cst.CSTNode] = {}

    def escapes(self) -> None:
        self.uses.unknown = self.uses.tensor = True

    def parent(self, node: cst.CSTNode, module: ModuleModel) -> cst.CSTNode | None:
        return self._parents.get(id(node)) or module.parent_of(node)

    def name(self, name: str, scope: cst.CSTNode, module: ModuleModel, depth: int) -> None:
        """Every read of ``name`` in ``scope`` (nested functions and f-strings included)."""
        if (id(scope), name) in self._seen:
            return
        self._seen.add((id(scope), name))
        if depth > MAX_DEPTH:
            self.escapes()
            return
        for occurrence in self._occurrences(scope, name):
            parent = self._parents[id(occurrence)]
            if isinstance(parent, cst.NameItem):
                self.escapes()  # ``global total``: other functions use it too
            elif _loaded(parent, occurrence):
                self.value(occurrence, scope, module, depth)

    def _occurrences(self, scope: cst.CSTNode, name: str) -> list[cst.Name]:
        found: list[cst.Name] = []
        pending: list[cst.CSTNode] = [scope]
        while pending:
            node = pending.pop()
            for child in iter_children(node):
                self._parents[id(child)] = node
                if isinstance(child, cst.Name):
                    if child.value == name:
                        found.append(child)
                else:
                    pending.append(child)
        return found

    def value(self, expr: cst.CSTNode, scope: cst.CSTNode, module: ModuleModel, depth: int) -> None:
        """Record what the code around ``expr`` (the value or one derived from it) needs."""
        parent = self.parent(expr, module)
        if isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation, cst.Comparison, cst.ComparisonTarget, cst.BooleanOperation)):
            if not _formats(parent, expr):
                self.value(parent, scope, module, depth)  # ``total / n``, ``total < best``
        elif isinstance(parent, cst.Attribute) and parent.value is expr:
            self.attribute(parent, scope, module, depth)
        elif isinstance(parent, cst.Arg):
            call = self.parent(parent, module)
            if isinstance(call, cst.Call):
                self.argument(call, scope, module, depth)
            else:
                self.escapes()
        elif isinstance(parent, (cst.Element, cst.DictElement, cst.StarredElement, cst.StarredDictElement)):
            container = self.parent(parent, module)
            if container is not None:
                self.value(container, scope, module, depth)  # ``[total, n]``, ``{"loss": total}``
        elif isinstance(parent, cst.IfExp) and parent.test is not expr:
            self.value(parent, scope, module, depth)
        elif isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
            self.assigned(parent, scope, module, depth)
        elif isinstance(parent, cst.Return):
            self.returned(scope, module, depth)
        elif isinstance(parent, cst.Subscript) and parent.value is expr:
            self.uses.tensor = True
            self.value(parent, scope, module, depth)
        elif isinstance(parent, (cst.For, cst.CompFor)):
            self.uses.tensor = True  # iterated
        elif not isinstance(parent, NUMBER_CONTEXTS):
            self.escapes()  # yield, with, a lambda's body, await...

    def attribute(self, attribute: cst.Attribute, scope: cst.CSTNode, module: ModuleModel, depth: int) -> None:
        """``total.item()``, ``total.detach()``, ``total.backward()``, ``total.shape``."""
        self.uses.tensor = True
        name = attribute.attr.value
        if name in GRAPH_ATTRIBUTES:
            self.uses.graph = True
            return
        call = self.parent(attribute, module)
        if isinstance(call, cst.Call) and call.func is attribute and name not in DETACHING:
            self.value(call, scope, module, depth)  # ``total.mean()``: still a tensor with its graph

    def argument(self, call: cst.Call, scope: cst.CSTNode, module: ModuleModel, depth: int) -> None:
        """The value passed to a call: ``print(total)``, ``dist.all_reduce(total)``,
        ``accelerator.backward(total)``, ``losses.append(total)``, ``helper(total)``."""
        func = call.func
        called = terminal_name(func)
        builtin = isinstance(func, cst.Name) and not self.project_code(func, module)
        if called in PL.BACKWARD_METHODS or self.ev.callee(call, module) & BACKWARD_CALLS:
            self.uses.graph = self.uses.tensor = True
        elif builtin and called in NUMBER_SINKS:
            return
        elif isinstance(func, cst.Attribute) and called == "format" and isinstance(func.value, (cst.SimpleString, cst.ConcatenatedString)):
            return  # ``"{:.3f}".format(total)``
        elif builtin and called in PASSING:
            self.value(call, scope, module, depth)
        elif isinstance(func, cst.Attribute) and called in STORING:
            self.uses.tensor = True
            self.stored(func.value, scope, module, depth)
        elif self.project_code(func, module):
            self.escapes()  # its parameter's uses are not followed
        else:
            # A library call (``torch.stack``, ``dist.all_reduce``, ``writer.add_scalar``): a
            # float is not proven to do, and its result may carry the value on.
            self.uses.tensor = True
            self.value(call, scope, module, depth)

    def project_code(self, func: cst.BaseExpression, module: ModuleModel) -> bool:
        return any(isinstance(v, (FuncRef, ClassRef, Instance)) for v in self.ev.eval(func, module))

    def stored(self, container: cst.BaseExpression, scope: cst.CSTNode, module: ModuleModel, depth: int) -> None:
        """The value is kept in ``container``: the container's uses are the value's."""
        if isinstance(container, cst.Name):
            self.name(container.value, scope, module, depth + 1)
        else:
            self.uses.unknown = True  # ``self.history.append(total)``

    def assigned(
        self, statement: cst.Assign | cst.AnnAssign | cst.AugAssign | cst.NamedExpr, scope: cst.CSTNode, module: ModuleModel, depth: int
    ) -> None:
        """``avg = total / n``, ``best += total``, ``(avg := total / n)``: the name's uses."""
        targets: list[cst.BaseExpression] = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else [statement.target]
        for target in targets:
            if isinstance(target, cst.Name):
                self.name(target.value, scope, module, depth + 1)
            else:
                self.escapes()  # ``self.total = total``, ``a, b = total``

    def returned(self, scope: cst.CSTNode, module: ModuleModel, depth: int) -> None:
        """The value is returned: its uses are those of the calls of its function."""
        sites = self.ev.call_sites(scope, module) if isinstance(scope, cst.FunctionDef) else []
        if not sites or depth >= MAX_DEPTH:
            self.escapes()  # called from code the analysis does not see
        for call, caller in sites:
            self.value(call, caller.scope_of(call).node, caller, depth + 1)


def _loaded(parent: cst.CSTNode, name: cst.Name) -> bool:
    """``name`` reads the variable: it is not an attribute's or a keyword's name, nor a
    name being bound (``total = 0.0``, ``for total in``, ``def total``, ``import total``)."""
    if isinstance(parent, (cst.AssignTarget, cst.AsName, cst.ImportAlias, cst.FunctionDef, cst.ClassDef)):
        return False
    if isinstance(parent, cst.Param):
        return parent.name is not name  # a default value reads it
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
