"""Model outputs on a batch, and where their classes are.

A flat ``argmax()`` or a ``softmax(dim=0)`` is only wrong on a tensor whose first axis is
the batch, and only known to be wrong when something says which axis holds the classes.
Both are decided here:

- *a batch*: what a loop draws from a DataLoader (whose batch size is not 1), or the batch a
  library hands to ``training_step``, followed through unpacking, ``batch[0]`` /
  ``batch["x"]`` and device or dtype moves. Indexing a tensor of the batch (``x[0]``) gives
  one sample, and anything computed by other code is unknown: no longer a batch.
- *a batch output*: the value of a model called on a batch, through local names,
  ``.logits``, tuple unpacking, ``detach``/``cpu`` and softmax/sigmoid activations.
- *its class axis*: the same output is the input of a classification loss (classes on
  dim 1), or its classes are picked with ``argmax(d)``/``max(d)``/``topk(k, d)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import Kind
from trainlint.analysis.brains import torch as T
from trainlint.analysis.data import unwrapped
from trainlint.analysis.engine import Engine
from trainlint.analysis.ir import iterated
from trainlint.analysis.losses import loss_calls
from trainlint.analysis.module import Binding, ModuleModel
from trainlint.analysis.models import is_model
from trainlint.analysis.names import root_name, terminal_name
from trainlint.analysis.training import is_model_call, model_expression
from trainlint.analysis.values import ClassRef, Evaluator, FuncRef, Instance, LibRef, Obj, call_arg, literal_value, return_statements
from trainlint.analysis.walk import iter_children

MAX_DEPTH = 6
# Methods that keep a tensor's axes (device and dtype moves, copies, flattening the features).
KEEPS_AXES = frozenset(
    {"to", "cuda", "cpu", "float", "half", "double", "bfloat16", "long", "int", "contiguous", "type", "detach",
     "clone", "view", "reshape", "flatten", "requires_grad_", "view_as", "reshape_as"}
)
# Parameters of library-driven hooks that receive the batch (``training_step(self, batch, batch_idx)``,
# ``compute_loss(self, model, inputs)``, ignite's ``step(engine, batch)``).
BATCH_PARAMETERS = frozenset({"batch", "inputs", "data", "train_batch", "val_batch", "test_batch"})
# Activations that keep the output's axes: ``F.softmax(outputs, dim=1).argmax()``.
ACTIVATIONS = frozenset(T.TENSOR_FUNCTION_KINDS) | frozenset({"torch.nn.functional.relu"})
CLASSIFICATION_LOSSES = T.CROSS_ENTROPY | T.NLL
SOFTMAX_FUNCTIONS = frozenset(q for q, kind in T.TENSOR_FUNCTION_KINDS.items() if kind in ("probs", "log_probs"))
SOFTMAX_METHODS = frozenset(m for m, kind in T.TENSOR_METHOD_KINDS.items() if kind in ("probs", "log_probs"))
SOFTMAX_LAYERS = frozenset(q for q, kind in T.MODULE_CLASS_KINDS.items() if kind in ("probs", "log_probs") and "2d" not in q)
# Methods picking classes along an axis, and the position of their ``dim``.
CLASS_PICKERS = {"argmax": 0, "max": 0, "topk": 1, "argsort": 0, "argmin": 0, "min": 0}

# Levels of batch-derived values: the batch as the loader yields it (a tuple, a dict, a
# tensor) or one of its tensors.
CONTAINER, TENSOR = "container", "tensor"


@dataclass(frozen=True)
class BatchOutput:
    """``expr`` holds what ``call`` (a model called on a batch) returned."""

    expr: cst.BaseExpression
    call: cst.Call


def batch_output(expr: cst.BaseExpression, module: ModuleModel, engine: Engine) -> BatchOutput | None:
    """The model call on a batch whose output ``expr`` is, with the axes kept."""
    call = _output_call(expr, module, engine, 0)
    return BatchOutput(expr, call) if call is not None else None


def class_axis(output: BatchOutput, module: ModuleModel, engine: Engine) -> int | None:
    """The axis holding the classes of a batch output, when something says it: the output
    (or the name holding it) feeds a classification loss (dim 1), or is reduced over its
    classes with ``argmax(d)``, ``max(d)``, ``topk(k, d)``."""
    names = _holders(output.expr, module, engine)
    for loss in loss_calls(module, engine.ev, CLASSIFICATION_LOSSES):
        if loss.input is not None and _same_value(loss.input, names, module, engine):
            return 1
    for method, position in CLASS_PICKERS.items():
        for call in module.calls_by_name.get(method, []):
            func = call.func
            if isinstance(func, cst.Attribute) and _same_value(func.value, names, module, engine):
                dim = call_arg(call, position, "dim")
                value = literal_value(dim) if dim is not None else None
                if isinstance(value, int) and value != 0:
                    return value
    return None


def _holders(expr: cst.BaseExpression, module: ModuleModel, engine: Engine) -> set[int]:
    """Identities of the model calls and activations whose values ``expr`` holds."""
    found: set[int] = set()
    pending: list[tuple[cst.BaseExpression, int]] = [(expr, 0)]
    while pending:
        current, depth = pending.pop()
        if depth > MAX_DEPTH:
            continue
        found.add(id(current))
        inner = _unwrap(current, module, engine)
        if inner is not None:
            pending.append((inner, depth + 1))
        elif isinstance(current, cst.Name):
            pending.extend((b.value, depth + 1) for b in _assignments(current, module, engine) if b.value is not None)
    return found


def _same_value(expr: cst.BaseExpression, holders: set[int], module: ModuleModel, engine: Engine) -> bool:
    return bool(_holders(expr, module, engine) & holders - {id(expr)}) or id(expr) in holders


def _assignments(name: cst.Name, module: ModuleModel, engine: Engine) -> list[Binding]:
    return [b for b in engine.ev.reaching(name, module) if b.kind == "assign" and b.value is not None and not b.path]


def _unwrap(expr: cst.BaseExpression, module: ModuleModel, engine: Engine) -> cst.BaseExpression | None:
    """What ``expr`` carries through unchanged axes: ``x`` of ``x.detach()``, of
    ``F.softmax(x, 1)``, of ``torch.exp(x)``, of ``x.logits``."""
    if isinstance(expr, cst.Attribute) and expr.attr.value in ("logits", "data"):
        return expr.value
    if isinstance(expr, cst.Subscript) and _string_index(expr) == "logits":
        return expr.value
    if not isinstance(expr, cst.Call):
        return None
    func = expr.func
    if isinstance(func, cst.Attribute) and (func.attr.value in KEEPS_AXES | ELEMENTWISE_METHODS or func.attr.value in T.TENSOR_METHOD_KINDS):
        # ``outputs.softmax(1)``, but not ``F.softmax(outputs, 1)``.
        if not any(isinstance(v, (LibRef, ClassRef, Instance)) for v in engine.ev.eval(func.value, module)):
            return func.value
    if engine.ev.callee(expr, module) & (ACTIVATIONS | ELEMENTWISE_FUNCTIONS):
        return call_arg(expr, 0, "input")
    if isinstance(func, cst.Call) and expr.args and any(
        isinstance(v, Obj) and v.qualname in T.MODULE_CLASS_KINDS for v in engine.ev.eval(func, module)
    ):
        return expr.args[0].value  # ``nn.Softmax(dim=1)(outputs)``
    return None


def _output_call(expr: cst.BaseExpression, module: ModuleModel, engine: Engine, depth: int) -> cst.Call | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(expr, cst.Call) and _model_call(expr, module, engine) and _on_batch(expr, module, engine):
        return expr
    inner = _unwrap(expr, module, engine)
    if inner is not None:
        return _output_call(inner, module, engine, depth + 1)
    if isinstance(expr, cst.Name):
        for binding in engine.ev.reaching(expr, module):
            if binding.kind != "assign" or binding.value is None:
                continue
            value, path = _unpacked(binding.value, binding.path)
            if len(path) > 1:
                continue
            # ``logits, _ = model(x)``: a model returning several outputs.
            found = _output_call(value, module, engine, depth + 1)
            if found is not None:
                return found
    return None


def _on_batch(call: cst.Call, module: ModuleModel, engine: Engine) -> bool:
    """Some argument of the call is the batch or one of its tensors."""
    return any(_batch_level(arg.value, module, engine, 0) is not None for arg in call.args) and model_expression(call) is not None


def is_batch_tensor(expr: cst.BaseExpression, module: ModuleModel, engine: Engine) -> bool:
    """``expr`` is one of the batch's tensors (the labels ``y`` of ``for x, y in loader``)."""
    return _batch_level(expr, module, engine, 0) == TENSOR


