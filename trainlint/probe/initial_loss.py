"""The ``initial_loss`` check: is the loss at step 0 what an untrained model should give?

A freshly initialised classifier predicts roughly uniformly, so cross-entropy starts near
``log C`` and BCE-with-logits near ``log 2``; a regressor predicting ~0 starts near the
target's mean square. Far above means over-confident logits (huge init, unnormalized inputs,
wrong loss reduction); far below means the labels leak into the inputs or the loss is wrong.
The lower bound uses the batch's label-prior entropy, so a head whose bias is initialised
to the class prior (a good practice) is not flagged.

The step-0 loss is measured in train mode, as training sees it. Healthy architectures often
start well above ``log C`` there: BatchNorm normalises every layer with batch statistics,
so a head initialised at ``±1/sqrt(C)`` (torchvision's EfficientNet and MNASNet) meets
unit-scale features, and dropout or stochastic depth rescale what survives. An excess is
therefore judged only once an eval-mode forward of the same batch (running statistics, no
dropout) confirms it: the weights' own scale (a huge init) shows in both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from trainlint.diagnostics import Finding, Severity
from trainlint.probe import stats
from trainlint.probe.codes import finding
from trainlint.probe.task import Kind, Task, class_axis

WARN_HIGH, ERROR_HIGH, WARN_LOW = 1.5, 3.0, 0.5
# Logits this spread make the softmax one-hot at init. Healthy heads meeting BatchNorm's
# unit-scale features stay well below (EfficientNet ~2, MNASNet ~8); a N(0, 1) head
# without the 1/sqrt(fan_in) factor lands far above (~12-25 on 512-1280 features).
SATURATED_STD = 10.0


@dataclass(frozen=True)
class Expectation:
    value: float
    label: str  # e.g. "log 10"
    floor: float  # the lowest plausible value at initialization (label-prior entropy)


@dataclass(frozen=True)
class Measured:
    """The train-mode step-0 loss against its expectation, before any eval-mode evidence."""

    loss: float
    task: Task
    expectation: Expectation | None
    details: dict[str, Any]

    @property
    def excess(self) -> bool:
        """Above the warning bar in train mode: an eval-mode loss decides what it means."""
        return (
            self.expectation is not None
            and math.isfinite(self.loss)
            and self.loss > WARN_HIGH * self.expectation.value
        )


def measure(loss: float, task: Task, logits: torch.Tensor | None, targets: Any) -> Measured:
    """What the first step showed; the logits and targets are not kept."""
    details: dict[str, Any] = {"loss": loss, **_logit_scale(logits)}
    expectation = expect(task, logits, targets) if math.isfinite(loss) else None
    if expectation is not None:
        details.update(expected=expectation.value, expected_label=expectation.label)
    return Measured(loss, task, expectation, details)


def judge(measured: Measured, eval_loss: float | None = None) -> tuple[list[Finding], str]:
    """Findings and a one-line summary for the report's verdict table.

    ``eval_loss`` is the same batch's loss in eval mode, measured when ``measured.excess``
    (None when it was not measured or could not be).
    """
    loss, task, details = measured.loss, measured.task, dict(measured.details)
    if not math.isfinite(loss):
        return [
            finding(
                "P304",
                f"the initial loss is {loss}",
                "Check the inputs and outputs for NaN/Inf, and log/division of zero in the loss.",
                subject="loss",
                details=details,
            )
        ], f"loss {loss}"
    expectation = measured.expectation
    if expectation is None:
        return [
            finding(
                "P305",
                f"initial loss {loss:.4g} ({task.loss_name}: no expected value for this task)",
                "Pass a standard loss (CrossEntropyLoss, BCEWithLogitsLoss, MSELoss...) for a "
                "task-aware check.",
                subject="loss",
                details=details,
            )
        ], f"loss {loss:.4g} (no expectation)"
    summary = f"loss {loss:.4g}, expected ≈ {expectation.label} = {expectation.value:.4g}"
    if eval_loss is not None and math.isfinite(eval_loss):
        details.update(eval_loss=eval_loss, eval_ratio=eval_loss / expectation.value)
    found = _compare(loss, expectation, task, details)
    if measured.excess and not found and "eval_loss" in details:
        summary += f"; {details['eval_loss']:.4g} in eval mode ({TRAIN_ONLY})"
    return found, summary


def expect(task: Task, logits: torch.Tensor | None, targets: Any) -> Expectation | None:
    """The expected initial loss, scaled to the loss's reduction; None when unknown."""
    if not isinstance(targets, torch.Tensor) or task.reduction not in ("mean", "sum"):
        return None
    per_element = _per_element(task, logits, targets)
    if per_element is None:
        return None
    expectation, count = per_element
    if task.reduction == "sum":
        return Expectation(
            expectation.value * count, f"{count} × {expectation.label}", expectation.floor * count
        )
    return expectation


