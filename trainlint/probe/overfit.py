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

from trainlint.diagnostics import Finding, Severity
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
# After reaching the target, a few more steps must stay finite and near it: a learning rate
# that lands on a low loss by luck and then diverges has not earned "passed".
CONFIRM_STEPS, RELAPSE = 5, 0.25
# A loss above 150% of its start after step 0 is a spike (the start is 100% of the gap).
SPIKE, CALM = 1.5, 1.2
# A curve whose last quarter is this far below its first quarter is making progress: noise
# on top of it (dropout, stochastic depth) is jitter, not a learning rate that is too high.
PROGRESS = 0.1


@dataclass
class Curve:
    """The losses of one overfitting run (before each update)."""

    losses: list[float] = field(default_factory=list)
    # The lowest loss the batch allows (soft labels, label smoothing); ratios use the gap.
    floor: float = 0.0
    passed: bool = False
    by_accuracy: bool = False
    # Reached the target, then went NaN or far back up within CONFIRM_STEPS.
    relapsed: bool = False
    reached_at: int | None = None

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
    def peak(self) -> float:
        """The highest share of the start reached after step 0 (finite losses only)."""
        later = [self.share(v) for v in self.losses[1:] if math.isfinite(v)]
        return max(later) if later and self.judgeable else 0.0

    @property
    def spiked(self) -> bool:
        return self.peak > SPIKE

    @property
    def progressing(self) -> bool:
        """The last quarter averages well below the first: jitter rides on real progress."""
        quarter = len(self.losses) // 4
        if quarter < 2 or self.nonfinite:
            return False
        first = statistics.fmean(self.losses[:quarter])
        last = statistics.fmean(self.losses[-quarter:])
        return last < first - PROGRESS * self.span

    @property
    def oscillating(self) -> bool:
        diffs = [b - a for a, b in itertools.pairwise(self.losses)]
        if len(diffs) < 10 or self.progressing:
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
    """Train on ``batch`` until the loss reaches 5% of its start (or 100% accuracy), then
    ``CONFIRM_STEPS`` more steps that must stay finite and near the target.

    With soft labels or label smoothing the loss cannot reach 0, so "5% of its start" is
    measured above the floor the targets allow.
    """
    curve = Curve()
    confirm = 0
    with optimizer.fresh() as opt:
        for step in range(max_steps + CONFIRM_STEPS):
            opt.zero_grad(set_to_none=True)
            reached = _step(runner, batch, task, curve, after_backward, confirming=confirm > 0)
            if on_step is not None:
                on_step(min(step, max_steps - 1), curve.losses[-1])
            if not math.isfinite(curve.losses[-1]) or curve.relapsed:
                curve.passed, curve.by_accuracy = False, False
                break
            if reached and not curve.passed:
                curve.passed, confirm = True, CONFIRM_STEPS
                curve.reached_at = len(curve.losses)
            elif curve.passed:
                confirm -= 1
                if confirm == 0:
                    break
            elif step + 1 >= max_steps:
                break
            opt.step()
    return curve


def _step(
    runner: Runner,
    batch: Any,
    task: Task,
    curve: Curve,
    after_backward: Callable[[], None] | None,
    confirming: bool,
) -> bool:
    """Forward, record, backward; True when this step reached the target.

    A function of its own so the step's graph is freed before the next forward.
    """
    forward, loss = runner.step_loss(batch)
    value = float(loss.detach())
    curve.losses.append(value)
    if len(curve.losses) == 1:
        curve.floor = minimum_loss(task, _detached(forward.logits), forward.targets)
    if not math.isfinite(value):
        return False
    reached = curve.judgeable and curve.share(value) <= TARGET_FRACTION
    if not reached and len(curve.losses) > 1 and _all_correct(forward, task):
        reached = curve.by_accuracy = True
    if confirming and not reached and curve.judgeable and curve.share(value) > RELAPSE:
        curve.relapsed = True
    # The autograd graph keeps what backward needs; the outputs themselves (a language
    # model's logits are hundreds of MB) would only add to the peak, as in a plain step.
    del forward
    loss.backward()
    if after_backward is not None:
        after_backward()
    return reached


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
        spike = f", spiked to {curve.peak:.0%} of start on the way" if curve.spiked else ""
        return (
            f"reached {how} in {curve.reached_at} steps ({curve.start:.4g} → "
            f"{curve.losses[-1]:.4g}, stable for {CONFIRM_STEPS} more){spike}"
        )
    fate = " then went back up" if curve.relapsed else ""
    return (
        f"{curve.start:.4g} → best {curve.best:.4g}{fate} in {len(curve.losses)} steps with "
        f"{runs.optimizer.description}"
    )


def needs_reference(runs: Runs) -> bool:
    """A reference run tells the user's optimizer from the model: after a failure or a spike."""
    user = runs.user
    return (
        not runs.optimizer.is_reference
        and user.judgeable
        and (not user.passed or user.spiked)
    )


