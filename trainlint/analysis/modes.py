"""Train/eval mode and gradient recording along the code that reaches a point.

``model.eval()`` / ``model.train()`` and ``torch.no_grad()`` are usually split across
functions: ``main`` calls ``model.eval()`` then ``evaluate(model, loader)``; ``train()``
starts with ``model.train()``; an ``estimate_loss`` decorated with ``@torch.no_grad()``
switches to eval and back. This module answers, for a point in a function:

- which mode the model is in (the nearest preceding mode switch in the function, including
  the mode a called helper leaves behind, else the mode at every call site of the function);
- whether gradients are disabled there (``with torch.no_grad()``, a decorator, a preceding
  ``torch.set_grad_enabled(False)``, or the same at every call site);
- the ordered mode switches and backward passes one iteration of a loop performs, helpers
  expanded, so that "evaluation leaves eval mode on for the next epoch" can be checked.

Unknowns resolve towards silence: an unknown mode argument counts as any mode, and a
function without visible callers has no caller-provided mode or gradient context.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

import libcst as cst

from trainlint.analysis import catalog
from trainlint.analysis.flow import Action, Flow, _unwrap_iteration
from trainlint.analysis.module import Loop, ModuleModel
from trainlint.analysis.names import dotted, root_name, terminal_name
from trainlint.analysis.values import Evaluator, FuncRef, Instance, Obj, Value, call_arg, literal_value
from trainlint.analysis.walk import iter_children

MAX_CALLER_DEPTH = 3
MAX_EXPANSION_DEPTH = 4

GRAD_OFF_CONTEXTS = frozenset({"no_grad", "inference_mode"})
# Projects' own wrappers say so in their names: YOLOv5's ``smart_inference_mode``.
GRAD_OFF_SUFFIXES = ("_no_grad", "_inference_mode")
# Word starts in a loader's name that mark held-out data: ``val_loader``, ``testloader``, ``eval_dataloader``.
EVAL_DATA_PREFIXES = ("val", "test", "eval", "holdout")
MODEL_NAMES = ("model", "net", "network")
# Things called like models that are not: tokenizers and processors return inputs.
NOT_MODELS = ("Tokenizer", "Processor", "FeatureExtractor")
LIBRARY_MODEL_PREFIXES = ("torchvision.models.", "timm.", "transformers.", "torch.hub.")


class Mode(str, enum.Enum):
    TRAIN = "train"
    EVAL = "eval"
    UNKNOWN = "unknown"  # ``model.train(flag)``, or callers disagree


@dataclass(frozen=True, eq=False)
class ModeSwitch:
    """The switch that decides the mode at a point. ``call`` is the ``.eval()``/``.train()``
    call itself, or the call of a helper that leaves the mode behind; ``direct`` tells
    which (a switch made at a call site of the function is not direct). ``None`` call: the
    call sites disagree."""

    mode: Mode
    call: cst.Call | None
    module: ModuleModel | None
    direct: bool


@dataclass(frozen=True, eq=False)
class Step:
    """A mode switch (``kind`` is a :class:`Mode` value) or a backward pass (``"backward"``)
    in one loop iteration; ``anchor`` is the call in the loop's own code that leads to it."""

    kind: str
    call: cst.Call
    module: ModuleModel
    anchor: cst.Call