def _batch_level(expr: cst.BaseExpression, module: ModuleModel, engine: Engine, depth: int) -> str | None:
    """CONTAINER or TENSOR when ``expr`` is (part of) a batch, else ``None``."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(expr, cst.Name):
        return _name_level(expr, module, engine, depth)
    if isinstance(expr, cst.Subscript):
        index = _string_index(expr) if _string_index(expr) is not None else _int_index(expr)
        outer = _batch_level(expr.value, module, engine, depth + 1)
        return TENSOR if outer == CONTAINER and index is not None else None
    if isinstance(expr, cst.Attribute):
        return TENSOR if _batch_level(expr.value, module, engine, depth + 1) == CONTAINER else None
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in KEEPS_AXES:
        return _batch_level(expr.func.value, module, engine, depth + 1)
    if isinstance(expr, cst.Call) and expr.args and engine.ev.callee(expr, module) & T.TENSOR_WRAPPERS:
        return _batch_level(expr.args[0].value, module, engine, depth + 1)  # ``Variable(x)``
    if isinstance(expr, cst.Call) and terminal_name(expr.func) == "next" and expr.args:
        return CONTAINER if _drawn_from_loader(expr.args[0].value, module, engine) else None
    if isinstance(expr, cst.DictComp) and isinstance(expr.for_in.iter, cst.Call):
        items = expr.for_in.iter.func
        if isinstance(items, cst.Attribute) and items.attr.value == "items":
            return CONTAINER if _batch_level(items.value, module, engine, depth + 1) == CONTAINER else None
    return None


def _name_level(name: cst.Name, module: ModuleModel, engine: Engine, depth: int) -> str | None:
    """Inside a loop whose target binds the name, the target (or a re-assignment in the
    loop's body: ``x = x.to(device)``); elsewhere, the bindings that reach the use."""
    bindings = engine.ev.reaching(name, module)
    loop = next((l for l in module.enclosing_loops(name) if isinstance(l, cst.For) and _target_path(l.target, name.value) is not None), None)
    if loop is not None:
        bindings = [b for b in bindings if module.is_within(b.node, loop.body)]
        if not bindings:
            path = _target_path(loop.target, name.value)
            assert path is not None
            return _iteration_level(loop, path, module, engine)
    levels = {_binding_level(b, module, engine, depth) for b in bindings}
    return levels.pop() if len(levels) == 1 else None


def _target_path(target: cst.BaseExpression, name: str) -> tuple[int, ...] | None:
    if isinstance(target, cst.Name):
        return () if target.value == name else None
    if isinstance(target, (cst.Tuple, cst.List)):
        for index, element in enumerate(target.elements):
            inner = _target_path(element.value, name)
            if inner is not None:
                return (index, *inner)
    return None


def _iteration_level(loop: cst.For, path: tuple[int, ...], module: ModuleModel, engine: Engine) -> str | None:
    inner = _loop_path(loop, path)
    if inner is None or len(inner) > 1 or not _batched_loop(loop, module, engine):
        return None
    return CONTAINER if not inner else TENSOR


def _binding_level(binding: Binding, module: ModuleModel, engine: Engine, depth: int) -> str | None:
    if binding.kind == "for" and isinstance(binding.node, cst.For):
        return _iteration_level(binding.node, binding.path, module, engine)
    if binding.kind == "param":
        return CONTAINER if binding.name in BATCH_PARAMETERS and _hook(binding, module, engine) else None
    if binding.kind == "assign" and binding.value is not None:
        value, path = _unpacked(binding.value, binding.path)
        level = _batch_level(value, module, engine, depth + 1)
        if not path:
            return level
        return TENSOR if level == CONTAINER and len(path) == 1 else None
    return None


def _unpacked(value: cst.BaseExpression, path: tuple[int, ...]) -> tuple[cst.BaseExpression, tuple[int, ...]]:
    """``x`` for ``x, y = x.to(device), y.to(device)`` at path (0,)."""
    while path and isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) > path[0]:
        element = value.elements[path[0]]
        if isinstance(element, cst.StarredElement):
            break
        value, path = element.value, path[1:]
    return value, path


