"""The ``amp_overflow`` check: does the model survive float16 mixed precision?

A forward pass under float16 autocast (CUDA, or CPU autocast without a GPU) with forward
hooks names the first module whose output is non-finite or beyond the float16 range; a few
GradScaler steps show whether loss scaling copes. Without ``amp_dtype`` the user does not
train in float16 yet, so overflow findings are warnings ("if you enable float16 AMP").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding, Severity
from trainlint.probe.batches import Runner, tensors
from trainlint.probe.codes import finding
from trainlint.probe.errors import raised
from trainlint.probe.optimizer_check import ProbeOptimizer

FP16_MAX = float(torch.finfo(torch.float16).max)
SCALER_STEPS = 30
MAX_CONSECUTIVE_SKIPS, MAX_SKIP_SHARE = 10, 0.2
_ADAM_LIKE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax")


@dataclass(frozen=True)
class AmpSetup:
    device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def dtype(self) -> torch.dtype:
        return self.amp_dtype or torch.float16

    @property
    def emulated(self) -> bool:
        """CPU without ``amp_dtype``: float16 autocast there is ~45x slower than float32 and
        says nothing about CUDA, so float32 activations are checked against the float16
        range instead (no autocast, no GradScaler steps)."""
        return self.device.type == "cpu" and self.amp_dtype is None

    @property
    def severity(self) -> Severity:
        """Errors when the user trains with this AMP dtype, warnings when only considering it."""
        return Severity.ERROR if self.amp_dtype is not None else Severity.WARNING


@dataclass(frozen=True)
class _Event:
    module: str
    kind: str  # "non-finite" | "beyond float16 range"
    absmax: float
    dtype: str


def half_adam_eps(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[Finding]:
    """float16 parameters (``model.half()``) with an Adam eps that is 0 in float16."""
    if not any(p.dtype == torch.float16 for p in model.parameters() if p.requires_grad):
        return []
    if optimizer is None:
        name, eps = "Adam (probe default)", 1e-8
    elif type(optimizer).__name__ in _ADAM_LIKE:
        name, eps = type(optimizer).__name__, float(optimizer.defaults.get("eps", 1e-8))
    else:
        return []
    if float(torch.tensor(eps, dtype=torch.float16)) != 0.0:
        return []
    return [
        finding(
            "P705",
            f"the model's parameters are float16 (model.half()) and {name} uses eps={eps:g}, "
            "which is 0 in float16: the update divides by sqrt(v)+0 and turns into Inf/NaN",
            "Keep float32 master weights and use torch.autocast(dtype=torch.float16) with a "
            "GradScaler (or bfloat16); if you must train in half, use eps >= 1e-4.",
            subject="optimizer",
            details={"eps": eps},
        )
    ]


def check_forward(runner: Runner, batch: Any, setup: AmpSetup, pure_half: bool) -> list[Finding]:
    """Forward under autocast with hooks; the first overflowing module becomes the finding."""
    events: list[_Event] = []
    model = runner.model
    plain = pure_half or setup.emulated
    context = contextlib.nullcontext() if plain else _autocast(setup.device, setup.dtype)
    hooks = _overflow_hooks(model, events, check_range=setup.dtype == torch.float16)
    with hooks, context, torch.no_grad():
        runner.loss_only(batch)
    if not events:
        return []
    return [_overflow_finding(events[0], setup)]


@contextlib.contextmanager
def _overflow_hooks(model: nn.Module, events: list[_Event], check_range: bool) -> Iterator[None]:
    def make(name: str) -> Callable[[nn.Module, object, Any], None]:
        def hook(module: nn.Module, args: object, output: Any) -> None:
            if events:
                return  # only the first offender matters: later ones inherit its values
            for _, tensor in tensors(output, "output"):
                event = _inspect(name or "model", tensor, check_range)
                if event is not None:
                    events.append(event)
                    return

        return hook

    handles = [m.register_forward_hook(make(name)) for name, m in model.named_modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _inspect(name: str, tensor: torch.Tensor, check_range: bool) -> _Event | None:
    if not tensor.dtype.is_floating_point or tensor.numel() == 0:
        return None
    values = tensor.detach()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        absmax = float(values[finite].abs().max()) if bool(finite.any()) else float("inf")
        return _Event(name, "non-finite", absmax, str(values.dtype))
    absmax = float(values.abs().max())
    # float32 outputs of autocast's fp32 ops (norms, softmax) overflow at the next fp16 op.
    if check_range and absmax > FP16_MAX:
        return _Event(name, "beyond float16 range", absmax, str(values.dtype))
    return None


def _overflow_finding(event: _Event, setup: AmpSetup) -> Finding:
    code = "P701" if event.kind == "non-finite" else "P702"
    dtype = str(setup.dtype).replace("torch.", "")
    condition = "" if setup.amp_dtype is not None else " if you train with float16 autocast"
    run = "in float32 (checked against the float16 range)" if setup.emulated else f"under {dtype} autocast"
    message = (
        f"{run} the output of `{event.module}` is {event.kind} "
        f"(largest finite |value| {event.absmax:.3g}; float16 max is {FP16_MAX:.0f}){condition}"
    )
    return finding(
        code,
        message,
        "Use bfloat16 autocast (same range as float32) where supported, or keep activations "
        "small: normalize inputs, add LayerNorm/BatchNorm, scale down this layer's init, or "
        "run it outside autocast (`torch.autocast(..., enabled=False)`).",
        subject=event.module,
        details={"absmax": event.absmax, "kind": event.kind, "output_dtype": event.dtype},
        severity=setup.severity,
    )


def check_scaler(
    runner: Runner, batch: Any, setup: AmpSetup, optimizer: ProbeOptimizer, max_steps: int
) -> tuple[list[Finding], str]:
    """A few float16 GradScaler steps: a collapsing scale or many skipped steps is a finding."""
    scaler = torch.amp.GradScaler(setup.device.type)
    skips: list[bool] = []
    scale = scaler.get_scale()
    with optimizer.fresh() as opt:
        for _ in range(min(SCALER_STEPS, max_steps)):
            opt.zero_grad(set_to_none=True)
            with _autocast(setup.device, torch.float16):
                loss = runner.loss_only(batch)
            scaler.scale(loss).backward()
            if not any(p.grad is not None for group in opt.param_groups for p in group["params"]):
                break  # the optimizer holds none of the model's parameters (P601 says so)
            scaler.step(opt)
            scaler.update()
            new_scale = scaler.get_scale()
            skips.append(new_scale < scale)
            scale = new_scale
            if scale < 1:
                break
    summary = f"GradScaler: {sum(skips)}/{len(skips)} steps skipped, final scale {scale:g}"
    return _scaler_findings(skips, scale, setup), summary


def _autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Autocast without its weight cache: no half-precision copy of the weights lingers."""
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def _scaler_findings(skips: list[bool], scale: float, setup: AmpSetup) -> list[Finding]:
    details = {"steps": len(skips), "skipped": sum(skips), "final_scale": scale}
    if scale < 1:
        return [
            finding(
                "P703",
                f"the GradScaler scale collapsed to {scale:g} after {len(skips)} steps: the "
                "float16 gradients overflow even unscaled, so every step is skipped",
                "Find the overflowing layer (P701/P702), switch to bfloat16, or lower the loss "
                "magnitude (reduction='mean').",
                subject="GradScaler",
                details=details,
                severity=setup.severity,
            )
        ]
    # Skips before the first successful step are the scaler calibrating from 2**16.
    first_ok = next((i for i, skipped in enumerate(skips) if not skipped), len(skips))
    after = skips[first_ok:]
    longest = _longest_run(after)
    share = sum(after) / len(after) if after else 0.0
    if longest < MAX_CONSECUTIVE_SKIPS and share <= MAX_SKIP_SHARE:
        return []
    return [
        finding(
            "P704",
            f"GradScaler skipped {sum(after)} of {len(after)} steps after warm-up "
            f"({longest} in a row): gradients keep overflowing float16",
            "Lower the learning rate or the loss scale growth, clip gradients after "
            "`scaler.unscale_(optimizer)`, or use bfloat16.",
            subject="GradScaler",
            details=details | {"longest_skip_run": longest, "skip_share": share},
            severity=setup.severity,
        )
    ]


def _longest_run(flags: list[bool]) -> int:
    longest = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def autocast_error(exc: BaseException, setup: AmpSetup, module: str | None) -> Finding:
    """User code that fails under autocast: an error only when the user trains that way."""
    on_cpu = setup.device.type == "cpu" and setup.amp_dtype is None
    hint = (
        "CPU autocast lacks some float16 kernels (LSTM, for one); this says nothing about "
        "CUDA. Run the probe on a GPU to check AMP."
        if on_cpu
        else "Run the failing op outside autocast or cast its inputs explicitly."
    )
    return raised(
        "P799",
        f"the forward/backward pass under {str(setup.dtype).replace('torch.', '')} autocast",
        exc,
        hint,
        severity=Severity.ERROR if setup.amp_dtype is not None else Severity.INFO,
        module=module,
    )