def mode_set_by(call: cst.Call, module: ModuleModel, ev: Evaluator) -> Mode | None:
    """The mode ``x.eval()`` / ``x.train()`` / ``x.train(False)`` switches to, or ``None``."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value not in ("eval", "train"):
        return None
    if ev.functions_called(call, module):
        return None  # a user method that happens to be called train(): a training loop
    if func.attr.value == "eval":
        return Mode.EVAL if not call.args else None
    flag = call_arg(call, 0, "mode")
    if flag is None:
        return Mode.TRAIN
    value = literal_value(flag)
    if isinstance(value, bool):
        return Mode.TRAIN if value else Mode.EVAL
    return Mode.UNKNOWN


def disables_grad(expr: cst.BaseExpression) -> bool:
    """``torch.no_grad()``, ``torch.inference_mode``, ``torch.set_grad_enabled(False)``."""
    target = expr.func if isinstance(expr, cst.Call) else expr
    name = terminal_name(target) or ""
    if name in GRAD_OFF_CONTEXTS or name.endswith(GRAD_OFF_SUFFIXES):
        return True
    if name == "set_grad_enabled" and isinstance(expr, cst.Call):
        flag = call_arg(expr, 0, "mode")
        return flag is not None and literal_value(flag) is False
    return False


def iterates_eval_data(loop: Loop) -> bool:
    """The loop walks a validation/test loader (judged by its name)."""
    return isinstance(loop, cst.For) and is_eval_name(dotted(loop_iterable(loop)) or "")


def loop_iterable(loop: cst.For) -> cst.BaseExpression:
    """The data a ``for`` walks: ``loader`` in ``enumerate(tqdm(loader))``."""
    return _unwrap_iteration(loop.iter)


def is_eval_name(name: str) -> bool:
    """``val_loader``, ``self.testloader``, ``eval_dataset``, ``dev_ds``: names of held-out
    data (but not ``values``, ``interval`` or ``device``)."""
    words = re.split(r"[^a-z]+", name.lower())
    return "dev" in words or any(w.startswith(EVAL_DATA_PREFIXES) and not w.startswith("value") for w in words)


def _mentions_grad_off(function: cst.FunctionDef) -> bool:
    """``torch.no_grad``/``inference_mode`` anywhere in the body, nested functions included:
    what a decorator (factory) that turns gradients off is built from."""
    pending: list[cst.CSTNode] = [function.body]
    while pending:
        node = pending.pop()
        if type(node) is cst.Name and node.value in GRAD_OFF_CONTEXTS:
            return True
        pending.extend(iter_children(node))
    return False


class Modes:
    """Mode and gradient queries over the loaded project; memoized per function."""

    def __init__(self, evaluator: Evaluator, flow: Flow) -> None:
        self.ev = evaluator
        self.flow = flow
        self._scope_calls: dict[int, list[cst.Call]] = {}
        self._exit_modes: dict[int, Mode | None] = {}
        self._function_steps: dict[int, list[Step]] = {}
        self._active: set[int] = set()
        self._grad_off_decorated: dict[int, bool] = {}

    # -- calls of one function body ----------------------------------------------------------

    def calls_in(self, function: cst.FunctionDef | None, module: ModuleModel) -> list[cst.Call]:
        """Calls in the body of ``function`` (module level for ``None``), nested definitions and
        decorators excluded, in source order."""
        key = id(function) if function is not None else id(module)
        calls = self._scope_calls.get(key)
        if calls is None:
            calls = [
                call
                for call in module.calls_by_function.get(function, [])
                if function is None or module.is_within(call, function.body)
            ]
            self._scope_calls[key] = calls
        return calls

    def callers(self, function: cst.FunctionDef, module: ModuleModel) -> list[tuple[cst.Call, ModuleModel]]:
        """Call sites of ``function`` in the loaded project (and sibling scripts)."""
        return self.ev.call_sites(function, module)

    # -- train/eval mode -----------------------------------------------------------------------

    def mode_at(self, node: cst.CSTNode, module: ModuleModel, depth: int = 0) -> ModeSwitch | None:
        """The switch deciding the mode at ``node``; ``None``: never switched (training mode,
        the default of a new module)."""
        function = module.enclosing_function(node)
        before = module.order_of(node)
        decided: ModeSwitch | None = None
        for call in self.calls_in(function, module):
            if module.order_of(call) >= before:
                break
            decided = self._switch_by(call, module, depth) or decided
        if decided is not None or function is None or depth >= MAX_CALLER_DEPTH:
            return decided
        return self._mode_at_entry(function, module, depth)

    def _mode_at_entry(self, function: cst.FunctionDef, module: ModuleModel, depth: int) -> ModeSwitch | None:
        verdicts = [self.mode_at(call, caller, depth + 1) for call, caller in self.callers(function, module)]
        if all(verdict is None for verdict in verdicts):
            return None  # no caller switches the mode (or there is no visible caller)
        modes = {verdict.mode if verdict is not None else Mode.TRAIN for verdict in verdicts}
        if len(modes) > 1:
            return ModeSwitch(Mode.UNKNOWN, None, None, False)
        # Callers agree: keep a switch they made, so messages can point at it.
        switch = next(verdict for verdict in verdicts if verdict is not None)
        return replace(switch, direct=False)

    def _switch_by(self, call: cst.Call, module: ModuleModel, depth: int) -> ModeSwitch | None:
        """The switch ``call`` makes itself, or through the helpers it enters."""
        direct = mode_set_by(call, module, self.ev)
        mode = direct if direct is not None else self._left_by_helpers(call, module, depth)
        return ModeSwitch(mode, call, module, direct is not None) if mode is not None else None

    def _left_by_helpers(self, call: cst.Call, module: ModuleModel, depth: int) -> Mode | None:
        """The mode user functions entered by ``call`` leave behind, if they switch it."""
        if depth >= MAX_EXPANSION_DEPTH:
            return None
        modes = {self.exit_mode(f.node, f.module, depth + 1) for f in self.ev.functions_called(call, module)}
        modes.discard(None)
        if not modes:
            return None
        return modes.pop() if len(modes) == 1 else Mode.UNKNOWN

    def exit_mode(self, function: cst.FunctionDef, module: ModuleModel, depth: int = 0) -> Mode | None:
        """The last mode ``function`` switches to, if it switches at all."""
        key = id(function)
        if key in self._exit_modes:
            return self._exit_modes[key]
        if key in self._active:
            return None
        self._active.add(key)
        try:
            last: Mode | None = None
            for call in self.calls_in(function, module):
                switch = self._switch_by(call, module, depth)
                last = switch.mode if switch is not None else last
        finally:
            self._active.discard(key)
        self._exit_modes[key] = last
        return last

    # -- gradient recording ----------------------------------------------------------------

    def grad_disabled(self, node: cst.CSTNode, module: ModuleModel, depth: int = 0) -> bool:
        """Is autograd off at ``node`` on every visible way to reach it?"""
        function = module.enclosing_function(node)
        if self._grad_off_locally(node, module, function):
            return True
        if function is None or depth >= MAX_CALLER_DEPTH:
            return False
        sites = self.callers(function, module)
        return bool(sites) and all(self.grad_disabled(call, caller, depth + 1) for call, caller in sites)

    def _grad_off_locally(self, node: cst.CSTNode, module: ModuleModel, function: cst.FunctionDef | None) -> bool:
        if function is not None and self.decorated_grad_off(function, module):
            return True
        for ancestor in module.ancestors(node):
            if ancestor is function:
                break
            if isinstance(ancestor, cst.With) and module.is_within(node, ancestor.body):
                if any(disables_grad(item.item) for item in ancestor.items):
                    return True
        # A statement ``torch.set_grad_enabled(False)`` earlier in the same function.
        return any(
            module.order_of(call) < module.order_of(node)
            and isinstance(module.parent_of(call), cst.Expr)
            and disables_grad(call)
            for call in self.calls_in(function, module)
        )

    def evaluates_after(self, call: cst.Call, module: ModuleModel) -> bool:
        """Does the code after ``call`` (same function, or a helper it calls) evaluate: an
        evaluation loop, or work without gradients outside any training loop? Tells an
        evaluation's ``model.eval()`` from a frozen teacher's."""
        function = module.enclosing_function(call)
        if function is not None and self.decorated_grad_off(function, module):
            return True
        later = [c for c in self.calls_in(function, module) if module.order_of(c) > module.order_of(call)]
        if any(
            (disables_grad(c) or self._helper_disables_grad(c, module)) and not self._in_training_loop(c, module)
            for c in later
        ):
            return True
        return any(
            module.order_of(loop) > module.order_of(call)
            and module.enclosing_function(loop) is function
            and self.evaluation_call(loop, module) is not None
            for loop in module.loops
        )

    def decorated_grad_off(self, function: cst.FunctionDef, module: ModuleModel) -> bool:
        """``@torch.no_grad()``, or a project's own decorator built on it."""
        key = id(function)
        known = self._grad_off_decorated.get(key)
        if known is None:
            known = self._grad_off_decorated[key] = any(
                self._decorator_disables_grad(decorator.decorator, module) for decorator in function.decorators
            )
        return known

    def _decorator_disables_grad(self, decorator: cst.BaseExpression, module: ModuleModel) -> bool:
        if disables_grad(decorator):
            return True
        if isinstance(decorator, cst.Call):  # a factory: ``@smart_mode()``
            wrappers = self.ev.functions_called(decorator, module)
        else:
            wrappers = [v for v in self.ev.eval(decorator, module) if isinstance(v, FuncRef)]
        return any(_mentions_grad_off(wrapper.node) for wrapper in wrappers)

    def _in_training_loop(self, node: cst.CSTNode, module: ModuleModel) -> bool:
        return any(
            event.action is Action.BACKWARD
            for loop in module.enclosing_loops(node)
            for event in self.flow.events(self.flow.loop_body(loop, module))
        )

    def _helper_disables_grad(self, call: cst.Call, module: ModuleModel) -> bool:
        return any(
            self.decorated_grad_off(f.node, f.module) or any(disables_grad(c) for c in self.calls_in(f.node, f.module))
            for f in self.ev.functions_called(call, module)
        )

    # -- models and evaluation loops ----------------------------------------------------------

    def model_calls(self, loop: Loop, module: ModuleModel) -> list[cst.Call]:
        """Calls of a model (``model(x)``, ``self.net(x)``, ``model.forward(x)``) in the loop body."""
        function = module.enclosing_function(loop)
        return [
            call
            for call in self.calls_in(function, module)
            if module.is_within(call, loop.body) and self.is_model_call(call, module)
        ]

    def is_model_call(self, call: cst.Call, module: ModuleModel) -> bool:
        target = model_expression(call)
        text = dotted(target) if target is not None else None
        if target is None or text is None or text == "self":
            return False  # a model calling itself (generate loops) decides nothing about its callers
        values = self.ev.eval(target, module)
        if values:
            return any(self._is_model_value(value) for value in values)
        name = text.rsplit(".", 1)[-1].lower()
        return name in MODEL_NAMES or name.endswith(("model", "net"))

    def _is_model_value(self, value: Value) -> bool:
        if isinstance(value, Instance):
            return self.ev.method(value.cls, "forward") is not None
        if isinstance(value, Obj):
            qualname = value.qualname
            if any(word in qualname for word in NOT_MODELS) or qualname in catalog.LOSS_CLASSES:
                return False
            if qualname.startswith(LIBRARY_MODEL_PREFIXES) or qualname in catalog.MODEL_WRAPPERS:
                return True
            return qualname.startswith("torch.nn.") and not qualname.startswith("torch.nn.functional")
        return False

    def evaluation_call(self, loop: Loop, module: ModuleModel) -> cst.Call | None:
        """The first model call of an evaluation loop: a loop that runs a model without a
        backward pass or optimizer step, under ``no_grad`` or over held-out data."""
        held_out = iterates_eval_data(loop)
        calls = self.model_calls(loop, module)
        # Whether gradients are off can take a search through every caller: ask last.
        if not calls or (not held_out and not self._may_skip_grad(loop, module)):
            return None
        actions = {event.action for event in self.flow.events(self.flow.loop_body(loop, module))}
        if actions & {Action.BACKWARD, Action.STEP}:
            return None
        if held_out or self.grad_disabled(calls[0], module):
            return calls[0]
        return None

    def _may_skip_grad(self, loop: Loop, module: ModuleModel) -> bool:
        """Gradients are off around the loop, or some of its body turns them off."""
        function = module.enclosing_function(loop)
        if self._grad_off_locally(loop, module, function) or any(
            disables_grad(call) for call in self.calls_in(function, module) if module.is_within(call, loop.body)
        ):
            return True
        # Looking through every caller is costly; only loops over data can be evaluation
        # loops whose no_grad lives in a caller (loops over layers in a forward cannot).
        return _iterates_data(loop) and self.grad_disabled(loop, module)

    # -- one loop iteration, helpers expanded -----------------------------------------------------

    def iteration_steps(self, loop: Loop, module: ModuleModel) -> list[Step]:
        """Mode switches and backward passes of one iteration of ``loop``, in order."""
        function = module.enclosing_function(loop)
        calls = [c for c in self.calls_in(function, module) if module.is_within(c, loop.body)]
        return self._steps(calls, module, 0)

    def trains_between(self, start: cst.Call, end: cst.CSTNode, module: ModuleModel) -> bool:
        """Does a backward pass run (in the same function, helpers expanded) after ``start``
        and before ``end``?"""
        function = module.enclosing_function(start)
        first, last = module.order_of(start), module.order_of(end)
        between = [c for c in self.calls_in(function, module) if first < module.order_of(c) < last]
        return any(step.kind == "backward" for step in self._steps(between, module, 0))

    def _steps(self, calls: list[cst.Call], module: ModuleModel, depth: int) -> list[Step]:
        steps: list[Step] = []
        for call in calls:
            mode = mode_set_by(call, module, self.ev)
            event = self.flow.classify(call, module) if mode is None else None
            if mode is not None:
                steps.append(Step(mode.value, call, module, call))
            elif event is not None and event.action is Action.BACKWARD:
                steps.append(Step("backward", call, module, call))
            elif event is None and depth < MAX_EXPANSION_DEPTH:
                for function in self.ev.functions_called(call, module):
                    steps.extend(replace(step, anchor=call) for step in self._function_steps_of(function.node, function.module, depth + 1))
        return steps

    def _function_steps_of(self, function: cst.FunctionDef, module: ModuleModel, depth: int) -> list[Step]:
        key = id(function)
        if key in self._function_steps:
            return self._function_steps[key]
        if key in self._active:
            return []
        self._active.add(key)
        try:
            steps = self._steps(self.calls_in(function, module), module, depth)
        finally:
            self._active.discard(key)
        self._function_steps[key] = steps
        return steps


