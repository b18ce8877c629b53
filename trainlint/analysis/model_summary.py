"""Which layers a model contains, as far as the code shows: does it have any layer whose
behaviour differs between ``model.train()`` and ``model.eval()``?

Only dropout and batch-norm-like layers (running statistics) care about the mode; LayerNorm,
GroupNorm, linear and convolution layers do not. The answer is three-valued: ``True`` (has
such a layer, or is a library model that is assumed to), ``False`` (every layer is known and
none cares about the mode) and ``None`` (unknown). Rules that want silence for mode-free
models act only on ``False``.
"""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.values import ClassRef, DictV, Evaluator, Instance, LibRef, Lit, Obj, SeqV, Value, call_arg, literal_value

MAX_DEPTH = 6

# Layers that always behave differently in training mode.
MODE_DEPENDENT = frozenset(
    {
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
        "LazyBatchNorm3d", "SyncBatchNorm", "Transformer", "TransformerEncoder",
        "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer",
    }
)
# Layers that carry dropout only when built with ``dropout=`` > 0.
DROPOUT_ARGUMENT = frozenset({"MultiheadAttention", "LSTM", "GRU", "RNN"})
# Instance norms keep running statistics only with ``track_running_stats=True``.
RUNNING_STATS_ARGUMENT = frozenset({"InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"})
MODE_FREE = frozenset(
    {
        "Linear", "LazyLinear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
        "ConvTranspose2d", "ConvTranspose3d", "ReLU", "ReLU6", "GELU", "SiLU", "Mish", "Tanh",
        "Sigmoid", "Softmax", "LogSoftmax", "LeakyReLU", "ELU", "SELU", "PReLU", "Softplus",
        "Hardswish", "Hardtanh", "LayerNorm", "GroupNorm", "RMSNorm", "LocalResponseNorm",
        "Embedding", "EmbeddingBag", "Flatten", "Unflatten", "Identity", "MaxPool1d",
        "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d", "Upsample", "PixelShuffle", "ZeroPad2d", "ConstantPad1d",
        "ConstantPad2d", "ReflectionPad2d", "Parameter",
    }
)
CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
# ``F.dropout(x, p, training=self.training)`` and friends inside a forward.
FUNCTIONAL_MODE_DEPENDENT = frozenset(
    {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm"}
)
# Registering submodules by name hides them from the attribute index.
DYNAMIC_REGISTRATION = frozenset({"add_module", "register_module", "setattr"})


def has_mode_layers(values: tuple[Value, ...], ev: Evaluator) -> bool | None:
    """Do the models ``values`` may be contain a dropout or batch-norm-like layer?"""
    return _combine(_value_has(value, ev, 0, set()) for value in values) if values else None


def _combine(verdicts: Iterable[bool | None]) -> bool | None:
    """``True`` if any part has such layers, else ``None`` if any part is unknown."""
    seen_unknown = False
    for verdict in verdicts:
        if verdict is True:
            return True
        seen_unknown = seen_unknown or verdict is None
    return None if seen_unknown else False


def _value_has(value: Value, ev: Evaluator, depth: int, visiting: set[int]) -> bool | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, Obj):
        return _library_has(value, ev, depth, visiting)
    if isinstance(value, Instance):
        return _class_has(value.cls, ev, depth, visiting)
    if isinstance(value, SeqV):
        return _combine(_expr_has(e.value, value.module, ev, depth + 1, visiting) for e in value.node.elements)
    if isinstance(value, DictV):
        return _combine(
            _expr_has(e.value, value.module, ev, depth + 1, visiting)
            for e in value.node.elements
            if isinstance(e, cst.DictElement)
        )
    if isinstance(value, Lit) or (isinstance(value, LibRef) and _is_torch_function(value.qualname)):
        return False  # ``self.groups = 1``, ``self.conv = F.conv2d``: no layer held
    return None


def _is_torch_function(qualname: str) -> bool:
    return qualname.startswith("torch.") and qualname.rsplit(".", 1)[-1][:1].islower()


def _expr_has(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int, visiting: set[int]) -> bool | None:
    values = ev.eval(expr, module)
    return _combine(_value_has(v, ev, depth, visiting) for v in values) if values else None


def _layer_name(qualname: str) -> str | None:
    """``Dropout`` for ``torch.nn.Dropout`` and ``torch.nn.modules.dropout.Dropout``."""
    if qualname.startswith("torch.nn.") and not qualname.startswith("torch.nn.functional"):
        return qualname.rsplit(".", 1)[-1]
    return None


def _library_has(obj: Obj, ev: Evaluator, depth: int, visiting: set[int]) -> bool | None:
    layer = _layer_name(obj.qualname)
    if layer is None:
        return True  # a library model (torchvision, timm, transformers): assume it has them
    if layer in MODE_DEPENDENT:
        return True
    if layer in MODE_FREE:
        return False
    if layer in DROPOUT_ARGUMENT:
        return _literal_flag(call_arg(obj.call, None, "dropout"), default=False)
    if layer in RUNNING_STATS_ARGUMENT:
        return _literal_flag(call_arg(obj.call, None, "track_running_stats"), default=False)
    if layer in CONTAINERS:
        return _combine(
            _expr_has(arg.value, obj.module, ev, depth + 1, visiting) if not arg.star else None
            for arg in obj.call.args
        )
    return None


def _literal_flag(expr: cst.BaseExpression | None, default: bool) -> bool | None:
    """A truthy literal (``dropout=0.1``, ``track_running_stats=True``) turns the layer mode-dependent."""
    if expr is None:
        return default
    value = literal_value(expr)
    return None if value is ... else bool(value)


def _class_has(cls: ClassRef, ev: Evaluator, depth: int, visiting: set[int]) -> bool | None:
    key = id(cls.node)
    if key in visiting:
        return False  # a recursive reference adds no new layer types
    if ev.base_qualnames(cls) - {"torch.nn.Module", "torch.nn.modules.module.Module"}:
        return None  # nn.Sequential subclasses, library base models: layers are not all visible
    visiting.add(key)
    try:
        return _combine(
            verdict
            for klass in ev.class_chain(cls)
            for verdict in (_functional_layers(klass, ev), *_attribute_layers(klass, ev, depth, visiting))
        )
    finally:
        visiting.discard(key)


def _attribute_layers(klass: ClassRef, ev: Evaluator, depth: int, visiting: set[int]) -> list[bool | None]:
    verdicts: list[bool | None] = []
    for assignments in klass.module.self_attrs.get(klass.node, {}).values():
        for assignment in assignments:
            # Layers unpacked from a tuple (``self.a, self.b = ...``) are not followed.
            values = () if assignment.path else ev.eval(assignment.value, klass.module)
            if values:
                verdicts.extend(_value_has(v, ev, depth + 1, visiting) for v in values)
            elif isinstance(assignment.value, cst.Call):
                verdicts.append(None)  # built by something we cannot see
            # Plain values that evaluate to nothing (sizes, flags, config fields) hold no layer.
    return verdicts


def _functional_layers(klass: ClassRef, ev: Evaluator) -> bool | None:
    """``F.dropout`` / ``F.batch_norm`` in a method: mode-dependent; dynamic registration: unknown."""
    module = klass.module
    unknown = False
    for call in module.calls:
        if not module.is_within(call, klass.node):
            continue
        name = terminal_name(call.func)
        if name in FUNCTIONAL_MODE_DEPENDENT and any(q.startswith("torch.") for q in ev.callee(call, module)):
            return True
        unknown = unknown or name in DYNAMIC_REGISTRATION
    return None if unknown else False