def _loop_path(loop: cst.For, path: tuple[int, ...]) -> tuple[int, ...] | None:
    """The path into what the loader yields: ``(x, y)`` of ``for i, (x, y) in enumerate(loader)``."""
    source = loop.iter
    while isinstance(source, cst.Call) and terminal_name(source.func) in ("tqdm", "iter", "track", "progress_bar"):
        source = source.args[0].value if source.args else source
        if not isinstance(source, cst.Call):
            break
    if isinstance(source, cst.Call) and terminal_name(source.func) == "enumerate":
        return path[1:] if path[:1] == (1,) else None
    if isinstance(source, cst.Call) and terminal_name(source.func) == "zip":
        return None
    return path


def _batched_loop(loop: cst.For, module: ModuleModel, engine: Engine) -> bool:
    """The loop walks a data loader that yields batches of more than one sample."""
    facts = engine.loop(loop, module)
    if facts is None or not engine.iterates_data(facts.loop):
        return False
    source = unwrapped(iterated(loop), module, engine.ev)
    loaders = [v for v in engine.ev.eval(source, module) if isinstance(v, Obj) and brains.kind_of(v.qualname) is Kind.LOADER]
    return all(_batches(loader) for loader in loaders)


def _drawn_from_loader(expr: cst.BaseExpression, module: ModuleModel, engine: Engine) -> bool:
    """``next(iter(loader))`` / ``next(it)`` with ``it = iter(loader)``: one batch of a
    loader that yields batches of more than one sample."""
    if isinstance(expr, cst.Name):
        bindings = engine.ev.reaching(expr, module)
        if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].value is None or bindings[0].path:
            return False
        expr = bindings[0].value
    if not (isinstance(expr, cst.Call) and terminal_name(expr.func) == "iter" and expr.args):
        return False
    loaders = [v for v in engine.ev.eval(expr.args[0].value, module) if isinstance(v, Obj) and brains.kind_of(v.qualname) is Kind.LOADER]
    return bool(loaders) and all(_batches(loader) for loader in loaders)


