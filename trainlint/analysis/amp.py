"""Mixed precision: which autocast regions run in float16, and how the deprecated
``torch.cuda.amp`` spellings translate to ``torch.amp``."""

from __future__ import annotations

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel, Scope
from trainlint.analysis.names import dotted, root_name
from trainlint.analysis.values import Evaluator, LibRef, Lit, call_arg, literal_value
from trainlint.analysis.walk import iter_children

DEPRECATED_AMP = T.DEPRECATED_AMP
DEPRECATED_MODULE = T.DEPRECATED_AMP_MODULE
MODERN_MODULE = T.MODERN_AMP_MODULE



# -- autocast ---------------------------------------------------------------------------------


def autocast_dtype(call: cst.Call, module: ModuleModel, ev: Evaluator) -> str | None:
    """``"float16"`` when an autocast call certainly runs in float16, ``"other"`` when it
    certainly does not, ``None`` when it is not an autocast call or we cannot tell."""
    qualnames = ev.callee(call, module) & T.AUTOCASTS
    if not qualnames:
        return None
    enabled = call_arg(call, None, "enabled")
    if enabled is not None and literal_value(enabled) is False:
        return "other"
    dtype = call_arg(call, None, "dtype")
    if dtype is not None:
        return _dtype_of(dtype, module, ev)
    if qualnames & {"torch.cuda.amp.autocast", "torch.cuda.amp.autocast_mode.autocast"}:
        return "float16"
    if qualnames == {"torch.cpu.amp.autocast"}:
        return "other"
    device = call_arg(call, 0, "device_type")
    return _default_dtype(device, module, ev) if device is not None else None


