"""The ``overfit_batch`` check: can the pipeline memorise one fixed batch?

Any working model/loss/optimizer combination drives the loss on 8-32 fixed samples close
to zero within a few hundred steps. When it does not, the curve says why (NaN, rising,
oscillating, flat), a run with the reference ``Adam(lr=1e-3)`` tells "your optimizer
settings" from "the model cannot learn", and a zero-input control tells "ignores its input"
from "cannot optimize".
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlint.diagnostics import Finding
from trainlint.probe.batches import Forward, Runner
from trainlint.probe.codes import finding
from trainlint.probe.initial_loss import minimum_loss
from trainlint.probe.optimizer_check import ProbeOptimizer
from trainlint.probe.progress import StepCallback
from trainlint.probe.task import Kind, Task, class_axis

# Shares of the gap between the starting loss and the floor (the lowest reachable loss).
TARGET_FRACTION = 0.05  # pass when the loss reaches 5% of its start
MOVED = 0.98  # a best loss above 98% of the start means the loss did not move
MIN_JUDGED_STEPS = 20  # fewer steps tell a slow start from a stuck model only by NaN
IMPROVING = 0.02  # the last quarter of a run lowers the best loss by 2% of the start
SAME_AS_CONTROL = 0.9  # real-input best no better than 90% of the zero-input best
OSCILLATION_SHARE, OSCILLATION_AMPLITUDE = 0.4, 0.05


@dataclass
class Curve:
    """The losses of one overfitting run (before each update)."""

    losses: list[float] = field(default_factory=list)
    # The lowest loss the batch allows (soft labels, label smoothing); ratios use the gap.
    floor: float = 0.0
    passed: bool = False
    by_accuracy: bool = False

    @property
    def start(self) -> float:
        return self.losses[0]

    @property
    def best(self) -> float:
        finite = [v for v in self.losses if math.isfinite(v)]
        return min(finite) if finite else math.nan

    @property
    def span(self) -> float:
        """How far the start is above the floor: 100% of what can be learned."""
        return self.start - self.floor

    def share(self, value: float) -> float:
        """``value``'s remaining gap to the floor as a share of the starting gap."""
        return (value - self.floor) / self.span

    @property
    def nonfinite(self) -> bool:
        return any(not math.isfinite(v) for v in self.losses)

    @property
    def judgeable(self) -> bool:
        """Ratios against the start only mean something for a finite start above the floor."""
        return bool(self.losses) and math.isfinite(self.start) and self.span > 0

    @property
    def moved(self) -> bool:
        return self.share(self.best) < MOVED

    @property
    def improving(self) -> bool:
        """Still going down at the end: the last quarter beats everything before it."""
        if len(self.losses) < 8 or self.nonfinite:
            return False
        cut = len(self.losses) * 3 // 4
        return min(self.losses[cut:]) < min(self.losses[:cut]) - IMPROVING * self.span

    @property
    def rising(self) -> bool:
        tail = self.losses[-5:]
        return len(self.losses) > 5 and self.share(statistics.fmean(tail)) > 1.1

    @property
    def oscillating(self) -> bool:
        diffs = [b - a for a, b in itertools.pairwise(self.losses)]
        if len(diffs) < 10:
            return False
        flips = sum(1 for a, b in itertools.pairwise(diffs) if a * b < 0) / (len(diffs) - 1)
        amplitude = statistics.fmean(abs(d) for d in diffs)
        return flips > OSCILLATION_SHARE and amplitude > OSCILLATION_AMPLITUDE * self.span


def run(
    runner: Runner,
    batch: Any,
    optimizer: ProbeOptimizer,
    task: Task,
    max_steps: int,
    after_backward: Callable[[], None] | None = None,
    on_step: StepCallback | None = None,
) -> Curve:
    """Train on ``batch`` until the loss reaches 5% of its start (or 100% accuracy).

    With soft labels or label smoothing the loss cannot reach 0, so "5% of its start" is
    measured above the floor the targets allow.
    """
    curve = Curve()
    with optimizer.fresh() as opt:
        for step in range(max_steps):
            opt.zero_grad(set_to_none=True)
            if _step(runner, batch, task, curve, after_backward):
                break
            if on_step is not None:
                on_step(step, curve.losses[-1])
            opt.step()
    return curve


