"""Questions the training rules share, answered from the engine's recorded states.

Nothing here walks paths: each answer reads the state the engine recorded before an op
(its gradients, its scheduler order...) or what a loop's iterations ran.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis.brains import accelerate as ACCELERATE
from trainlint.analysis.brains import lightning as PL
from trainlint.analysis.engine import Engine, LoopFacts, Occurrence, Snapshot
from trainlint.analysis.ir import ITERATION_WRAPPERS, Flag, Invoke, Loop, Op, OpKind, Region, RegionKind, iterated, object_kind, walk_items
from trainlint.analysis.keys import Frame, Key, Relation, relation, variable
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, root_name, terminal_name
from trainlint.analysis.values import ClassRef, Instance, Obj
from trainlint.analysis.walk import iter_children
from trainlint.analysis.models import is_model, is_model_class
from trainlint.analysis.state import NOT_FROZEN, Fact, Grad, Iteration, ModeV
from trainlint.analysis.tensors import graph_part, is_loss_value, own_returns
from trainlint.analysis.tensors import output_loss as output_loss_of

# Word starts in a loader's name that mark held-out data: ``val_loader``, ``testloader``.
EVAL_DATA_PREFIXES = ("val", "test", "eval", "holdout")


def call_text(node: cst.CSTNode, module: ModuleModel) -> str:
    """Source text of a (short) node, for messages."""
    return module.tree.code_for_node(node).strip()


def target(engine: Engine, occurrence: Occurrence) -> Key | None:
    op = occurrence.op
    return engine.key(op.target, op.module, occurrence.frame) if op.target is not None else None


def grads(engine: Engine, occurrence: Occurrence) -> frozenset[Grad]:
    """The gradients of the optimizer an op acts on, just before it."""
    key = target(engine, occurrence)
    return occurrence.state.grad_of(key) if key is not None else frozenset()


def clipped(engine: Engine, occurrence: Occurrence) -> list[frozenset[Grad]]:
    """The gradients a clip may touch: those of the optimizers built over the clipped
    model's parameters, or of every optimizer when that is unknown."""
    state = occurrence.state
    owner = _parameters_key(engine, occurrence)
    related = []
    for key, values in state.grads.items():
        optimizer_owners = engine.owners(key)
        if owner is None or not optimizer_owners or any(relation(owner, o) is not Relation.DIFFERENT for o in optimizer_owners):
            related.append(values)
    return related or [state.grads_default]


def _parameters_key(engine: Engine, occurrence: Occurrence) -> Key | None:
    params = occurrence.op.target
    if isinstance(params, cst.Call) and isinstance(params.func, cst.Attribute) and params.func.attr.value in ("parameters", "named_parameters"):
        return engine.key(params.func.value, occurrence.op.module, occurrence.frame)
    return None


def innermost_loop(engine: Engine, occurrence: Occurrence) -> LoopFacts | None:
    if not occurrence.loops:
        return None
    return engine._loops.get(occurrence.loops[-1].loop)


def earliest(ops: Iterable[Op]) -> Op | None:
    """The first op in source order (ops of one iteration, for a stable report)."""
    return min(ops, key=lambda op: (str(op.module.path), op.module.order_of(op.node, 0)), default=None)


def frequency(engine: Engine, op: Op) -> str | None:
    """``"step"`` when the op runs once per mini-batch, ``"epoch"`` once per epoch, ``None``
    when activations disagree or cannot tell. A loop that steps the optimizer but walks
    ``range(epochs)`` over the whole data set (full-batch training) is both: no verdict."""
    verdicts: set[str | None] = set()
    for occurrence in engine.occurrences_of(op):
        loop = innermost_loop(engine, occurrence)
        if loop is None:
            verdicts.add(None)
        elif engine.is_batch_loop(loop):
            minibatches = len(occurrence.loops) > 1 or _walks_data(engine, loop)
            verdicts.add("step" if minibatches else None)
        elif engine.is_epoch_loop(loop):
            verdicts.add("epoch")
        else:
            verdicts.add(None)
    return verdicts.pop() if len(verdicts) == 1 else None