def _per_element(
    task: Task, logits: torch.Tensor | None, targets: torch.Tensor
) -> tuple[Expectation, int] | None:
    if task.classification:
        return _classification(task, logits, targets)
    if task.binary and targets.dtype.is_floating_point:
        return _binary(task, targets), targets.numel()
    if task.regression and targets.dtype.is_floating_point:
        values = targets.double()
        mean = float(values.pow(2).mean() if task.kind is Kind.REGRESSION else values.abs().mean())
        label = "mean(y²)" if task.kind is Kind.REGRESSION else "mean(|y|)"
        # No floor: identity paths (denoisers, residual regressors) legitimately start low.
        return (Expectation(mean, label, 0.0), targets.numel()) if mean > 1e-8 else None
    return None


def _classification(
    task: Task, logits: torch.Tensor | None, targets: torch.Tensor
) -> tuple[Expectation, int] | None:
    axis = class_axis(task, logits, targets)
    if logits is None or axis is None:
        return None
    classes = int(logits.shape[axis])
    if classes < 2:
        return None
    if targets.dtype.is_floating_point:
        # Soft labels: their own entropy is the floor, so assume none.
        return Expectation(math.log(classes), f"log {classes}", 0.0), targets.numel() // classes
    valid = targets if task.ignore_index is None else targets[targets != task.ignore_index]
    if valid.numel() == 0 or int(valid.min()) < 0 or int(valid.max()) >= classes:
        return None
    floor = _entropy(torch.bincount(valid.flatten(), minlength=classes).double())
    return Expectation(math.log(classes), f"log {classes}", floor), valid.numel()


def _binary(task: Task, targets: torch.Tensor) -> Expectation:
    """``log 2`` at zero logits; the floor is the mean per-label prior entropy.

    ``pos_weight`` multiplies the positive terms, so the zero-logit loss grows with it.
    """
    flat = (
        targets.double().reshape(targets.shape[0], -1)
        if targets.dim()
        else targets.double().reshape(1, 1)
    )
    if task.pos_weight is not None:
        weight = task.pos_weight.detach().double().to(flat.device)
        factor = float((flat * weight + (1 - flat)).mean())
        return Expectation(math.log(2) * factor, f"{factor:.3g} × log 2 (pos_weight)", 0.0)
    prior = flat.mean(dim=0).clamp(0.0, 1.0)
    entropy = -(
        prior * prior.clamp_min(1e-12).log() + (1 - prior) * (1 - prior).clamp_min(1e-12).log()
    )
    return Expectation(math.log(2), "log 2", float(entropy.mean()))


def minimum_loss(task: Task, logits: torch.Tensor | None, targets: Any) -> float:
    """The lowest loss the batch allows: 0 for hard labels and regression, the targets'
    own entropy for soft labels and label smoothing (what overfitting can reach at best).
    """
    if (
        not task.direct
        or not isinstance(targets, torch.Tensor)
        or task.reduction not in ("mean", "sum")
    ):
        return 0.0
    if task.kind is Kind.MULTICLASS:
        per_element, count = _smoothed_entropy(task, logits, targets)
    elif task.binary and targets.dtype.is_floating_point and task.pos_weight is None:
        y = targets.detach().double().clamp(0.0, 1.0)
        entropy = -(y * y.clamp_min(1e-12).log() + (1 - y) * (1 - y).clamp_min(1e-12).log())
        per_element, count = float(entropy.mean()), targets.numel()
    else:
        return 0.0
    return per_element * count if task.reduction == "sum" else per_element


