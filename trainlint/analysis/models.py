"""What is a model, and which layers it contains as far as the code shows.

"Is this an ``nn.Module``?" is answered here and nowhere else: by what built the value
(a user class with ``forward`` or a module base class, a torch layer, a library model),
else by the name people give models. The layer summary answers whether a model has any
layer whose behaviour differs between ``model.train()`` and ``model.eval()``: only dropout
and batch-norm-like layers (running statistics) care. It is three-valued: ``True`` (has such
a layer, or is a library model assumed to), ``False`` (every layer is known and none cares)
and ``None`` (unknown). Rules that want silence for mode-free models act only on ``False``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.walk import iter_children
from trainlint.analysis.values import ClassRef, DictV, Evaluator, FuncRef, Instance, LibRef, Lit, Obj, SeqV, Value, call_arg, literal_value

MAX_DEPTH = 6
# Names people give to models; used only when nothing is known about the value.
MODEL_NAME = re.compile(
    r"^_?(\w*_)?(model|net|network|encoder|decoder|backbone|generator|discriminator|classifier|teacher|student)\d*$"
    r"|^\w*(model|net)\d*$",
    re.IGNORECASE,
)
# Names of a model's submodules (``model.fc``, ``model.backbone``, ``model.layer4``); a
# model's other attributes may be parameters (``cls_token``, ``pos_embed``).
SUBMODULE_NAME = re.compile(
    r"^(fc\d*|heads?|classifier|features|backbone|encoder|decoder|layer\d+|layers|conv\d*|bn\d*|blocks?|stem|neck"
    r"|proj|linear\d*|lm_head|transformer|visual|text_model|vision_model|embeddings)$"
)
# Registering submodules by name hides them from the attribute index.
DYNAMIC_REGISTRATION = frozenset({"add_module", "register_module", "setattr"})


def is_model_value(value: Value, ev: Evaluator) -> bool:
    if isinstance(value, Instance):
        return is_model_class(value.cls, ev)
    if isinstance(value, Obj):
        return brains.is_model(value.qualname)
    return False


def is_model_class(cls: ClassRef, ev: Evaluator) -> bool:
    """A user class deriving from ``nn.Module`` (or a library model); or one defining
    ``forward`` whose bases cannot all be seen (a plain class with ``forward`` is not)."""
    if any(brains.is_module_base(base) for base in ev.base_qualnames(cls)):
        return True
    unseen = any(not ev.eval(base.value, klass.module) for klass in ev.class_chain(cls) for base in klass.node.bases)
    return unseen and ev.method(cls, "forward") is not None


def is_model(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """Known to be an ``nn.Module``, or unknown and named like a model."""
    values = [v for v in ev.eval(expr, module) if isinstance(v, (Instance, Obj, LibRef, FuncRef))]
    if any(is_model_value(v, ev) for v in values):
        return True
    if values and all(_known_not_model(v, ev) for v in values):
        return False
    # Objects of libraries nothing is known about (``torchtune.modules...``): by name.
    name = terminal_name(expr)
    return name is not None and (MODEL_NAME.match(name) is not None or _used_as_model(name, module))


def _known_not_model(value: Value, ev: Evaluator) -> bool:
    """A value known to be something else than a model: a user function, an instance of a
    plain class, a library object of a known kind or from torch itself."""
    if isinstance(value, Obj):
        return brains.kind_of(value.qualname) is not None or value.qualname.startswith("torch.")
    return isinstance(value, (Instance, FuncRef, LibRef))


# Methods only modules have: an object something calls these on is a model (``G_AB``, ``netD``).
MODULE_METHODS = ("eval", "train", "parameters", "named_parameters", "zero_grad", "state_dict", "load_state_dict")


def _used_as_model(name: str, module: ModuleModel) -> bool:
    return name in module.receivers_of(MODULE_METHODS)


def share_modules(a: tuple[Value, ...], b: tuple[Value, ...], ev: Evaluator) -> bool:
    """Whether two models may hold the same modules because one was built over the other,
    or both over a third: ``Tokenizer(decoder)`` and ``LossWrapper(decoder)`` both train
    ``decoder``'s parameters."""
    return bool(_built_from(a, ev, 0) & _built_from(b, ev, 0))