def _walks_data(engine: Engine, loop: LoopFacts) -> bool:
    """Not ``for i in range(n)`` / ``for i in tqdm(range(n))``: a counter is no data loader."""
    node = loop.loop.node
    if isinstance(node, cst.While):
        return engine.iterates_data(loop.loop)
    if not isinstance(node, cst.For):
        return True  # a hook a library calls once per batch
    expr: cst.BaseExpression | None = node.iter
    while isinstance(expr, cst.Call):
        if dotted(expr.func) in ("range", "trange"):
            return False
        expr = expr.args[0].value if expr.args else None
    return True


def compatible(a: frozenset[Fact], b: frozenset[Fact]) -> bool:
    """Two sets of known conditions that can hold together."""
    known = {(text, value) for text, value, _ in b}
    return not any((text, not value) in known for text, value, _ in a)


def iteration_ends(engine: Engine, loop: LoopFacts, occurrence: Occurrence) -> tuple[Iteration, ...]:
    """The loop's iteration records at the end of iterations that can run with what was
    known at ``occurrence`` (``if use_amp:`` keeps the AMP iterations apart)."""
    facts = occurrence.state.facts
    return engine.memo(("iteration_ends", id(loop), facts), lambda: _iteration_ends(loop, facts))


def _iteration_ends(loop: LoopFacts, facts: frozenset[Fact]) -> tuple[Iteration, ...]:
    return tuple(
        level
        for end in loop.ends
        if compatible(end.state.facts, facts)
        for level in end.state.loops
        if level.loop == id(loop.loop.node)
    )


def runs_every_iteration(engine: Engine, occurrence: Occurrence, loop: LoopFacts) -> bool:
    """Every iteration of ``loop`` that backpropagates also runs the occurrence's op."""
    op = occurrence.op
    return engine.memo(
        ("runs_every_iteration", id(loop), occurrence.state.facts, id(op)),
        lambda: _runs_every_iteration(iteration_ends(engine, loop, occurrence), op),
    )


def _runs_every_iteration(ends: tuple[Iteration, ...], op: Op) -> bool:
    training = [level for level in ends if any(o.kind is OpKind.BACKWARD for o in level.may)]
    return bool(training) and all(op in level.must for level in training)


def evaluates_after(engine: Engine, switch: Op) -> bool:
    """Code after a ``model.eval()`` in its function evaluates: an evaluation loop, gradients
    turned off outside any training loop, or a call into code that does either. Tells an
    evaluation's switch from a frozen teacher's."""
    function = switch.module.enclosing_function(switch.node)
    if function is not None and _evaluation_function(engine, function, switch.module):
        return True
    block = engine.ir.function(function, switch.module) if function is not None else engine.ir.module_code(switch.module)
    after = False
    for item in walk_items(block):
        if item is switch:
            after = True
        elif after and _evaluates(engine, item, switch.module):
            return True
    return False


def _evaluates(engine: Engine, item: object, module: ModuleModel) -> bool:
    if isinstance(item, Region) and item.kind is RegionKind.GRAD_OFF:
        return True
    if isinstance(item, Loop):
        facts = engine.loop(item.node, item.module)
        return facts is not None and is_evaluation_loop(engine, facts)
    if isinstance(item, Invoke):
        return any(
            engine.ir.decorated_grad_off(f.node, f.module)
            or any(isinstance(i, Region) and i.kind is RegionKind.GRAD_OFF for i in walk_items(engine.ir.function(f.node, f.module)))
            for f in engine.targets(item)
        )
    return False


def is_evaluation_loop(engine: Engine, loop: LoopFacts) -> bool:
    """A loop whose iterations neither backpropagate nor step, run with gradients off or
    over held-out data, and call a model."""
    return engine.memo(("is_evaluation_loop", id(loop)), lambda: _is_evaluation_loop(engine, loop))


def _is_evaluation_loop(engine: Engine, loop: LoopFacts) -> bool:
    kinds = {op.kind for op in engine.iteration_ops(loop)}
    if kinds & {OpKind.BACKWARD, OpKind.STEP} or not model_calls(engine, loop):
        return False
    node, module = loop.loop.node, loop.loop.module
    function = module.enclosing_function(node)
    in_evaluation = function is not None and is_eval_name(function.name.value)
    return in_evaluation or iterates_held_out(loop) or grad_off(engine, node, module)


