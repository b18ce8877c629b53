"""The ``eval_determinism`` check: two eval-mode forwards on one batch must agree.

``model.eval()`` switches ``nn.Dropout`` modules off, but not ``F.dropout(x, p)`` (its
``training`` argument defaults to True) nor ``scaled_dot_product_attention(dropout_p=p)``
without a ``self.training`` gate: validation scores then jitter and are too low. The first
forward runs under the spy, which names the module that still drops; the second, with
another seed, shows whether the outputs really differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding
from trainlint.probe.batches import BatchKind, Runner, tensors
from trainlint.probe.codes import finding
from trainlint.probe.errors import ModuleStack
from trainlint.probe.spy import DropoutCall, Spy
from trainlint.probe.state import eval_mode

RTOL, ATOL = 1e-4, 1e-6


@dataclass
class Outcome:
    findings: list[Finding]
    summary: str


def check(
    runner: Runner, batch: Any, stack: ModuleStack, reseed: Any, seed: int
) -> Outcome:
    """``reseed(seed)`` seeds every RNG; the two forwards use ``seed`` and ``seed + 1``."""
    model = runner.model
    with eval_mode(model), _root_output(model) as outputs, torch.no_grad():
        modes = {name: module.training for name, module in model.named_modules()}
        reseed(seed)
        with Spy(stack, modes=modes) as spy:
            runner.forward(batch)
        reseed(seed + 1)
        runner.forward(batch)
    found = _active_dropout(spy.log.dropouts)
    differ = len(outputs) == 2 and not _same(outputs[0], outputs[1])
    # A step_fn may draw its own random inputs (noise, timesteps): only the spy counts there.
    if differ and not found and runner.kind is not BatchKind.CUSTOM:
        found = [_disagree(spy.log.random)]
    if found:
        return Outcome(found, "eval-mode forwards are random")
    verdict = "differ" if differ else "agree"
    return Outcome([], f"two eval-mode forwards with different seeds {verdict}")


@contextlib.contextmanager
def _root_output(model: nn.Module) -> Iterator[list[Any]]:
    """The model's own outputs of each forward (a step_fn's loss says less)."""
    outputs: list[Any] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        outputs.append([t.detach().clone() for _, t in tensors(output, "")])

    handle = model.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def _same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return len(first) == len(second) and all(
        a.shape == b.shape
        and (not a.dtype.is_floating_point or torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
        and (a.dtype.is_floating_point or torch.equal(a, b))
        for a, b in zip(first, second)
    )


def _active_dropout(calls: list[DropoutCall]) -> list[Finding]:
    """Dropout that runs while the module calling it is in eval mode, one finding per module."""
    by_module: dict[str, DropoutCall] = {}
    for call in calls:
        if call.training and call.p > 0 and call.module is not None and call.module_training is False:
            by_module.setdefault(call.module, call)
    return [
        finding(
            "P831",
            f"`{module or 'model'}` applies {call.function}(p={call.p:g}) in eval mode: "
            "model.eval() does not switch it off, so validation and inference outputs are "
            "random and too pessimistic",
            "Pass `training=self.training` to F.dropout (its default is True), use "
            "`dropout_p=self.p if self.training else 0.0` for scaled_dot_product_attention, "
            "or use an nn.Dropout module.",
            subject=module or "model",
            details={"function": call.function, "p": call.p},
        )
        for module, call in by_module.items()
    ]


def _disagree(random: list[tuple[str, str | None]]) -> Finding:
    source = next(((fn, module) for fn, module in random), None)
    cause = (
        f": `{source[1] or 'model'}` draws random numbers ({source[0]}) in eval mode"
        if source
        else " with no random op in sight: look for state kept between calls"
    )
    return finding(
        "P832",
        f"two eval-mode forwards on the same batch give different outputs{cause}",
        "Make inference deterministic: sample only when self.training (or use the mean, as a "
        "VAE does at test time), and reset state (caches, hidden states) between calls.",
        subject=source[1] or "model" if source else "model",
        details={"random_ops": sorted({fn for fn, _ in random})},
    )