def _batches(loader: Obj) -> bool:
    """``batch_size`` is given and is not 1 (nor None), or a batch sampler forms them."""
    if call_arg(loader.call, T.LOADER_BATCH_SAMPLER_POSITION, "batch_sampler") is not None:
        return True
    size = call_arg(loader.call, T.LOADER_BATCH_SIZE_POSITION, "batch_size")
    if size is None:
        return T.LOADER_BATCH_SIZE_DEFAULT != 1
    return literal_value(size) not in (1, None)


def _hook(binding: Binding, module: ModuleModel, engine: Engine) -> bool:
    """A parameter of a function a library calls once per batch (``training_step``)."""
    function = binding.scope_node
    return isinstance(function, cst.FunctionDef) and engine._library_driven(function, module) is not None


def _model_call(call: cst.Call, module: ModuleModel, engine: Engine) -> bool:
    """A call of a model; in a library-driven hook, also ``self(x)`` and ``self.net(x)``
    (the hook runs the module's own network)."""
    if is_model_call(call, module, engine):
        return True
    target = model_expression(call)
    function = module.enclosing_function(call)
    if target is None or function is None or root_name(target) != "self":
        return False
    if engine._library_driven(function, module) is None:
        return False
    return isinstance(target, cst.Name) or is_model(target, module, engine.ev)


