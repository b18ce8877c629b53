"""The ``optimizer`` check, and the optimizers the probe trains with.

The user's optimizer is never stepped: the probe builds a fresh instance of the same class
with the same parameter groups and hyperparameters, so its state (Adam moments, step
counts) stays untouched. Without an optimizer the probe uses ``Adam(lr=1e-3)``, which is
also the reference that tells "your optimizer settings are off" from "the model is broken".
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding
from trainlint.probe.codes import finding
from trainlint.probe.names import collapse

REFERENCE_LR = 1e-3
SPARSE_LR = 0.1
OptimizerFactory = Callable[[], torch.optim.Optimizer]


@dataclass(frozen=True)
class ProbeOptimizer:
    """How to build a fresh optimizer for one probe run, and how to describe it."""

    build: OptimizerFactory
    description: str
    is_reference: bool
    learning_rates: tuple[float, ...]

    @contextlib.contextmanager
    def fresh(self) -> Iterator[torch.optim.Optimizer]:
        """A new optimizer whose state (Adam: twice the weights) is freed on exit.

        Clearing it explicitly frees device memory at once, even if a reference cycle
        keeps the optimizer object itself alive until the next garbage collection.
        """
        optimizer = self.build()
        try:
            yield optimizer
        finally:
            optimizer.state.clear()


def reference_optimizer(model: nn.Module) -> ProbeOptimizer:
    """``Adam(lr=1e-3)`` over the trainable parameters Adam can step.

    Adam rejects sparse gradients; sparse embedding tables simply stay fixed in the
    reference, which still tells a model that learns from one that cannot.
    """
    sparse = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
    }
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse]
    if not params:  # only sparse tables (or nothing) to train: plain SGD handles them
        trainable = [p for p in model.parameters() if p.requires_grad]
        return ProbeOptimizer(
            lambda: torch.optim.SGD(trainable, lr=SPARSE_LR),
            f"SGD(lr={SPARSE_LR:g})",
            True,
            (SPARSE_LR,),
        )
    note = " (sparse embeddings not stepped)" if sparse else ""
    return ProbeOptimizer(
        lambda: torch.optim.Adam(params, lr=REFERENCE_LR),
        f"Adam(lr={REFERENCE_LR:g}){note}",
        True,
        (REFERENCE_LR,),
    )


def probe_optimizer(
    model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> tuple[ProbeOptimizer, list[Finding]]:
    """A copy of the user's optimizer (or the reference Adam), plus a P605 if copying failed."""
    if optimizer is None:
        return reference_optimizer(model), []
    groups = [_group_copy(group) for group in optimizer.param_groups]
    cls = type(optimizer)
    build = _copier(cls, groups, optimizer.defaults)
    try:
        build()
    except Exception as exc:  # noqa: BLE001 - any constructor failure falls back to Adam
        fallback = reference_optimizer(model)
        return fallback, [
            finding(
                "P605",
                f"could not rebuild {cls.__name__} from its param_groups ({type(exc).__name__}: "
                f"{exc}); the probe trained with {fallback.description} instead",
                "Nothing to fix in your code; the optimizer-specific results are approximate.",
                subject=cls.__name__,
            )
        ]
    rates = tuple(_lr(g) or 0.0 for g in groups)
    hypers = ", ".join(f"{k}={v}" for k, v in _shown_hyperparameters(groups[0]).items())
    return ProbeOptimizer(build, f"{cls.__name__}({hypers}) (copy of yours)", False, rates), []


def _group_copy(group: dict[str, Any]) -> dict[str, Any]:
    """A param group for a fresh optimizer; a warm-up scheduler's lr=0 becomes initial_lr."""
    copy = {key: value for key, value in group.items() if key != "params"}
    copy["params"] = list(group["params"])
    if _lr(copy) == 0 and float(copy.get("initial_lr") or 0) > 0:
        copy["lr"] = copy["initial_lr"]
    return copy