def _step(
    runner: Runner,
    batch: Any,
    task: Task,
    curve: Curve,
    after_backward: Callable[[], None] | None,
) -> bool:
    """Forward, record, backward; True when the run is over (passed or non-finite).

    A function of its own so the step's graph is freed before the next forward.
    """
    forward, loss = runner.step_loss(batch)
    value = float(loss.detach())
    curve.losses.append(value)
    if len(curve.losses) == 1:
        curve.floor = minimum_loss(task, _detached(forward.logits), forward.targets)
    if not math.isfinite(value):
        return True
    if curve.judgeable and curve.share(value) <= TARGET_FRACTION:
        curve.passed = True
        return True
    if len(curve.losses) > 1 and _all_correct(forward, task):
        curve.passed = curve.by_accuracy = True
        return True
    # The autograd graph keeps what backward needs; the outputs themselves (a language
    # model's logits are hundreds of MB) would only add to the peak, as in a plain step.
    del forward
    loss.backward()
    if after_backward is not None:
        after_backward()
    return False


def _detached(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return tensor.detach() if tensor is not None else None


def _all_correct(forward: Forward, task: Task) -> bool:
    """100% accuracy on the batch, for hard-label classification only."""
    logits, targets = forward.logits, forward.targets
    if logits is None or not isinstance(targets, torch.Tensor):
        return False
    logits = logits.detach()
    axis = class_axis(task, logits, targets)
    if task.classification and not targets.dtype.is_floating_point and axis is not None:
        predicted = logits.argmax(dim=axis)
        if predicted.shape != targets.shape:
            return False
        keep = (
            targets != task.ignore_index
            if task.ignore_index is not None
            else torch.ones_like(targets, dtype=torch.bool)
        )
        return bool(keep.any()) and bool((predicted[keep] == targets[keep]).all())
    if task.binary and logits.shape == targets.shape:
        hard = (targets == 0) | (targets == 1)
        if not bool(hard.all()):
            return False
        threshold = 0.0 if task.kind is Kind.BINARY_LOGITS else 0.5
        return bool(((logits > threshold) == (targets > 0.5)).all())
    return False


@dataclass
class Runs:
    """The user's run, and the reference and zero-input control runs when they were needed."""

    user: Curve
    optimizer: ProbeOptimizer
    reference: Curve | None = None
    control: Curve | None = None
    # Why the user's optimizer cannot work, when the optimizer check already knows (P601/P603).
    known_cause: str | None = None


def summary(runs: Runs) -> str:
    curve = runs.user
    if not curve.losses:
        return "no step ran"
    how = "100% accuracy" if curve.by_accuracy else f"≤ {TARGET_FRACTION:.0%} of start"
    if curve.passed:
        return f"reached {how} in {len(curve.losses)} steps ({curve.start:.4g} → {curve.losses[-1]:.4g})"
    return f"{curve.start:.4g} → best {curve.best:.4g} in {len(curve.losses)} steps with {runs.optimizer.description}"


def judge(runs: Runs, max_steps: int) -> list[Finding]:
    """Classify a failed overfitting run from its curves."""
    user = runs.user
    if user.passed or not user.losses:
        return []
    details = _details(runs)
    if not user.judgeable:
        return []  # a loss that starts at or below 0 has no "5% of start" to reach
    reference = runs.reference
    if reference is not None and reference.passed:
        return [_optimizer_settings(user, runs, max_steps, details)]
    model_curve = reference or user
    if model_curve.nonfinite:
        return [
            _diverged(
                model_curve, "the model or loss produces NaN/Inf even with Adam(lr=1e-3)", details
            )
        ]
    if len(model_curve.losses) < MIN_JUDGED_STEPS:
        return [
            _still_improving(model_curve, max_steps, details, " (too few steps to judge the curve)")
        ]
    if model_curve.rising or model_curve.oscillating:
        return [_unstable(model_curve, details)]
    if model_curve.improving:
        return [_still_improving(model_curve, max_steps, details)]
    control = runs.control
    if (
        control is not None
        and control.moved
        and not control.nonfinite
        and model_curve.best - model_curve.floor >= SAME_AS_CONTROL * (control.best - control.floor)
    ):
        return [
            finding(
                "P404",
                f"the model ignores its input: with the inputs replaced by zeros it fits the "
                f"batch as well (best loss {control.best:.4g} vs {model_curve.best:.4g} on the "
                "real inputs)",
                "The input does not reach the output: dead units (see P508), a detached or "
                "unused trunk (P501/P502), the wrong tensor used in forward, or inputs scaled "
                "to ~0.",
                subject="model",
                details=details,
            )
        ]
    if not model_curve.moved:
        return [
            finding(
                "P403",
                f"the loss does not decrease on a single fixed batch ({model_curve.start:.4g} → "
                f"best {model_curve.best:.4g} in {len(model_curve.losses)} steps)",
                "Causes, most likely first: a detached graph (see gradient_flow), dead units, "
                "a learning rate of 0 or far too low, a loss that ignores the outputs.",
                subject="model",
                details=details,
            )
        ]
    if model_curve.share(model_curve.best) <= 0.5:
        return [_still_improving(model_curve, max_steps, details)]
    return [
        finding(
            "P405",
            f"the loss plateaus at {model_curve.share(model_curve.best):.0%} of its start while "
            f"overfitting one batch ({model_curve.start:.4g} → best {model_curve.best:.4g} in "
            f"{len(model_curve.losses)} steps)",
            "Check the learning rate, normalization (inputs and regression targets) and "
            "initialization; a model far too small for the batch also shows this.",
            subject="model",
            details=details,
        )
    ]


def _optimizer_settings(
    user: Curve, runs: Runs, max_steps: int, details: dict[str, Any]
) -> Finding:
    """The reference Adam overfits, the user's optimizer does not: blame its settings."""
    name = runs.optimizer.description
    if len(user.losses) < MIN_JUDGED_STEPS and not user.nonfinite:
        return _still_improving(
            user, max_steps, details, f" with {name} (too few steps to judge the curve)"
        )
    if user.nonfinite:
        return _diverged(
            user,
            f"{name} diverges where Adam(lr=1e-3) overfits: the learning rate is too high",
            details,
        )
    if user.rising or user.oscillating:
        return _unstable(user, details, name)
    if not user.moved:
        return finding(
            "P405",
            f"with {name} the loss does not move ({user.start:.4g} → best {user.best:.4g} in "
            f"{len(user.losses)} steps) while Adam(lr=1e-3) overfits the batch: "
            + (runs.known_cause or "the learning rate is probably far too low"),
            "Fix the optimizer finding above."
            if runs.known_cause
            else "Raise the learning rate (an LR range test finds a good one).",
            subject="optimizer",
            details=details,
        )
    return _still_improving(user, max_steps, details, f" with {name} (Adam(lr=1e-3) overfits it)")


def _still_improving(
    curve: Curve, max_steps: int, details: dict[str, Any], note: str = ""
) -> Finding:
    return finding(
        "P406",
        f"the batch was not memorised in {max_steps} steps{note}; the loss went "
        f"{curve.start:.4g} → best {curve.best:.4g}",
        "Probably fine: rerun with a larger max_steps to confirm.",
        subject="model",
        details=details,
    )


def _diverged(curve: Curve, cause: str, details: dict[str, Any]) -> Finding:
    step = next(i for i, v in enumerate(curve.losses) if not math.isfinite(v))
    return finding(
        "P401",
        f"the loss became {curve.losses[step]} at step {step} while overfitting one batch: {cause}",
        "Lower the learning rate, check log/sqrt/division of zero in the loss, and with "
        "float16 AMP use a GradScaler or bfloat16.",
        subject="loss",
        details=details | {"nonfinite_step": step},
    )


def _unstable(curve: Curve, details: dict[str, Any], name: str = "the optimizer") -> Finding:
    shape = "rises" if curve.rising else "oscillates"
    return finding(
        "P402",
        f"with {name} the loss {shape} while overfitting one batch ({curve.start:.4g} → "
        f"last {curve.losses[-1]:.4g}): the learning rate is too high",
        "Lower the learning rate by 3-10x, add warm-up, or clip gradients.",
        subject="optimizer",
        details=details,
    )


def _details(runs: Runs) -> dict[str, Any]:
    def curve_info(curve: Curve | None) -> dict[str, Any] | None:
        if curve is None or not curve.losses:
            return None
        return {
            "steps": len(curve.losses),
            "start": curve.start,
            "best": curve.best,
            "floor": curve.floor,
            "last": curve.losses[-1],
        }

    return {
        "optimizer": runs.optimizer.description,
        "user": curve_info(runs.user),
        "reference": curve_info(runs.reference),
        "zero_input_control": curve_info(runs.control),
    }