def _dtype_of(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> str | None:
    """Every value the dtype may take is float16 (``"float16"``), none is (``"other"``)."""
    values = ev.eval(expr, module)
    names = {v.qualname for v in values if isinstance(v, LibRef)}
    if not values or len(names) != len(values):
        return None  # a dict lookup, a config value: could be bfloat16
    if names <= T.FLOAT16:
        return "float16"
    return "other" if not names & T.FLOAT16 else None


def _default_dtype(device: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> str | None:
    """CUDA autocast defaults to float16, CPU autocast to bfloat16. A device that is CUDA
    whenever a GPU is there (``"cuda" if torch.cuda.is_available() else "cpu"``) trains in
    float16 where it matters."""
    devices = _device_names(device, module, ev, 0)
    if devices is None:
        return None  # a config value: unknown
    if "cuda" in devices:
        return "float16"
    return "other" if devices else None


def _device_names(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int) -> set[str] | None:
    """The device types an expression may name (``"cuda:0"`` is ``cuda``); ``None`` when
    some part is unknown."""
    direct = literal_value(expr)
    if isinstance(direct, str):
        return {direct.split(":")[0]}
    if depth > 4:
        return None
    if isinstance(expr, cst.IfExp):
        body, orelse = _device_names(expr.body, module, ev, depth + 1), _device_names(expr.orelse, module, ev, depth + 1)
        return body | orelse if body is not None and orelse is not None else None
    if isinstance(expr, cst.Call) and dotted(expr.func) in ("str", "torch.device") and expr.args:
        return _device_names(expr.args[0].value, module, ev, depth + 1)
    if isinstance(expr, cst.Attribute) and expr.attr.value == "type":
        return _device_names(expr.value, module, ev, depth + 1)
    if isinstance(expr, cst.Name):
        bindings = [b for b in ev.reaching(expr, module) if b.kind == "assign" and b.value is not None and not b.path]
        if not bindings:
            return None
        found: set[str] = set()
        for binding in bindings:
            names = _device_names(binding.value, module, ev, depth + 1)  # type: ignore[arg-type]
            if names is None:
                return None
            found |= names
        return found
    values = ev.eval(expr, module)
    names = {v.value.split(":")[0] for v in values if isinstance(v, Lit) and isinstance(v.value, str)}
    return names if values and len(names) == len(values) else None


def creates_grad_scaler(module: ModuleModel, ev: Evaluator) -> bool:
    return any(ev.callee(call, module) & T.GRAD_SCALERS for call in module.calls_by_name.get("GradScaler", []))


# -- version fallbacks -----------------------------------------------------------------------

# Exceptions that an import of a newer API falls back on.
FALLBACK_EXCEPTIONS = frozenset({"ImportError", "ModuleNotFoundError", "AttributeError"})
# Names of version checks: ``torch.__version__``, ``TORCH_VERSION``, ``is_torch_greater_or_equal``.
VERSION_WORDS = ("version", "torch_greater", "torch_less", "is_torch")


def version_fallback(node: cst.CSTNode, module: ModuleModel) -> bool:
    """The deprecated spelling sits where an older torch is expected: an ``except
    ImportError/AttributeError`` of a ``try`` of the new API, or a branch on
    ``hasattr(torch, "amp")`` or on the torch version (also through a flag such as
    ``TORCH_HAS_AMP = hasattr(torch, "amp")``); or it is a call through a name that such a
    fallback binds (``GradScaler()`` after ``try: from torch.amp import GradScaler except
    ImportError: from torch.cuda.amp import GradScaler``). Rewriting it would break old
    torch."""
    if _in_fallback(node, module):
        return True
    func = node.func if isinstance(node, cst.Call) else None
    root = root_name(func) if func is not None else None
    scope: Scope | None = module.scope_of(node) if root is not None else None
    while scope is not None and root is not None:
        if any(b.kind == "import" and _in_fallback(b.node, module) for b in scope.bindings.get(root, [])):
            return True
        scope = scope.parent
    return False


def _in_fallback(node: cst.CSTNode, module: ModuleModel) -> bool:
    child = node
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.ExceptHandler) and _catches_fallback(ancestor):
            return True
        if isinstance(ancestor, (cst.If, cst.IfExp)) and child is not ancestor.test and _checks_version(ancestor.test, module):
            return True
        if isinstance(ancestor, (cst.IndentedBlock, cst.Module)) and _after_exiting_check(ancestor, child, module):
            return True
        child = ancestor
    return False


def _after_exiting_check(block: cst.IndentedBlock | cst.Module, statement: cst.CSTNode, module: ModuleModel) -> bool:
    """``statement`` follows ``if hasattr(torch, "amp"): return ...`` in ``block``: it runs
    only when the check failed (an ``else`` written as an early exit)."""
    for earlier in block.body:
        if earlier is statement:
            return False
        if isinstance(earlier, cst.If) and _exits(earlier.body) and _checks_version(earlier.test, module):
            return True
    return False


def _exits(body: cst.BaseSuite) -> bool:
    last: cst.CSTNode | None = body.body[-1] if body.body else None
    if isinstance(last, cst.SimpleStatementLine):
        last = last.body[-1]
    return isinstance(last, (cst.Return, cst.Raise, cst.Continue, cst.Break))


def _catches_fallback(handler: cst.ExceptHandler) -> bool:
    kinds = handler.type
    names = [e.value for e in kinds.elements] if isinstance(kinds, cst.Tuple) else [kinds] if kinds is not None else []
    return any(dotted(name) in FALLBACK_EXCEPTIONS for name in names if name is not None)


def _checks_version(test: cst.BaseExpression, module: ModuleModel | None) -> bool:
    """``hasattr(torch, "amp")``, ``hasattr(torch.amp, "GradScaler")``, a comparison of
    ``torch.__version__`` or a version helper's result; with ``module``, also a name
    assigned one of those (``if TORCH_HAS_AMP:``)."""
    pending: list[cst.CSTNode] = [test]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Call) and dotted(node.func) == "hasattr" and node.args:
            target = dotted(node.args[0].value) or ""
            if target.split(".")[0] == "torch":
                return True
        text = dotted(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
        if text is not None and any(word in text.lower() for word in VERSION_WORDS):
            return True
        if isinstance(node, cst.Name) and module is not None and _names_a_check(node, module):
            return True
        pending.extend(iter_children(node))
    return False


def _names_a_check(name: cst.Name, module: ModuleModel) -> bool:
    """``name`` is assigned a version check in its scope or an enclosing one."""
    scope: Scope | None = module.scope_of(name)
    while scope is not None:
        bindings = scope.bindings.get(name.value)
        if bindings:
            return any(b.kind == "assign" and b.value is not None and _checks_version(b.value, None) for b in bindings)
        scope = scope.parent
    return False


# -- torch.cuda.amp → torch.amp -------------------------------------------------------------


def modern_call(call: cst.Call, qualname: str, module: ModuleModel) -> str | None:
    """The ``torch.amp`` spelling of a deprecated call: ``torch.cuda.amp.GradScaler(enabled=x)``
    → ``torch.amp.GradScaler("cuda", enabled=x)`` (``None`` with ``*args``/``**kwargs``)."""
    name, parameters = DEPRECATED_AMP[qualname]
    if any(arg.star for arg in call.args):
        return None
    arguments = ['"cuda"']
    position = 0
    for arg in call.args:
        value = module.tree.code_for_node(arg.value).strip()
        if arg.keyword is not None:
            arguments.append(f"{arg.keyword.value}={value}")
        elif position < len(parameters):
            arguments.append(f"{parameters[position]}={value}")
            position += 1
    return f"{_modern_callee(call.func, name, module)}({', '.join(arguments)})"


def _modern_callee(func: cst.BaseExpression, name: str, module: ModuleModel) -> str:
    """A bare name imported from ``torch.cuda.amp`` stays (its import is fixed); a dotted
    spelling drops ``cuda``; an alias of the module becomes ``torch.amp``."""
    text = module.tree.code_for_node(func).strip()
    if isinstance(func, cst.Name):
        return text
    if ".cuda.amp." in text:
        return text.replace(".cuda.amp.", ".amp.", 1)
    return f"{MODERN_MODULE}.{name}"


def deprecated_import(statement: cst.ImportFrom) -> bool:
    """``from torch.cuda.amp import autocast, GradScaler``."""
    if statement.module is None or statement.relative or isinstance(statement.names, cst.ImportStar):
        return False
    return dotted(statement.module) == DEPRECATED_MODULE and any(
        f"{DEPRECATED_MODULE}.{alias.name.value}" in DEPRECATED_AMP
        for alias in statement.names
        if isinstance(alias.name, cst.Name)
    )


def modern_import(statement: cst.ImportFrom, module: ModuleModel) -> str:
    text = module.tree.code_for_node(statement).strip()
    return text.replace(DEPRECATED_MODULE, MODERN_MODULE, 1)
