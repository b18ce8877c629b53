"""Mixed-precision queries shared by the TL5xx rules: which backward passes are scaled,
which autocast regions run in float16, and how the deprecated ``torch.cuda.amp`` spellings
translate to ``torch.amp``.

Branches that test the same condition (``if scaler is not None:`` before the backward and
again before the step) are correlated: a path through the scaled backward of the first and
the plain ``optimizer.step()`` of the second never runs, so rules ask :func:`exclusive`
before pairing two events.
"""

from __future__ import annotations

import libcst as cst

from trainlint.analysis import catalog
from trainlint.analysis.flow import Event
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Evaluator, LibRef, Lit, call_arg, literal_value

MAX_BINDING_DEPTH = 3
# Libraries whose engines scale the loss inside their own backward().
FRAMEWORKS = ("accelerate.", "deepspeed.", "lightning.", "pytorch_lightning.")

AUTOCASTS = frozenset(
    {
        "torch.autocast",
        "torch.amp.autocast",
        "torch.amp.autocast_mode.autocast",
        "torch.cuda.amp.autocast",
        "torch.cuda.amp.autocast_mode.autocast",
        "torch.cpu.amp.autocast",
    }
)
FLOAT16 = frozenset({"torch.float16", "torch.half"})

# Deprecated callable → (its ``torch.amp`` replacement, its parameters in positional order).
# The replacement takes the device first, so positional arguments must become keywords.
DEPRECATED_AMP: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch.cuda.amp.autocast": ("autocast", ("enabled", "dtype", "cache_enabled")),
    "torch.cuda.amp.autocast_mode.autocast": ("autocast", ("enabled", "dtype", "cache_enabled")),
    "torch.cuda.amp.GradScaler": (
        "GradScaler",
        ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled"),
    ),
    "torch.cuda.amp.grad_scaler.GradScaler": (
        "GradScaler",
        ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled"),
    ),
}
DEPRECATED_MODULE = "torch.cuda.amp"
MODERN_MODULE = "torch.amp"

Guard = tuple[str, bool]


# -- scaled backward passes -------------------------------------------------------------------


def is_scaled_backward(event: Event, ev: Evaluator) -> bool:
    """``scaler.scale(loss).backward()``, also through ``scaled = scaler.scale(loss)`` and
    ``torch.autograd.backward(scaler.scale(loss))``."""
    if event.via_scaler:
        return True
    loss = _backward_operand(event.node)
    return loss is not None and _is_scaled(loss, event.module, ev, 0)


def _backward_operand(node: cst.CSTNode) -> cst.BaseExpression | None:
    if not isinstance(node, cst.Call):
        return None
    if isinstance(node.func, cst.Attribute) and node.func.attr.value == "backward":
        return node.func.value
    return call_arg(node, 0, "tensors")


def _is_scaled(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int) -> bool:
    if isinstance(expr, cst.Call):
        func = expr.func
        return isinstance(func, cst.Attribute) and func.attr.value == "scale"
    if isinstance(expr, cst.BinaryOperation):
        return _is_scaled(expr.left, module, ev, depth) or _is_scaled(expr.right, module, ev, depth)
    if isinstance(expr, cst.Name) and depth < MAX_BINDING_DEPTH:
        return any(
            binding.value is not None and _is_scaled(binding.value, module, ev, depth + 1)
            for binding in ev.reaching(expr, module)
            if binding.kind == "assign"
        )
    return False


def is_framework_backward(event: Event, ev: Evaluator) -> bool:
    """``accelerator.backward(loss)``, ``model_engine.backward(loss)``, ``fabric.backward(loss)``:
    the framework scales the loss itself."""
    node = event.node
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.args):
        return False
    receiver = node.func.value
    name = (dotted(receiver) or "").lower()
    if any(word in name for word in ("accelerator", "fabric", "engine", "trainer")):
        return True
    return any(obj.qualname.startswith(FRAMEWORKS) for obj in ev.objects(receiver, event.module))



# -- correlated branches ----------------------------------------------------------------------


def exclusive(first: Event, second: Event, block_module: ModuleModel) -> bool:
    """The two events sit on opposite sides of ``if``s testing the same condition."""
    flipped = {(test, not polarity) for test, polarity in _guards(first, block_module)}
    return bool(flipped & _guards(second, block_module))


def _guards(event: Event, block_module: ModuleModel) -> set[Guard]:
    guards = _node_guards(event.node, event.module)
    if event.site is not None:
        guards |= _node_guards(event.site, block_module)
    return guards


def _node_guards(node: cst.CSTNode, module: ModuleModel) -> set[Guard]:
    guards: set[Guard] = set()
    child = node
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.If) and child is not ancestor.test:
            test, polarity = _normalized(ancestor.test, module)
            guards.add((test, polarity if child is ancestor.body else not polarity))
        child = ancestor
    return guards


def _normalized(test: cst.BaseExpression, module: ModuleModel) -> Guard:
    """``not x`` / ``x is None`` → (``x``, False); ``x is not None`` → (``x``, True)."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner, polarity = _normalized(test.expression, module)
        return inner, not polarity
    if (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and literal_value(test.comparisons[0].comparator) is None
        and isinstance(test.comparisons[0].operator, (cst.Is, cst.IsNot))
    ):
        return module.tree.code_for_node(test.left).strip(), isinstance(test.comparisons[0].operator, cst.IsNot)
    return module.tree.code_for_node(test).strip(), True


def implied(event: Event, by: tuple[Event, ...], block_module: ModuleModel) -> bool:
    """Every condition guarding ``event`` also guards one of ``by``: whenever those run, so
    does ``event`` (``if scaler is not None: scaler.unscale_(opt)`` after a scaled backward
    written under the same test)."""
    known = set().union(*(_guards(other, block_module) for other in by))
    return _guards(event, block_module) <= known


def report_node(event: Event, module: ModuleModel) -> cst.CSTNode:
    """The event's own call when it is written in the file being checked, else the call
    of the helper that led to it."""
    return event.node if event.module is module else event.anchor


# -- autocast ---------------------------------------------------------------------------------


def autocast_dtype(call: cst.Call, module: ModuleModel, ev: Evaluator) -> str | None:
    """``"float16"`` when an autocast call certainly runs in float16, ``"other"`` when it
    certainly does not, ``None`` when it is not an autocast call or we cannot tell."""
    qualnames = ev.callee(call, module) & AUTOCASTS
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
    if names <= FLOAT16:
        return "float16"
    return "other" if not names & FLOAT16 else None


def _default_dtype(device: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> str | None:
    """CUDA autocast defaults to float16, CPU autocast to bfloat16."""
    direct = literal_value(device)
    values = (Lit(direct),) if direct is not ... else ev.eval(device, module)
    devices = {v.value for v in values if isinstance(v, Lit)}
    if not values or len(devices) != len(values):
        return None  # ``device.type`` or a config value: unknown
    if devices == {"cuda"}:
        return "float16"
    return "other" if "cuda" not in devices else None


def creates_grad_scaler(module: ModuleModel, ev: Evaluator) -> bool:
    return any(ev.callee(call, module) & catalog.GRAD_SCALERS for call in module.calls_by_name.get("GradScaler", []))


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