def _built_from(values: Iterable[Value], ev: Evaluator, depth: int) -> set[tuple[int, int | None]]:
    """The constructor calls (with the factory call that made them, if any) of models and,
    recursively, of the models passed to them."""
    found: set[tuple[int, int | None]] = set()
    for value in values:
        if isinstance(value, Instance):
            site, module = value.site, value.where
        elif isinstance(value, Obj):
            site, module = value.call, value.module
        else:
            continue
        if site is None or module is None or not is_model_value(value, ev):
            continue
        found.add((id(site), id(value.via.call) if value.via is not None else None))
        if depth < MAX_DEPTH:
            for arg in site.args:
                found |= _built_from(ev.eval(arg.value, module), ev, depth + 1)
    return found


@dataclass(frozen=True)
class LayerQuestion:
    """A yes/no question about a model's layers: ``layer`` answers it for one torch layer,
    ``functional`` for the ``torch.nn.functional`` names a forward may call."""

    layer: Callable[[str, Obj], bool | None]
    functional: frozenset[str]
    reads_training: bool = False  # a class whose code reads ``self.training`` answers yes


def _mode_layer(layer: str, obj: Obj) -> bool | None:
    if layer in T.MODE_DEPENDENT_LAYERS:
        return True
    if layer in T.MODE_FREE_LAYERS:
        return False
    if layer in T.DROPOUT_ARGUMENT_LAYERS:
        return _literal_flag(call_arg(obj.call, None, "dropout"), default=False)
    if layer in T.RUNNING_STATS_ARGUMENT_LAYERS:
        return _literal_flag(call_arg(obj.call, None, "track_running_stats"), default=False)
    return None


def _exempt_layer(layer: str, obj: Obj) -> bool | None:
    """Biases and normalization weights: the parameters weight decay should spare."""
    if layer in T.NORM_LAYERS:
        return True
    if layer in T.BIASED_LAYERS:
        return _literal_flag(call_arg(obj.call, None, "bias"), default=True)
    if layer in T.MODE_FREE_LAYERS or layer in T.MODE_DEPENDENT_LAYERS:
        return False  # activations, pooling, dropout, embeddings: no bias
    return None


# Layers whose behaviour differs between train() and eval() (dropout, batch norm).
MODE = LayerQuestion(_mode_layer, T.FUNCTIONAL_MODE_DEPENDENT, reads_training=True)
# Layers with a bias or a normalization weight.
EXEMPT = LayerQuestion(_exempt_layer, T.FUNCTIONAL_NORMS)


def has_mode_layers(values: tuple[Value, ...], ev: Evaluator) -> bool | None:
    """Do the models ``values`` may be contain a dropout or batch-norm-like layer?"""
    return has_layers(values, ev, MODE)


def has_layers(values: tuple[Value, ...], ev: Evaluator, question: LayerQuestion) -> bool | None:
    """Does any layer of the models ``values`` may be answer ``question`` with yes?"""
    return _combine(_value_has(value, ev, 0, set(), question) for value in values) if values else None


def _combine(verdicts: Iterable[bool | None]) -> bool | None:
    """``True`` if any part has such layers, else ``None`` if any part is unknown."""
    seen_unknown = False
    for verdict in verdicts:
        if verdict is True:
            return True
        seen_unknown = seen_unknown or verdict is None
    return None if seen_unknown else False