def _copier(
    cls: Callable[..., torch.optim.Optimizer],
    groups: list[dict[str, Any]],
    defaults: dict[str, Any],
) -> OptimizerFactory:
    """Build with the groups alone; pass accepted defaults too when the class requires them."""
    accepted = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in defaults.items() if k in accepted and k != "params"}

    def build() -> torch.optim.Optimizer:
        fresh = [dict(group, params=list(group["params"])) for group in groups]
        try:
            return cls(fresh)
        except TypeError:
            return cls(fresh, **extra)

    return build


def _lr(group: dict[str, Any]) -> float | None:
    """The group's learning rate as a float (PyTorch also accepts a tensor lr)."""
    lr = group.get("lr")
    return None if lr is None else float(lr)


def _shown_hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    keys = ("lr", "momentum", "betas", "eps", "weight_decay")
    return {k: group[k] for k in keys if k in group}


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[Finding]:
    named = list(model.named_parameters())
    trainable = [name for name, p in named if p.requires_grad]
    if not trainable:
        return [
            finding(
                "P606",
                (
                    f"none of the model's {len(named)} parameters has requires_grad=True"
                    if named
                    else "the model has no parameters"
                )
                + ": nothing can train",
                "Unfreeze the layers meant to train (`p.requires_grad_(True)`), e.g. the new "
                "head after freezing a backbone.",
                subject="model",
            )
        ]
    if optimizer is None:
        return []
    return [
        *_missing(named, trainable, optimizer),
        *_frozen(named, optimizer),
        *_zero_learning_rates(optimizer),
    ]


def _optimized_ids(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _missing(
    named: list[tuple[str, nn.Parameter]], trainable: list[str], optimizer: torch.optim.Optimizer
) -> list[Finding]:
    held = _optimized_ids(optimizer)
    missing = [name for name, p in named if p.requires_grad and id(p) not in held]
    if not missing:
        return []
    foreign = len(held - {id(p) for _, p in named})
    note = (
        f"; the optimizer holds {foreign} tensors that are not parameters of this model "
        "(was it built before the model was re-created or moved with .to()?)"
        if foreign
        else ""
    )
    return [
        finding(
            "P601",
            f"`{subject}`: {len(names)} trainable parameter(s) are not in the optimizer and will "
            f"never be updated{note}",
            "Build the optimizer from the parameters you train, e.g. "
            "`Adam(p for p in model.parameters() if p.requires_grad)`, after the model is final.",
            subject=subject,
            details={"parameters": names, "foreign_tensors": foreign},
        )
        for subject, names in collapse(missing, trainable).items()
    ]


def _frozen(
    named: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer
) -> list[Finding]:
    held = _optimized_ids(optimizer)
    frozen = [name for name, p in named if not p.requires_grad and id(p) in held]
    universe = [name for name, _ in named]
    return [
        finding(
            "P602",
            f"`{subject}`: {len(names)} frozen parameter(s) are in the optimizer; they get no "
            "gradient and are skipped, which is harmless unless you meant to train them",
            "Pass only trainable parameters to the optimizer, or unfreeze them if they should train.",
            subject=subject,
            details={"parameters": names},
        )
        for subject, names in collapse(frozen, universe).items()
    ]


def _zero_learning_rates(optimizer: torch.optim.Optimizer) -> list[Finding]:
    findings = []
    for index, group in enumerate(optimizer.param_groups):
        if _lr(group) != 0 or not any(p.requires_grad for p in group["params"]):
            continue
        initial = float(group.get("initial_lr") or 0)
        subject = f"param_groups[{index}]"
        if initial > 0:
            findings.append(
                finding(
                    "P604",
                    f"{subject} has lr=0 now but initial_lr={initial:g}: a scheduler warm-up "
                    "starts at 0; the probe trained with initial_lr",
                    "Nothing to fix if the warm-up is intended.",
                    subject=subject,
                    details={"initial_lr": initial},
                )
            )
            continue
        findings.append(
            finding(
                "P603",
                f"{subject} has learning rate 0: its {len(group['params'])} parameters never change",
                "Set a positive lr (e.g. 1e-3 for Adam, 0.1 for SGD with momentum); check "
                "schedulers and config parsing (an integer division can give 0).",
                subject=subject,
                details={"lr": 0.0},
            )
        )
    return findings