def _string_index(expr: cst.Subscript) -> str | None:
    if len(expr.slice) == 1 and isinstance(expr.slice[0].slice, cst.Index):
        value = literal_value(expr.slice[0].slice.value)
        return value if isinstance(value, str) else None
    return None


def _int_index(expr: cst.Subscript) -> int | None:
    if len(expr.slice) == 1 and isinstance(expr.slice[0].slice, cst.Index):
        value = literal_value(expr.slice[0].slice.value)
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def flat_argmax_operand(call: cst.Call, module: ModuleModel, ev: Evaluator) -> cst.BaseExpression | None:
    """``x`` of ``x.argmax()`` / ``torch.argmax(x)`` called without ``dim``."""
    func = call.func
    if ev.callee(call, module) & T.ARGMAX_FUNCTIONS:
        return call_arg(call, 0, "input") if call_arg(call, 1, "dim") is None else None
    if not isinstance(func, cst.Attribute) or func.attr.value != T.ARGMAX_METHOD:
        return None
    if any(isinstance(v, (LibRef, ClassRef, Instance)) for v in ev.eval(func.value, module)):
        return None  # a library's or a project's own argmax function
    return func.value if call_arg(call, 0, "dim") is None else None


def results_of(expr: cst.BaseExpression, module: ModuleModel, engine: Engine) -> Iterator[cst.BaseExpression]:
    """Where the value of ``expr`` is used as is: ``expr`` itself (through axis-keeping
    methods called on it), and the uses of a local name it is assigned to."""
    top = _kept_above(expr, module)
    yield top
    assignment = module.parent_of(top)
    if not (isinstance(assignment, cst.Assign) and len(assignment.targets) == 1):
        return
    target = assignment.targets[0].target
    function = module.enclosing_function(assignment)
    if not isinstance(target, cst.Name):
        return
    for use in _names_in(function.body if function is not None else module.tree, target.value):
        if use is not target and any(b.node is assignment for b in engine.ev.reaching(use, module)):
            yield _kept_above(use, module)


def _kept_above(expr: cst.BaseExpression, module: ModuleModel) -> cst.BaseExpression:
    """``x.cpu().long()`` for ``x``: axis-keeping methods called on it."""
    while True:
        attribute = module.parent_of(expr)
        call = module.parent_of(attribute) if attribute is not None else None
        if not (isinstance(attribute, cst.Attribute) and attribute.attr.value in KEEPS_AXES and isinstance(call, cst.Call) and call.func is attribute):
            return expr
        expr = call


def _names_in(node: cst.CSTNode, name: str) -> Iterator[cst.Name]:
    pending: list[cst.CSTNode] = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, cst.Name) and current.value == name:
            yield current
        elif not isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            pending.extend(iter_children(current))


@dataclass(frozen=True)
class Softmax:
    """A softmax-like call: ``operand`` is what it normalises, ``dim`` its axis argument
    (``None`` when not given), ``dim_owner`` the call holding that argument (the call
    itself, or the ``nn.Softmax(dim=...)`` constructor)."""

    call: cst.Call
    operand: cst.BaseExpression
    dim: cst.BaseExpression | None
    dim_owner: cst.Call