def _smoothed_entropy(
    task: Task, logits: torch.Tensor | None, targets: torch.Tensor
) -> tuple[float, int]:
    """Mean entropy of the (possibly label-smoothed) target distributions, and their count."""
    axis = class_axis(task, logits, targets)
    if logits is None or axis is None:
        return 0.0, 0
    classes = int(logits.shape[axis])
    eps = task.label_smoothing
    if targets.dtype.is_floating_point and targets.shape == logits.shape:
        q = (1 - eps) * targets.detach().double() + eps / classes
        entropy = -(q * q.clamp_min(1e-12).log()).sum(dim=axis)
        return float(entropy.mean()), entropy.numel()
    if eps == 0:
        return 0.0, 0
    top = 1 - eps + eps / classes
    rest = eps / classes
    valid = targets if task.ignore_index is None else targets[targets != task.ignore_index]
    return -(top * math.log(top) + (classes - 1) * rest * math.log(rest)), valid.numel()


def _entropy(counts: torch.Tensor) -> float:
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def _logit_scale(logits: torch.Tensor | None) -> dict[str, float]:
    if logits is None or not logits.dtype.is_floating_point:
        return {}
    moments = stats.finite_moments(logits.detach())
    if moments is None:
        return {}
    return {"logit_std": moments.std, "logit_absmax": moments.absmax}


TRAIN_ONLY = "batch statistics or dropout at init, not the weights' scale"


def _compare(
    loss: float, expectation: Expectation, task: Task, details: dict[str, Any]
) -> list[Finding]:
    ratio = loss / expectation.value
    details["ratio"] = ratio
    # A wrapper around the loss may add terms or rescale: report, but do not accuse.
    severity = None if task.direct else Severity.INFO
    scale_text = (
        f" (logit std {details['logit_std']:.3g}, max |logit| {details['logit_absmax']:.3g})"
        if "logit_std" in details
        else ""
    )
    head = f"initial loss {loss:.4g} is {ratio:.2f}x the expected {expectation.label} = {expectation.value:.4g}"
    if ratio > WARN_HIGH:
        return _too_high(head + scale_text, ratio, task, details, severity)
    if loss < WARN_LOW * expectation.floor:
        return [
            finding(
                "P303",
                f"initial loss {loss:.4g} is below half of what an untrained model can reach "
                f"({expectation.floor:.4g}, the label-prior entropy){scale_text}",
                "Check that the targets do not leak into the inputs, that the loss is not "
                "divided twice (reduction='sum' then '/ N**2'), and that the right labels are used.",
                subject="loss",
                details=details | {"floor": expectation.floor},
                severity=severity,
            )
        ]
    return []


def _too_high(
    text: str, ratio: float, task: Task, details: dict[str, Any], severity: Severity | None
) -> list[Finding]:
    """Judged on the smaller of the train- and eval-mode ratios: an excess that vanishes in
    eval mode comes from batch statistics or dropout, which training recovers from at once.

    Eval mode can also hide a real bug: with running statistics still at their defaults,
    some BatchNorm networks (EfficientNet) shrink their features to almost nothing at init,
    so even a huge head gives small eval logits. A train-only excess is therefore still a
    warning when the logits saturate the softmax, and information above the error bar.
    """
    eval_ratio = details.get("eval_ratio")
    judged = min(ratio, eval_ratio) if eval_ratio is not None else ratio
    if eval_ratio is not None:
        same = abs(eval_ratio - ratio) <= 0.1 * ratio
        text += "; the same in eval mode" if same else f"; {eval_ratio:.2f}x in eval mode"
    hint = (
        "The model is confidently wrong before training: check the initialization scale "
        "(no huge std, zero-init the last layer or scale it down), input normalization, "
        "and that the loss uses reduction='mean'."
    )
    if task.regression:
        hint = (
            "The initial predictions are much larger than the targets: check the output "
            "layer's initialization and the input/target scaling."
        )
    if judged > WARN_HIGH:
        code = "P301" if judged > ERROR_HIGH else "P302"
        return [finding(code, text, hint, subject="loss", details=details, severity=severity)]
    if not task.regression and details.get("logit_std", 0.0) > SATURATED_STD:
        text += (
            f": in train mode only, but logits spread this wide (std > {SATURATED_STD:g}) "
            "make the softmax one-hot, beyond what batch statistics give a standard head"
        )
        return [finding("P302", text, hint, subject="loss", details=details, severity=severity)]
    if ratio <= ERROR_HIGH:
        return []
    return [
        finding(
            "P302",
            f"{text}: in train mode only, so {TRAIN_ONLY}",
            "Usual for BatchNorm networks whose head is initialised large (MNASNet, "
            "EfficientNet); if you initialised the head yourself, check its scale.",
            subject="loss",
            details=details,
            severity=Severity.INFO,
        )
    ]