def _value_has(value: Value, ev: Evaluator, depth: int, visiting: set[int], q: LayerQuestion) -> bool | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, Obj):
        return _library_has(value, ev, depth, visiting, q)
    if isinstance(value, Instance):
        return _class_has(value.cls, ev, depth, visiting, q)
    if isinstance(value, SeqV):
        return _combine(_expr_has(e.value, value.module, ev, depth + 1, visiting, q) for e in value.node.elements)
    if isinstance(value, DictV):
        return _combine(
            _expr_has(e.value, value.module, ev, depth + 1, visiting, q)
            for e in value.node.elements
            if isinstance(e, cst.DictElement)
        )
    if isinstance(value, Lit) or (isinstance(value, LibRef) and _is_torch_function(value.qualname)):
        return False  # ``self.groups = 1``, ``self.conv = F.conv2d``: no layer held
    return None


def _is_torch_function(qualname: str) -> bool:
    return qualname.startswith("torch.") and qualname.rsplit(".", 1)[-1][:1].islower()


def _expr_has(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int, visiting: set[int], q: LayerQuestion) -> bool | None:
    values = ev.eval(expr, module)
    return _combine(_value_has(v, ev, depth, visiting, q) for v in values) if values else None


def _library_has(obj: Obj, ev: Evaluator, depth: int, visiting: set[int], q: LayerQuestion) -> bool | None:
    layer = T.layer_name(obj.qualname)
    if layer is None:
        return True  # a library model (torchvision, timm, transformers): assume it has them
    if layer in T.CONTAINER_LAYERS:
        return _combine(
            _expr_has(arg.value, obj.module, ev, depth + 1, visiting, q) if not arg.star else None
            for arg in obj.call.args
        )
    return q.layer(layer, obj)


def _literal_flag(expr: cst.BaseExpression | None, default: bool) -> bool | None:
    """A truthy literal (``dropout=0.1``, ``bias=True``) says yes, a falsy one no."""
    if expr is None:
        return default
    value = literal_value(expr)
    return None if value is ... else bool(value)


def _class_has(cls: ClassRef, ev: Evaluator, depth: int, visiting: set[int], q: LayerQuestion) -> bool | None:
    key = id(cls.node)
    if key in visiting:
        return False  # a recursive reference adds no new layer types
    if ev.base_qualnames(cls) - T.MODULE_BASES:
        return None  # nn.Sequential subclasses, library base models: layers are not all visible
    visiting.add(key)
    try:
        return _combine(
            verdict
            for klass in ev.class_chain(cls)
            for verdict in (_functional_layers(klass, ev, q), *_attribute_layers(klass, ev, depth, visiting, q))
        )
    finally:
        visiting.discard(key)


def _attribute_layers(klass: ClassRef, ev: Evaluator, depth: int, visiting: set[int], q: LayerQuestion) -> list[bool | None]:
    verdicts: list[bool | None] = []
    for assignments in klass.module.self_attrs.get(klass.node, {}).values():
        for assignment in assignments:
            # Layers unpacked from a tuple (``self.a, self.b = ...``) are not followed.
            values = () if assignment.path else ev.eval(assignment.value, klass.module)
            if values:
                verdicts.extend(_value_has(v, ev, depth + 1, visiting, q) for v in values)
            elif isinstance(assignment.value, cst.Call):
                verdicts.append(None)  # built by something we cannot see
            # Plain values that evaluate to nothing (sizes, flags, config fields) hold no layer.
    return verdicts


def _functional_layers(klass: ClassRef, ev: Evaluator, q: LayerQuestion) -> bool | None:
    """A functional call that answers the question (``F.dropout``): yes; dynamic
    registration of submodules: unknown."""
    module = klass.module
    if q.reads_training and _reads_training(klass):
        return True  # ``if not self.training: return x``: a hand-written dropout
    unknown = False
    for call in module.within(module.calls, klass.node):
        name = terminal_name(call.func)
        if name in q.functional and any(q_.startswith("torch.") for q_ in ev.callee(call, module)):
            return True
        unknown = unknown or name in DYNAMIC_REGISTRATION
    return None if unknown else False


def _reads_training(klass: ClassRef) -> bool:
    pending: list[cst.CSTNode] = [klass.node.body]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Attribute) and node.attr.value == "training" and isinstance(node.value, cst.Name) and node.value.value == "self":
            return True
        pending.extend(iter_children(node))
    return False