# The Modes of the latest flow only. (A WeakKeyDictionary keyed by the flow never released
# its entries, because each Modes refers to its flow: every project of a run stayed alive.)
_LATEST: tuple[Flow, Modes] | None = None


def modes_for(evaluator: Evaluator, flow: Flow) -> Modes:
    """One :class:`Modes` per lint run, so the rules of every file share its memos."""
    global _LATEST
    if _LATEST is None or _LATEST[0] is not flow:
        _LATEST = (flow, Modes(evaluator, flow))
    return _LATEST[1]


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


_LAYER_ITERATORS = frozenset({"range", "children", "modules", "parameters", "named_children", "named_modules",
                              "named_parameters", "items", "keys", "values"})


def _iterates_data(loop: Loop) -> bool:
    """A ``for`` loop over something other than ``range(...)``, module structure or ``self``'s
    own attributes (``for blk in self.blocks``)."""
    if not isinstance(loop, cst.For):
        return False
    iterable = loop.iter
    while isinstance(iterable, cst.Call) and terminal_name(iterable.func) in ("enumerate", "zip", "tqdm", "iter") and iterable.args:
        iterable = iterable.args[0].value
    if isinstance(iterable, cst.Call) and terminal_name(iterable.func) in _LAYER_ITERATORS:
        return False
    return root_name(iterable) != "self"