def grad_off(engine: Engine, node: cst.CSTNode, module: ModuleModel) -> bool:
    """Gradients are off at ``node`` in every activation that reached it."""
    snapshots = engine.snapshots(node, module)
    return bool(snapshots) and all(s.state.grad == frozenset({"off"}) for s in snapshots)


# Words of names given to data: ``val_loader``, ``testloader``, ``test_data``, ``val_ds``.
DATA_WORDS = ("loader", "data", "set", "ds", "dl", "batches", "iter", "samples")


def iterates_held_out(loop: LoopFacts) -> bool:
    """The loop walks validation/test data (judged by its name: ``test_cases`` is no data)."""
    node = loop.loop.node
    return isinstance(node, cst.For) and held_out_name(dotted(iterated(node)) or "")


def held_out_name(name: str) -> bool:
    """``val_loader``, ``self.test_data``: held-out data (``test_cases`` is no data)."""
    return is_eval_name(name) and any(word in name.lower() for word in DATA_WORDS)


def reads_held_out(function: cst.FunctionDef) -> bool:
    """The function reads validation/test data (``next(iter(val_dataloader))``)."""
    pending: list[cst.CSTNode] = [function.body]
    while pending:
        node = pending.pop()
        if isinstance(node, (cst.Name, cst.Attribute)):
            if held_out_name(dotted(node) or ""):
                return True
            if isinstance(node, cst.Attribute):
                pending.append(node.value)
            continue
        if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        pending.extend(iter_children(node))
    return False


def evaluation_sites(engine: Engine, module: ModuleModel) -> list[ModelCall]:
    """Where a model is evaluated in ``module``: the first model call of each evaluation
    loop, and of each function that evaluates without a loop (a GAN's ``sample_images``
    reading the validation set)."""
    sites = [model_calls(engine, loop)[0] for loop in engine.loops(module) if is_evaluation_loop(engine, loop)]
    for function in module.functions:
        if engine.loops_in(function, module):
            continue  # its loops are judged as loops
        if not _evaluation_function(engine, function, module):
            continue
        calls = [c for c in module.calls_by_function.get(function, []) if not module.enclosing_loops(c)]
        first = next((c for c in calls if is_model_call(c, module, engine)), None)
        if first is not None:
            sites.append(ModelCall(first, module, first))
    return sites


def _evaluation_function(engine: Engine, function: cst.FunctionDef, module: ModuleModel) -> bool:
    """Evaluates outside any loop: reads held-out data or turns gradients off, and never
    backpropagates nor steps."""
    if not (reads_held_out(function) or engine.ir.decorated_grad_off(function, module)):
        return False
    return not engine.reaches(engine.ir.function(function, module), {OpKind.BACKWARD, OpKind.STEP})


def is_eval_name(name: str) -> bool:
    """``val_loader``, ``self.testloader``, ``eval_dataset``, ``dev_ds``: names of held-out
    data (but not ``values``, ``interval`` or ``device``)."""
    words = re.split(r"[^a-z]+", name.lower())
    return "dev" in words or any(w.startswith(EVAL_DATA_PREFIXES) and not w.startswith("value") for w in words)


@dataclass(frozen=True)
class ModelCall:
    """A model called in a loop: ``call`` in ``module``, reached through ``anchor``, the
    call in the loop body (the same call, or the helper it is made in)."""

    call: cst.Call
    module: ModuleModel
    anchor: cst.Call


def model_calls(engine: Engine, loop: LoopFacts) -> tuple[ModelCall, ...]:
    """Calls of a model (``model(x)``, ``self.net(x)``, ``model.forward(x)``) in the loop
    body, else in the helpers it calls (``self._loss_step(batch)``), in source order."""
    return engine.memo(("model_calls", id(loop)), lambda: tuple(_model_calls(engine, loop)))


def _model_calls(engine: Engine, loop: LoopFacts) -> list[ModelCall]:
    node, module = loop.loop.node, loop.loop.module
    body = node.body if isinstance(node, (cst.For, cst.While, cst.FunctionDef)) else node
    function = module.enclosing_function(node) if not isinstance(node, cst.FunctionDef) else node
    calls = module.within(module.calls_by_function.get(function, []), body)
    found = [ModelCall(call, module, call) for call in calls if is_model_call(call, module, engine)]
    if found:
        return found
    for call in calls:
        if not engine.ev.project.may_be_user_callable(call.func, module):
            continue
        for helper in engine.ev.functions_called(call, module):
            inner = helper.module.calls_by_function.get(helper.node, [])
            found.extend(
                ModelCall(c, helper.module, call)
                for c in inner
                if is_model_call(c, helper.module, engine) and _given(c, helper.node, helper.module)
            )
    return found