def softmax_calls(module: ModuleModel, ev: Evaluator) -> Iterator[Softmax]:
    """``F.softmax(x, d)``, ``torch.log_softmax(x, d)``, ``x.softmax(d)`` and calls of
    ``nn.Softmax(dim=d)`` / ``nn.LogSoftmax(d)`` layers."""
    # Only calls named like a softmax (``F.softmax``, ``self.softmax``) or of a layer built
    # in place are evaluated: resolving every call would follow imports into large projects.
    named = [c for name, calls in module.calls_by_name.items() if "softmax" in name.lower() for c in calls]
    built = [c for c in module.calls if isinstance(c.func, cst.Call) and "Softmax" in (terminal_name(c.func.func) or "")]
    for call in sorted(named + built, key=lambda c: module.order_of(c, 0)):
        if not call.args:
            continue
        func = call.func
        if ev.callee(call, module) & SOFTMAX_FUNCTIONS:
            operand = call_arg(call, 0, "input")
            if operand is not None:
                yield Softmax(call, operand, call_arg(call, T.SOFTMAX_DIM_POSITION, "dim"), call)
            continue
        if isinstance(func, cst.Attribute) and func.attr.value in SOFTMAX_METHODS:
            if not any(isinstance(v, (LibRef, ClassRef, Instance)) for v in ev.eval(func.value, module)):
                yield Softmax(call, func.value, call_arg(call, 0, "dim"), call)
            continue
        layers = [v for v in ev.eval(func, module) if isinstance(v, Obj) and v.qualname in SOFTMAX_LAYERS]
        if len(layers) == 1 and call.args[0].keyword is None and not call.args[0].star:
            yield Softmax(call, call.args[0].value, call_arg(layers[0].call, 0, "dim"), layers[0].call)


# -- a softmax over the batch inside the model's own forward ------------------------------

# Torch layers whose output is not batch-first by default.
SEQUENCE_FIRST = frozenset({"LSTM", "GRU", "RNN", "Transformer", "TransformerEncoder", "TransformerDecoder", "MultiheadAttention"})
# Tensor methods that keep every axis (``x.relu()``) and those that keep the first one
# when their first argument says so (``x.view(-1, n)``, ``x.flatten(1)``).
ELEMENTWISE_METHODS = frozenset({"relu", "sigmoid", "tanh", "float", "half", "contiguous", "exp", "clamp", "abs"})
RESHAPES = frozenset({"view", "reshape"})
# How many steps (layers, local names) a forward is followed back to its input.
MAX_LAYERS = 40


@dataclass(frozen=True)
class BatchedCall:
    """A call of a model on a batch (``call`` in ``module``) whose output's classes are
    on ``axis``."""

    call: cst.Call
    module: ModuleModel
    axis: int


def returned_by_forward(softmax: Softmax, module: ModuleModel, ev: Evaluator) -> cst.ClassDef | None:
    """The model class whose ``forward`` returns this softmax of (a function of) its input,
    every step keeping the input's first axis first."""
    function = module.enclosing_function(softmax.call)
    cls = module.method_class(function)
    if function is None or cls is None or function.name.value != "forward":
        return None
    params = [*function.params.posonly_params, *function.params.params]
    if len(params) < 2 or not _returned(softmax.call, function, module, ev):
        return None
    return cls if _keeps_batch(softmax.operand, params[1].name.value, module, ev, 0) else None


def _returned(call: cst.Call, function: cst.FunctionDef, module: ModuleModel, ev: Evaluator) -> bool:
    for statement in return_statements(function):
        value = statement.value
        if value is call:
            return True
        if isinstance(value, cst.Name) and any(b.value is call for b in ev.reaching(value, module)):
            return True
    return False