def judge(runs: Runs, max_steps: int) -> list[Finding]:
    """Classify an overfitting run from its curves (and the reference's)."""
    user = runs.user
    if not user.losses or not user.judgeable:
        return []  # a loss that starts at or below 0 has no "5% of start" to reach
    details = _details(runs)
    reference = runs.reference
    if user.passed:
        if user.spiked and reference is not None and reference.peak <= CALM:
            return [_spike(user, reference, runs, details)]
        return []
    if reference is not None and reference.passed:
        return [_optimizer_settings(user, runs, max_steps, details)]
    if reference is not None:
        blamed = _worse_than_reference(user, reference, runs, details)
        if blamed is not None:
            return [blamed]
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
    if model_curve.rising or model_curve.oscillating:
        return [_unstable(model_curve, details)]
    if model_curve.improving or model_curve.progressing:
        return [_budget(runs, max_steps, details)]
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
        return [_budget(runs, max_steps, details)]
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


def _worse_than_reference(
    user: Curve, reference: Curve, runs: Runs, details: dict[str, Any]
) -> Finding | None:
    """Neither run overfits, but the user's optimizer clearly does worse than the reference."""
    name = runs.optimizer.description
    if user.relapsed and not reference.relapsed:
        return _relapse(user, runs, details)
    if user.nonfinite and not reference.nonfinite:
        return _diverged(
            user, f"{name} diverges where Adam(lr=1e-3) stays finite: the learning rate is too high", details
        )
    if (user.rising or user.oscillating) and not (reference.rising or reference.oscillating):
        return _unstable(user, details, name)
    if user.spiked and reference.peak <= CALM:
        return _spike(user, reference, runs, details)
    if not user.moved and reference.share(reference.best) <= 0.5:
        return finding(
            "P405",
            f"with {name} the loss does not move ({user.start:.4g} → best {user.best:.4g}) "
            f"while Adam(lr=1e-3) brings it to {reference.share(reference.best):.0%} of its "
            "start: " + (runs.known_cause or "the learning rate is probably far too low"),
            "Fix the optimizer finding above."
            if runs.known_cause
            else "Raise the learning rate (an LR range test finds a good one).",
            subject="optimizer",
            details=details,
        )
    return None


def _spike(user: Curve, reference: Curve, runs: Runs, details: dict[str, Any]) -> Finding:
    step = next(i for i, v in enumerate(user.losses) if i and user.share(v) > SPIKE)
    return finding(
        "P402",
        f"with {runs.optimizer.description} the loss spiked from {user.start:.4g} to "
        f"{user.losses[step]:.4g} at step {step}, while Adam(lr=1e-3) stays below "
        f"{max(reference.peak, 1.0):.0%} of its start: the learning rate is too high"
        + (" for the first steps" if user.passed else ""),
        "Lower the learning rate or add a warm-up; clip gradients (`clip_grad_norm_`).",
        subject="optimizer",
        details=details | {"spike_step": step, "peak_share": user.peak},
        # The batch was still memorised: a warning; otherwise the spike is why it was not.
        severity=Severity.WARNING if user.passed else Severity.ERROR,
    )


def _relapse(user: Curve, runs: Runs, details: dict[str, Any]) -> Finding:
    reached = user.reached_at or len(user.losses)
    return finding(
        "P402",
        f"with {runs.optimizer.description} the loss reached {user.losses[reached - 1]:.4g} at "
        f"step {reached - 1}, then went back up to {user.losses[-1]:.4g}"
        + " while Adam(lr=1e-3) overfits steadily: the learning rate is too high, the low "
        "loss was luck",
        "Lower the learning rate by 3-10x, add warm-up, or clip gradients.",
        subject="optimizer",
        details=details | {"reached_at": reached},
    )


def _budget(runs: Runs, max_steps: int, details: dict[str, Any]) -> Finding:
    """Nothing is wrong that the probe can see: the batch just needs more steps."""
    tried = runs.optimizer.description
    who = f"neither {tried} nor Adam(lr=1e-3) fits" if runs.reference else f"{tried} does not fit"
    curve = runs.reference or runs.user
    return finding(
        "P406",
        f"the batch was not memorised in {max_steps} steps, but the loss is still going down "
        f"({curve.start:.4g} → best {curve.best:.4g}): {who} it within this budget, which "
        "is not a bug by itself",
        "Probably fine: rerun with a larger max_steps to confirm.",
        subject="model",
        details=details,
    )


def _optimizer_settings(
    user: Curve, runs: Runs, max_steps: int, details: dict[str, Any]
) -> Finding:
    """The reference Adam overfits, the user's optimizer does not: blame its settings."""
    name = runs.optimizer.description
    reference = runs.reference
    assert reference is not None
    if user.nonfinite:
        return _diverged(
            user,
            f"{name} diverges where Adam(lr=1e-3) overfits: the learning rate is too high",
            details,
        )
    if user.relapsed:
        return _relapse(user, runs, details)
    if user.spiked and reference.peak <= CALM:
        return _spike(user, reference, runs, details)
    if len(user.losses) < MIN_JUDGED_STEPS:
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