def is_model_call(call: cst.Call, module: ModuleModel, engine: Engine) -> bool:
    target = model_expression(call)
    text = dotted(target) if target is not None else None
    if target is None or text is None:
        return False
    if text == "self" or (text.startswith("self.") and _in_model_method(call, module, engine)):
        # A model calling itself or its own layers (sampling, generate loops): its mode is
        # whatever its user put it in.
        return False
    if any(isinstance(v, ClassRef) for v in engine.ev.eval(target, module)):
        return False  # ``Net()`` builds a model; it does not run one
    return is_model(target, module, engine.ev)


def _given(call: cst.Call, function: cst.FunctionDef, module: ModuleModel) -> bool:
    """The model a helper calls is handed to it (a parameter, ``self.model``), not built
    inside it: only then does the loop's code decide its mode."""
    target = model_expression(call)
    root = root_name(target) if target is not None else None
    bindings = module.scopes[function].bindings.get(root or "", []) if function in module.scopes else []
    return root == "self" or any(b.kind == "param" for b in bindings)


def _in_model_method(node: cst.CSTNode, module: ModuleModel, engine: Engine) -> bool:
    cls = module.method_class(module.enclosing_function(node))
    return cls is not None and is_model_class(ClassRef(module, cls), engine.ev)


def model_expression(call: cst.Call) -> cst.BaseExpression | None:
    """What is called as a model: ``model`` in ``model(x)`` and in ``model.forward(x)``."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value == "forward":
        return func.value
    if isinstance(func, (cst.Name, cst.Attribute)):
        return func
    return None


def model_name(call: cst.Call) -> str:
    """``model``, ``self.net``: how a model call names its model, for messages."""
    target = model_expression(call)
    return (dotted(target) if target is not None else None) or "the model"


def modes_at(engine: Engine, call: ModelCall) -> list[tuple[Snapshot, frozenset[ModeV]]]:
    """The modes the called model may be in, per activation (and path) that ran the call."""
    target = model_expression(call.call)
    if target is None:
        return []
    return [(snapshot, engine.modes(target, call.module, snapshot)) for snapshot in engine.snapshots(call.call, call.module)]


def loop_at(engine: Engine, snapshot: Snapshot) -> LoopFacts | None:
    """The innermost loop a snapshot was taken in."""
    return engine._loops.get(snapshot.state.loops[-1].loop) if snapshot.state.loops else None


def frozen_at(engine: Engine, expr: cst.BaseExpression, module: ModuleModel, snapshot: Snapshot) -> frozenset[bool]:
    """Whether a module's parameters may be frozen there: its own ``requires_grad_``,
    else that of the model it is part of (``model.requires_grad_(False)`` freezes
    ``model.backbone``)."""
    current: cst.BaseExpression = expr
    while True:
        found = snapshot.state.frozen.get(engine.key(current, module, snapshot.frame))
        if found is not None:
            return found
        if not isinstance(current, cst.Attribute):
            return NOT_FROZEN
        current = current.value


def trained_models(engine: Engine, loop: LoopFacts) -> tuple[Key, ...] | None:
    """The models whose parameters the optimizers stepped in the loop were built over;
    ``None`` when that is unknown for one of them."""
    return engine.memo(("trained_models", id(loop)), lambda: _trained_models(engine, loop))


def _trained_models(engine: Engine, loop: LoopFacts) -> tuple[Key, ...] | None:
    owners: list[Key] = []
    for step in stepped_optimizers(engine, loop):
        optimizer = target(engine, step)
        found = engine.owners(optimizer) if optimizer is not None else ()
        if not found:
            return None
        owners.extend(found)
    return tuple(owners)


def weights_written(engine: Engine, loop: LoopFacts, key: Key) -> bool:
    """Some iteration of the loop overwrites the module's weights (an EMA update, a
    ``load_state_dict``) or those of a model it is part of."""
    for op in engine.iteration_ops(loop):
        if op.kind is not OpKind.LOAD_WEIGHTS or op.target is None:
            continue
        for occurrence in engine.occurrences_of(op):
            other = engine.key(op.target, op.module, occurrence.frame)
            if relation(other, key) is not Relation.DIFFERENT or key.is_part_of(other):
                return True
    return False


def stepped_optimizers(engine: Engine, loop: LoopFacts) -> tuple[Occurrence, ...]:
    return engine.memo(
        ("stepped_optimizers", id(loop)),
        lambda: tuple(o for op in engine.iteration_ops(loop) if op.kind is OpKind.STEP for o in engine.occurrences_of(op)),
    )


def is_zero_grad(op: Op) -> bool:
    """``x.zero_grad(...)`` clears every parameter it owns (``p.grad = None`` loops are often
    deliberately selective, e.g. freezing one layer)."""
    node = op.node
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "zero_grad"


def measures_only(op: Op) -> bool:
    return op.has(Flag.MEASURE_ONLY)


def backpropagated_names(engine: Engine, loop: LoopFacts) -> set[str]:
    """Local names whose value some backward of the loop backpropagates: the operand of
    ``backward()`` and the names it was computed from (``loss = running / n``)."""
    names: set[str] = set()
    pending: list[tuple[cst.BaseExpression, ModuleModel, int]] = [
        (op.operand, op.module, 0) for op in engine.iteration_ops(loop) if op.kind is OpKind.BACKWARD and op.operand is not None
    ]
    while pending:
        expr, module, depth = pending.pop()
        for name in _names(expr):
            if name.value in names:
                continue
            names.add(name.value)
            if depth < 3:
                pending.extend((b.value, module, depth + 1) for b in engine.ev.reaching(name, module) if b.kind in ("assign", "aug") and b.value is not None)
    return names


def optimized_models(expr: cst.BaseExpression, module: ModuleModel, engine: Engine, depth: int = 0) -> list[cst.BaseExpression] | None:
    """The modules whose parameters an optimizer's ``params`` are: ``model`` in
    ``model.parameters()``, also through ``filter``/``list``/``chain``, comprehensions,
    parameter groups and variables; ``None`` when any part is something else."""
    if depth > MAX_SCALE_DEPTH:
        return None
    if isinstance(expr, cst.Call):
        func = expr.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters"):
            return [func.value]
        if terminal_name(func) in ("list", "tuple", "filter", "chain") and expr.args:
            found = [optimized_models(a.value, module, engine, depth + 1) for a in expr.args if terminal_name(func) != "filter" or a is expr.args[-1]]
            return None if any(f is None for f in found) else [m for f in found for m in f or []]
        return None
    if isinstance(expr, (cst.ListComp, cst.GeneratorExp)) and len(_comprehension_sources(expr)) == 1:
        return optimized_models(_comprehension_sources(expr)[0], module, engine, depth + 1)
    if isinstance(expr, (cst.List, cst.Tuple)) and expr.elements:
        parts = [_group_params(e.value) for e in expr.elements]
        found = [optimized_models(p, module, engine, depth + 1) if p is not None else None for p in parts]
        return None if any(f is None for f in found) else [m for f in found for m in f or []]
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
        found = [optimized_models(side, module, engine, depth + 1) for side in (expr.left, expr.right)]
        return None if any(f is None for f in found) else [m for f in found for m in f or []]
    if isinstance(expr, cst.Name):
        bindings = engine.ev.reaching(expr, module)
        if len(bindings) == 1 and bindings[0].kind == "assign" and bindings[0].value is not None and not bindings[0].path:
            return optimized_models(bindings[0].value, module, engine, depth + 1)
    return None


def _comprehension_sources(expr: cst.ListComp | cst.GeneratorExp) -> list[cst.BaseExpression]:
    sources = []
    current: cst.CompFor | None = expr.for_in
    while current is not None:
        sources.append(current.iter)
        current = current.inner_for_in
    return sources


def _group_params(element: cst.BaseExpression) -> cst.BaseExpression | None:
    """``model.head.parameters()`` in ``{"params": model.head.parameters(), "lr": 1e-3}``;
    a starred ``*model.parameters()`` is its value."""
    if isinstance(element, cst.Dict):
        for entry in element.elements:
            if isinstance(entry, cst.DictElement) and isinstance(entry.key, cst.SimpleString) and entry.key.evaluated_value == "params":
                return entry.value
        return None
    return element


def rebuilt_in_iteration(engine: Engine, occurrence: Occurrence, loop: LoopFacts, model: cst.BaseExpression) -> bool:
    """The module ``model`` (as ``occurrence`` sees it) is new in each iteration of
    ``loop``: built or assigned in the loop's body, a local of a function the iteration
    calls, or reset by ``load_state_dict``/``reset_parameters``/``apply`` in the iteration.
    Unknown counts as new."""
    if _reset_in_iteration(engine, occurrence, model):
        return True
    text = dotted(model)
    frame: Frame | None = occurrence.frame
    while frame is not None and text is not None:
        root = text.split(".")[0]
        if frame in loop.frames:
            return root in loop.loop.assigned or text in loop.loop.assigned
        bound = frame.bindings.get(root)
        if bound is None:
            # A name of a function the iteration calls: a local is new on every call.
            scope = frame.module.scopes.get(frame.function) if frame.function is not None else None
            return scope is not None and any(b.kind in ("assign", "with", "for") for b in scope.bindings.get(root, []))
        argument = dotted(bound[0])
        text = argument + text[len(root):] if argument is not None else None
        frame = bound[2]
    return True


def _reset_in_iteration(engine: Engine, occurrence: Occurrence, model: cst.BaseExpression) -> bool:
    if not occurrence.loops:
        return False
    key = engine.key(model, occurrence.op.module, occurrence.frame)
    for op in occurrence.loops[-1].may:
        if op.kind is not OpKind.LOAD_WEIGHTS or op.mode != "reset" or op.target is None:
            continue
        for reset in engine.occurrences_of(op):
            other = engine.key(op.target, op.module, reset.frame)
            if relation(other, key) is not Relation.DIFFERENT or key.is_part_of(other) or other.is_part_of(key):
                return True
    return False


def extends_container(op: Op) -> bool:
    """``losses.append(v)``, ``logs[k] = v``, ``meter.update(v)``, ``losses += [v]``: the
    value is kept in a container (TL211), not added into a number (TL205)."""
    return op.kind is OpKind.STORE or (op.has(Flag.AUGMENTED) and isinstance(op.operand, (cst.List, cst.Tuple)))


def kept_loss(engine: Engine, occurrence: Occurrence) -> cst.BaseExpression | None:
    """The part of a value added to a running total or kept in a container that is a loss
    with its graph, when the total (container) lives across iterations of a training loop
    and is never backpropagated itself."""
    op = occurrence.op
    if not (op.kind is OpKind.STORE or op.has(Flag.AUGMENTED)) or op.has(Flag.CLEARS):
        return None
    if op.name is None or op.operand is None or "on" not in occurrence.state.grad:
        return None
    total = occurrence.state.totals.get(variable(occurrence.frame, op.name), frozenset())
    # Reset in this iteration (one loss built in parts), or at every optimizer step (a
    # running loss logged per accumulation window): the graphs it holds stay bounded.
    if not any(t.carried and t.stepped for t in total):
        return None
    loop = innermost_loop(engine, occurrence)
    if loop is None or not any(o.kind is OpKind.BACKWARD for o in engine.iteration_ops(loop)):
        return None
    if op.name in backpropagated_names(engine, loop):
        return None  # the total is the loss (gradient accumulation written by hand)
    return graph_part(op.operand, op.module, engine.ev, lambda name: occurrence.state.totals.get(variable(occurrence.frame, name), frozenset()))


def divides_by_accumulation(engine: Engine, backward: Op) -> bool:
    """Whether a framework's ``backward`` divides the loss by the accumulation count itself
    (DeepSpeed's engine, an Accelerator built with gradient accumulation); a plain
    ``backward()``, Lightning's ``manual_backward`` and an Accelerator built without
    accumulation divide by nothing."""
    node = backward.node
    if not backward.has(Flag.FRAMEWORK) or not isinstance(node, cst.Call):
        return False
    if terminal_name(node.func) == PL.MANUAL_BACKWARD:
        return False
    if not isinstance(node.func, cst.Attribute):
        return True
    found = engine.ev.eval(node.func.value, backward.module)
    accelerators = [v for v in found if isinstance(v, Obj) and v.qualname in ACCELERATE.ACCELERATORS]
    if not accelerators or len(accelerators) != len(found):
        return True
    return any(arg.star or (arg.keyword is not None and arg.keyword.value in ACCELERATE.ACCUMULATION_ARGUMENTS) for v in accelerators for arg in v.call.args)


# Tensor methods that scale their receiver, and those that pass its scale through.
_SCALING_METHODS = frozenset({"div", "div_", "mul", "mul_", "true_divide", "divide", "multiply"})
_SCALE_KEEPING_METHODS = frozenset({"mean", "sum", "float", "double", "half", "to", "cuda", "squeeze", "view", "reshape", "clone"})
MAX_SCALE_DEPTH = 4


def loss_scaled_down(engine: Engine, expr: cst.BaseExpression, module: ModuleModel, depth: int = 0) -> bool | None:
    """Whether a loss is divided (or multiplied) by something before it is backpropagated:
    ``loss / k``, ``loss /= k``, ``loss.div(k)``, through the names and project functions
    it comes from. ``False`` only when every source is known: a library loss, a model
    output's ``.loss``, sums of those."""
    if depth > MAX_SCALE_DEPTH:
        return None
    if isinstance(expr, cst.BinaryOperation):
        if isinstance(expr.operator, (cst.Divide, cst.Multiply, cst.FloorDivide)):
            return True
        if isinstance(expr.operator, (cst.Add, cst.Subtract)):
            # A sum is scaled when every term is (``ce / k + reg / k``), not when one is
            # weighted (``ce + 0.1 * reg``).
            sides = [loss_scaled_down(engine, side, module, depth + 1) for side in (expr.left, expr.right)]
            return None if None in sides else all(sides)
        return None
    if isinstance(expr, cst.Call):
        return _call_scaled_down(engine, expr, module, depth)
    if isinstance(expr, cst.Name):
        bindings = engine.ev.reaching(expr, module)
        if not bindings or any(b.kind not in ("assign", "aug") or b.value is None or b.path for b in bindings):
            return None
        if any(isinstance(b.node, cst.AugAssign) and isinstance(b.node.operator, (cst.DivideAssign, cst.MultiplyAssign)) for b in bindings):
            return True
        return _all_known(loss_scaled_down(engine, b.value, module, depth + 1) for b in bindings if b.value is not None)
    if output_loss_of(expr):
        return False
    return None


def _call_scaled_down(engine: Engine, call: cst.Call, module: ModuleModel, depth: int) -> bool | None:
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in _SCALING_METHODS:
        return True
    if isinstance(func, cst.Attribute) and func.attr.value in _SCALE_KEEPING_METHODS:
        return loss_scaled_down(engine, func.value, module, depth + 1)
    if is_loss_value(call, module, engine.ev):
        return False  # ``criterion(out, y)``, ``F.cross_entropy(out, y)``
    functions = [f for f in engine.ev.functions_called(call, module) if not isinstance(f.bound, Instance) or f.node.name.value != "forward"]
    if not functions:
        return None
    verdicts = []
    for function in functions:
        returns = [r.value for r in own_returns(function.node) if r.value is not None]
        verdicts.append(_all_known(loss_scaled_down(engine, value, function.module, depth + 1) for value in returns) if returns else None)
    return _all_known(verdicts)


def _all_known(verdicts: Iterable[bool | None]) -> bool | None:
    """``True`` if any part is scaled, ``False`` if every part is known unscaled."""
    found = list(verdicts)
    if any(v is True for v in found):
        return True
    return False if found and all(v is False for v in found) else None


def _names(expr: cst.BaseExpression) -> list[cst.Name]:
    found: list[cst.Name] = []
    pending: list[cst.CSTNode] = [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Name):
            found.append(node)
        elif isinstance(node, cst.Attribute):
            pending.append(node.value)
        elif isinstance(node, cst.Call):
            pending.extend(arg.value for arg in node.args)
            if isinstance(node.func, cst.Attribute):
                pending.append(node.func.value)
        elif isinstance(node, (cst.BinaryOperation,)):
            pending.extend([node.left, node.right])
        elif isinstance(node, cst.UnaryOperation):
            pending.append(node.expression)
    return found