def _keeps_batch(expr: cst.BaseExpression, batch: str, module: ModuleModel, ev: Evaluator, depth: int) -> bool:
    """``expr`` has the forward input ``batch``'s first axis as its own first axis."""
    if depth > MAX_LAYERS:
        return False
    if isinstance(expr, cst.Name):
        bindings = ev.reaching(expr, module)
        if expr.value == batch and all(b.kind == "param" for b in bindings):
            return True
        assigned = [b for b in bindings if b.kind == "assign" and b.value is not None and not b.path]
        return bool(assigned) and len(assigned) == len(bindings) and all(_keeps_batch(b.value, batch, module, ev, depth + 1) for b in assigned)  # type: ignore[arg-type]
    if isinstance(expr, cst.BinaryOperation):
        sides = [s for s in (expr.left, expr.right) if literal_value(s) is ...]
        return bool(sides) and all(_keeps_batch(s, batch, module, ev, depth + 1) for s in sides)
    if not isinstance(expr, cst.Call) or not expr.args or expr.args[0].star:
        return False
    first = expr.args[0].value
    func = expr.func
    if isinstance(func, cst.Attribute) and not any(isinstance(v, (LibRef, Obj, Instance, FuncRef)) for v in ev.eval(func, module)):
        # a tensor method: ``x.relu()``, ``x.view(-1, 320)``, ``x.flatten(1)``
        method = func.attr.value
        if method in ELEMENTWISE_METHODS or method in RESHAPES and _first_axis_kept(first, module, ev) or method == "flatten" and literal_value(first) == 1:
            return _keeps_batch(func.value, batch, module, ev, depth + 1)
        return False
    if ev.callee(expr, module) & FLATTENS:
        start = call_arg(expr, 1, "start_dim")
        return start is not None and isinstance(literal_value(start), int) and literal_value(start) != 0 and _keeps_batch(first, batch, module, ev, depth + 1)
    values = ev.eval(func, module)
    if not values or any(not _batch_first_layer(v) for v in values):
        return False
    return _keeps_batch(first, batch, module, ev, depth + 1)


def _first_axis_kept(size: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``-1`` (the rest of the axes go after it), ``x.size(0)`` / ``x.shape[0]``, or a name
    bound to one (``in_size = x.size(0)``)."""
    if literal_value(size) == -1:
        return True
    if isinstance(size, cst.Name):
        bindings = ev.reaching(size, module)
        return len(bindings) == 1 and bindings[0].value is not None and not bindings[0].path and bindings[0].kind == "assign" and _first_axis_kept(bindings[0].value, module, ev)
    if isinstance(size, cst.Call) and isinstance(size.func, cst.Attribute) and size.func.attr.value == "size":
        return bool(size.args) and literal_value(size.args[0].value) == 0
    return isinstance(size, cst.Subscript) and _int_index(size) == 0 and isinstance(size.value, cst.Attribute) and size.value.attr.value == "shape"


def _batch_first_layer(value: object) -> bool:
    """A layer or function that keeps the first axis first: torch layers (not recurrent or
    transformer layers, which are sequence-first unless told otherwise), ``torch.nn.functional``
    functions and the project's own modules."""
    if isinstance(value, Obj):
        layer = T.layer_name(value.qualname)
        if layer in SEQUENCE_FIRST:
            return literal_value(call_arg(value.call, None, "batch_first") or cst.Name("False")) is True
        return layer is not None or value.qualname in T.MODEL_WRAPPERS
    if isinstance(value, LibRef):
        return value.qualname.startswith("torch.nn.functional.") or value.qualname in ELEMENTWISE_FUNCTIONS
    return isinstance(value, Instance)


ELEMENTWISE_FUNCTIONS = frozenset(f"torch.{name}" for name in ("relu", "sigmoid", "tanh", "exp", "abs", "clamp"))
FLATTENS = frozenset({"torch.flatten"})


def batched_calls(cls: cst.ClassDef, module: ModuleModel, engine: Engine) -> Iterator[BatchedCall]:
    """Calls of instances of ``cls`` on batches, in the modules that build one, whose output
    feeds a classification loss or a class pick."""
    ev = engine.ev
    init = ev.method(ClassRef(module, cls), "__init__")
    if init is None:
        return
    callers = {id(caller): caller for _, caller in ev.call_sites(init.node, init.module)}
    for caller in callers.values():
        for call in caller.calls:
            if not is_model_call(call, caller, engine):
                continue
            if not any(i.cls.node is cls for i in ev.instances(call.func, caller)) or not _on_batch(call, caller, engine):
                continue
            axis = class_axis(BatchOutput(call, call), caller, engine)
            if axis is not None:
                yield BatchedCall(call, caller, axis)
