"""The ``gradient_flow`` check: after real backward passes, where does the gradient go?

Evidence is a union over several batches (the gradient batches, then every overfitting
step), so a branch that only some batches take, or a LoRA-style zero-initialised path that
comes alive after one update, is not reported as broken.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from trainlint.diagnostics import Finding, Severity
from trainlint.probe.codes import finding
from trainlint.probe.names import ROOT, collapse, module_of
from trainlint.probe.spy import DropoutCall

# A layer is "dead" when this share of its units never gets a gradient.
DEAD_WARN, DEAD_ERROR = 0.5, 0.9
VANISH_RATIO, VANISH_ABS = 1e-3, 1e-5
# Exploding: norms growing towards the input (first/last) while already large, or absurd.
EXPLODE_RATIO, EXPLODE_FIRST, EXPLODE_ABS = 1e3, 1.0, 1e6
# Median ||update|| / ||weight|| after one step: info outside the first band, warn outside
# the second (Adam at lr=1e-3 lands around 1e-3..5e-2 on typical layers).
RATIO_INFO = (1e-4, 1e-1)
RATIO_WARN = (1e-6, 1.0)
_Text = Callable[[str, list[str]], tuple[str, str]]
_UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TABLE_LAYERS = (nn.Embedding, nn.EmbeddingBag)


@dataclass
class GradientEvidence:
    """What backward passes have shown so far, per trainable parameter name."""

    names: list[str]
    got_grad: set[str] = field(default_factory=set)
    nonzero: set[str] = field(default_factory=set)
    nonfinite: set[str] = field(default_factory=set)
    norms: dict[str, list[float]] = field(default_factory=dict)
    live_units: dict[str, torch.Tensor] = field(default_factory=dict)
    ran: set[str] = field(default_factory=set)


class GradientRecorder:
    """Collects :class:`GradientEvidence` from the model's ``.grad`` after each backward."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.modules = dict(model.named_modules())
        self.units = {
            name: module
            for name, module in self.modules.items()
            if isinstance(module, _UNIT_LAYERS) and module.weight.requires_grad
        }
        self.evidence = GradientEvidence(list(self.params))

    @contextlib.contextmanager
    def watching_calls(self) -> Iterator[None]:
        """Forward hooks that remember which modules ran (unused vs detached)."""
        handles = [
            module.register_forward_hook(self._ran_hook(name))
            for name, module in self.modules.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _ran_hook(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            self.evidence.ran.add(name)

        return hook

    def record(self, gradient_batch: bool) -> None:
        """Fold the current ``.grad`` values into the evidence.

        Norms and NaN checks come from the gradient batches only (the initial weights);
        overfitting steps only add to the union of "got a gradient" evidence.
        """
        ev = self.evidence
        for name, param in self.params.items():
            if param.grad is None:
                continue
            # Sparse embedding gradients: only the stored values can be zero or non-finite.
            grad = param.grad.coalesce().values() if param.grad.is_sparse else param.grad
            ev.got_grad.add(name)
            if name not in ev.nonzero and bool((grad != 0).any()):
                ev.nonzero.add(name)
            if gradient_batch:
                if not bool(torch.isfinite(grad).all()):
                    ev.nonfinite.add(name)
                ev.norms.setdefault(name, []).append(float(grad.detach().float().norm()))
        for name, module in self.units.items():
            live = _live_units(module)
            if live is not None:
                seen = ev.live_units.get(name)
                ev.live_units[name] = live if seen is None else seen | live

    def suspects_cleared(self) -> bool:
        """True when later steps can no longer change any finding (skip the bookkeeping)."""
        ev = self.evidence
        return (
            len(ev.got_grad) == len(ev.names)
            and len(ev.nonzero) == len(ev.names)
            and all(bool(live.all()) for live in ev.live_units.values())
        )


def _live_units(module: nn.Module) -> torch.Tensor | None:
    """Output units whose pre-activation got a gradient (bias grad, else weight rows).

    The bias gradient is the sum of the unit's output gradients, so it is zero exactly when
    the unit is dead; weight rows would also be zero when the layer's *input* is zero.
    """
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.requires_grad and bias.grad is not None:
        return (bias.grad != 0).detach().cpu()
    weight = module.weight
    if not isinstance(weight, torch.Tensor) or weight.grad is None or weight.grad.is_sparse:
        return None
    return (weight.grad.reshape(weight.shape[0], -1) != 0).any(dim=1).detach().cpu()


def findings(recorder: GradientRecorder) -> tuple[list[Finding], list[tuple[str, float]]]:
    """Findings from the evidence, and per-layer gradient norms for the report's chart."""
    ev = recorder.evidence
    dead, dead_modules = _dead_units(recorder)
    missing = [n for n in ev.names if n not in ev.got_grad]
    unused = [n for n in missing if not _called(recorder, n)]
    detached = [n for n in missing if n not in unused]
    zero = [
        n
        for n in ev.names
        if n in ev.got_grad and n not in ev.nonzero and module_of(n) not in dead_modules
    ]
    result = [
        *_grouped("P501", unused, ev.names, _unused_text),
        *_grouped("P502", detached, ev.names, _detached_text),
        *_grouped("P504", sorted(ev.nonfinite, key=ev.names.index), ev.names, _nonfinite_text),
        *dead,
        *_grouped("P503", zero, ev.names, _zero_text),
        *_norm_findings(recorder),
    ]
    return result, layer_norms(recorder)


def _called(recorder: GradientRecorder, name: str) -> bool:
    """Whether the module owning parameter ``name`` ran in forward.

    ParameterList/ParameterDict are never called themselves: their owner is what runs.
    """
    owner = module_of(name)
    while owner and isinstance(recorder.modules.get(owner), (nn.ParameterList, nn.ParameterDict)):
        owner = module_of(owner)
    return not owner or owner in recorder.evidence.ran


def _grouped(code: str, names: list[str], universe: list[str], text: _Text) -> list[Finding]:
    """One finding per module owning all of ``names`` below it; ``text`` gives message, hint."""
    result = []
    for subject, members in collapse(names, universe).items():
        message, hint = text(subject, members)
        result.append(
            finding(code, message, hint, subject=subject, details={"parameters": members})
        )
    return result


def _unused_text(subject: str, members: list[str]) -> tuple[str, str]:
    return (
        f"`{subject}` ({len(members)} trainable parameter(s)) was never called in forward, "
        "so it gets no gradient; DistributedDataParallel fails on such unused parameters",
        "Remove the unused module, call it in forward, or freeze it; with DDP pass "
        "find_unused_parameters=True only if the branch is conditional by design.",
    )


def _detached_text(subject: str, members: list[str]) -> tuple[str, str]:
    return (
        f"`{subject}` ({len(members)} trainable parameter(s)) ran in forward but received no "
        "gradient: the graph is cut between it and the loss",
        "Look for `.detach()`, `.data`, `.item()`/`.numpy()` round-trips, `torch.no_grad()` "
        "or a non-differentiable op (argmax, rounding, indexing with computed ints) on its "
        "output.",
    )


def _nonfinite_text(subject: str, members: list[str]) -> tuple[str, str]:
    return (
        f"`{subject}` has NaN/Inf gradients after one backward pass",
        "Check for log/sqrt/division of zero, huge activations, and inputs with NaN; "
        "clip gradients only after fixing the cause.",
    )


def _zero_text(subject: str, members: list[str]) -> tuple[str, str]:
    return (
        f"the gradient of `{subject}` is exactly zero on every batch and step",
        "Its input or its output path is zero: dead units upstream, a multiplication by a "
        "zero-initialised gate that never opens, or a saturated activation.",
    )


def _dead_units(recorder: GradientRecorder) -> tuple[list[Finding], set[str]]:
    result, modules = [], set()
    for name, live in recorder.evidence.live_units.items():
        fraction = 1.0 - float(live.float().mean())
        if fraction < DEAD_WARN:
            continue
        modules.add(name)
        kind = type(recorder.modules[name]).__name__
        result.append(
            finding(
                "P508",
                f"{fraction:.0%} of the {live.numel()} output units of `{name}` ({kind}) get no "
                "gradient on any sample: dead ReLU units (or unused outputs)",
                "Check the bias/weight initialization of this layer (a large negative bias "
                "kills ReLUs), lower the learning rate, or use LeakyReLU/GELU.",
                subject=name,
                details={"dead_fraction": fraction, "units": live.numel()},
                severity=Severity.ERROR if fraction >= DEAD_ERROR else Severity.WARNING,
            )
        )
    return result, modules


def _weight_layers(recorder: GradientRecorder) -> list[str]:
    """Matrix/conv weights in registration order, without lookup tables."""
    return [
        name
        for name, param in recorder.params.items()
        if param.dim() >= 2
        and not isinstance(recorder.modules.get(module_of(name)), _TABLE_LAYERS)
        and recorder.evidence.norms.get(name)
    ]


def layer_norms(recorder: GradientRecorder) -> list[tuple[str, float]]:
    norms = recorder.evidence.norms
    return [
        (module_of(name) or ROOT, statistics.fmean(norms[name]))
        for name, param in recorder.params.items()
        if param.dim() >= 2 and norms.get(name)
    ]


def _norm_findings(recorder: GradientRecorder) -> list[Finding]:
    layers = _weight_layers(recorder)
    norms = {n: statistics.fmean(recorder.evidence.norms[n]) for n in layers}
    if not all(math.isfinite(v) for v in norms.values()):
        return []  # P504 already reports non-finite gradients
    result = []
    if len(layers) >= 3:
        first, last = norms[layers[0]], norms[layers[-1]]
        if 0 < first < VANISH_ABS and last > 0 and first / last < VANISH_RATIO:
            result.append(
                finding(
                    "P505",
                    f"gradients vanish towards the input: |grad| of `{module_of(layers[0])}` is "
                    f"{first:.2e}, {first / last:.1e}x that of `{module_of(layers[-1])}`",
                    "Use residual connections and normalization layers, ReLU/GELU instead of "
                    "sigmoid/tanh in deep stacks, and He/Xavier initialization.",
                    subject=module_of(layers[0]),
                    details={"first": first, "last": last, "ratio": first / last},
                )
            )
    if not norms:
        return result
    worst = max(norms, key=norms.__getitem__)
    growing = (
        len(layers) >= 3
        and norms[layers[-1]] > 0
        and norms[layers[0]] > EXPLODE_FIRST
        and (norms[layers[0]] / norms[layers[-1]] > EXPLODE_RATIO)
    )
    if growing or norms[worst] > EXPLODE_ABS:
        result.append(
            finding(
                "P506",
                f"exploding gradients: |grad| of `{module_of(worst)}` is {norms[worst]:.3g} after "
                f"one backward pass (last layer: {norms[layers[-1]]:.3g})",
                "Lower the initialization scale, normalize inputs, activations and regression "
                "targets, and clip gradients (`clip_grad_norm_`) as a safety net.",
                subject=module_of(worst),
                details={"norm": norms[worst], "last": norms[layers[-1]]},
            )
        )
    return result


def update_ratio_findings(ratios: dict[str, float]) -> list[Finding]:
    """Judge the median ||Δw|| / ||w|| of one optimizer step over weight matrices."""
    if not ratios:
        return []
    median = statistics.median(ratios.values())
    low_warn, high_warn = RATIO_WARN
    low_info, high_info = RATIO_INFO
    if low_info <= median <= high_info:
        return []
    severity = Severity.WARNING if not low_warn <= median <= high_warn else Severity.INFO
    too_big = median > high_info
    worst = max(ratios, key=ratios.__getitem__) if too_big else min(ratios, key=ratios.__getitem__)
    direction = (
        "large: the learning rate is probably too high"
        if too_big
        else ("small: the learning rate is probably too low")
    )
    return [
        finding(
            "P507",
            f"one optimizer step changes the weights by a median {median:.1e} of their norm "
            f"(healthy ≈ 1e-4…1e-1), too {direction}",
            "Tune the learning rate (an LR range test helps); for Adam 1e-4…3e-3 is typical, "
            "for SGD with momentum 1e-3…1e-1.",
            subject=worst,
            details={"median": median, "per_layer": ratios},
            severity=severity,
        )
    ]


def update_ratios(
    recorder: GradientRecorder, optimized: set[int], before: dict[str, torch.Tensor]
) -> dict[str, float]:
    """``||w_after - w_before|| / ||w_before||`` per weight layer held by the optimizer.

    ``before`` holds host copies; the comparison happens on the host, one layer at a time,
    so not even a single layer is duplicated on the accelerator.
    """
    ratios = {}
    for name in _weight_layers(recorder):
        param = recorder.params[name]
        # Zero-gradient layers are reported on their own; their ratio of 0 would skew the median.
        if (
            id(param) not in optimized
            or name not in before
            or name not in recorder.evidence.nonzero
        ):
            continue
        old = before[name].float()
        norm = float(old.norm())
        if norm > 0:
            new = param.detach().to("cpu", torch.float32)
            ratios[module_of(name) or ROOT] = float((new - old).norm()) / norm
    return ratios


def zeroing_dropout(calls: list[DropoutCall]) -> list[Finding]:
    """Dropout with p >= 1 in training: its output is all zeros, nothing behind it learns.

    A config value (``hidden_dropout_prob=1.0``) reaches every dropout module at once: one
    finding names them all, led by the first that ran.
    """
    seen: dict[str, DropoutCall] = {}
    for call in calls:
        if call.training and call.p >= 1.0:
            seen.setdefault(call.module or ROOT, call)
    if not seen:
        return []
    modules = list(seen)
    first = seen[modules[0]]
    named = ", ".join(f"`{m}`" for m in modules[:3])
    probabilities = {f"{seen[m].p:g}" for m in modules}
    p = probabilities.pop() if len(probabilities) == 1 else ">=1"
    who = (
        f"`{modules[0]}` applies {first.function} with p={p}"
        if len(modules) == 1
        else f"{len(modules)} dropout layers apply p={p} ({named}"
        + (f" and {len(modules) - 3} more)" if len(modules) > 3 else ")")
    )
    return [
        finding(
            "P510",
            f"{who}: every activation is zeroed in training, so no gradient flows back "
            f"through {'it' if len(modules) == 1 else 'them'} and the layers before never "
            "learn (they then look dead or unused)",
            "Use a drop probability in [0, 1), typically 0.1-0.5 (`nn.Dropout(p=0.1)`); check "
            "configs that pass a keep-probability where a drop probability is expected.",
            subject=modules[0],
            details={"function": first.function, "p": first.p, "modules": modules},
        )
    ]