"""The catalogue of probe finding codes, and the one way to build a :class:`Finding`.

Codes are grouped per check (``P1xx`` data, ``P2xx`` outputs, ``P3xx`` initial_loss,
``P4xx`` overfit_batch, ``P5xx`` gradient_flow, ``P6xx`` optimizer, ``P7xx`` amp_overflow,
``P80x`` registration, ``P81x`` loss_shapes, ``P82x`` dependencies, ``P83x``
eval_determinism, ``P9xx`` distributed); ``Px99`` (``P190`` for data, ``P8x9`` for the
``P8`` checks) always means "user code raised while this check ran".
Codes are a public contract: never renumber one, only add. This module imports no torch, so
the CLI can list codes cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainlint.diagnostics import Finding, Severity

CHECKS: tuple[str, ...] = (
    "data",
    "optimizer",
    "registration",
    "outputs",
    "loss_shapes",
    "initial_loss",
    "gradient_flow",
    "overfit_batch",
    "dependencies",
    "eval_determinism",
    "amp_overflow",
    "distributed",
)
# Checks a default run skips: ``distributed`` means something only under torch.distributed.
OPT_IN: frozenset[str] = frozenset({"distributed"})
# The code prefix of each check (the README's codes table is grouped the same way).
PREFIXES: dict[str, str] = {
    "data": "P1",
    "outputs": "P2",
    "initial_loss": "P3",
    "overfit_batch": "P4",
    "gradient_flow": "P5",
    "optimizer": "P6",
    "amp_overflow": "P7",
    "registration": "P80",
    "loss_shapes": "P81",
    "dependencies": "P82",
    "eval_determinism": "P83",
    "distributed": "P9",
}


@dataclass(frozen=True)
class Code:
    """One finding kind: its check, its usual severity and a one-line title for docs."""

    code: str
    check: str
    severity: Severity
    title: str


_E, _W, _I = Severity.ERROR, Severity.WARNING, Severity.INFO

_ALL: tuple[Code, ...] = (
    Code("P101", "data", _E, "NaN/Inf in the inputs"),
    Code("P102", "data", _E, "NaN/Inf in the targets"),
    Code("P103", "data", _E, "class targets outside [0, C) (ignore_index respected)"),
    Code("P104", "data", _E, "class indices stored as floats"),
    Code("P105", "data", _E, "BCE targets outside [0, 1]"),
    Code("P106", "data", _W, "inputs far from normalized (info when only mildly off)"),
    Code("P107", "data", _W, "every sample in the batch is identical"),
    Code("P108", "data", _I, "constant input features across the batch"),
    Code("P109", "data", _W, "batch of 1 with BatchNorm in train mode"),
    Code("P110", "data", _E, "token ids outside the embedding table"),
    Code("P111", "data", _I, "regression targets far from normalized"),
    Code("P112", "data", _W, "the loader is a one-shot iterator: the probe consumed batches"),
    Code("P190", "data", _E, "the loader raised (or its batches could not be moved)"),
    Code("P191", "data", _E, "the loader produced no batch"),
    Code("P192", "data", _E, "unrecognised batch structure (pass step_fn)"),
    Code("P193", "data", _E, "(inputs, targets) batches need a loss_fn"),
    Code(
        "P201",
        "outputs",
        _E,
        "probabilities (softmax) fed to a loss expecting logits (TL101/TL103)",
    ),
    Code("P202", "outputs", _E, "sigmoid output fed to BCEWithLogitsLoss (TL102)"),
    Code("P203", "outputs", _E, "raw logits fed to NLLLoss, which expects log-probabilities"),
    Code("P204", "outputs", _E, "NaN/Inf in the model outputs at initialization"),
    Code("P206", "outputs", _E, "output/target shapes broadcast in a regression loss"),
    Code("P299", "outputs", _E, "the forward pass raised (or the model could not be moved)"),
    Code("P301", "initial_loss", _E, "initial loss above 3x its expected value"),
    Code("P302", "initial_loss", _W, "initial loss above 1.5x its expected value"),
    Code("P303", "initial_loss", _W, "initial loss below 0.5x its expected value"),
    Code("P304", "initial_loss", _E, "initial loss is NaN/Inf"),
    Code("P305", "initial_loss", _I, "initial loss value (no expectation for this task)"),
    Code("P399", "initial_loss", _E, "the loss computation raised"),
    Code("P401", "overfit_batch", _E, "loss became NaN/Inf while overfitting one batch"),
    Code("P402", "overfit_batch", _E, "loss rises or oscillates: learning rate too high"),
    Code("P403", "overfit_batch", _E, "loss does not decrease on a single batch"),
    Code("P404", "overfit_batch", _E, "model ignores its input (zero-input control fits as well)"),
    Code("P405", "overfit_batch", _W, "loss decreases too slowly to overfit one batch"),
    Code("P406", "overfit_batch", _I, "not overfit within max_steps, but still improving"),
    Code("P499", "overfit_batch", _E, "user code raised while overfitting"),
    Code("P501", "gradient_flow", _W, "trainable module never called in forward (unused)"),
    Code("P502", "gradient_flow", _E, "trainable parameters get no gradient (detached)"),
    Code("P503", "gradient_flow", _W, "gradient is exactly zero"),
    Code("P504", "gradient_flow", _E, "NaN/Inf gradients"),
    Code("P505", "gradient_flow", _W, "vanishing gradients (first/last layer norm ratio)"),
    Code("P506", "gradient_flow", _W, "exploding gradients"),
    Code("P507", "gradient_flow", _W, "update/weight ratio after one step out of range"),
    Code("P508", "gradient_flow", _W, "dead units: most outputs of a layer get no gradient"),
    Code("P509", "gradient_flow", _E, "the loss does not depend on any trainable parameter"),
    Code("P510", "gradient_flow", _E, "dropout with p >= 1 zeroes its whole input"),
    Code("P599", "gradient_flow", _E, "user code raised during the gradient batches"),
    Code("P601", "optimizer", _E, "trainable parameters missing from the optimizer"),
    Code("P602", "optimizer", _I, "frozen parameters inside the optimizer"),
    Code("P603", "optimizer", _E, "learning rate is 0"),
    Code("P604", "optimizer", _I, "learning rate is 0 because of scheduler warm-up"),
    Code("P605", "optimizer", _I, "optimizer could not be copied; probe used Adam"),
    Code("P606", "optimizer", _E, "the model has no trainable parameter"),
    Code("P699", "optimizer", _E, "user code raised while the optimizer was rebuilt or stepped"),
    Code("P701", "amp_overflow", _E, "non-finite activation under float16 autocast"),
    Code("P702", "amp_overflow", _E, "activation beyond the float16 range"),
    Code("P703", "amp_overflow", _E, "GradScaler scale collapsed below 1"),
    Code("P704", "amp_overflow", _E, "GradScaler skips too many steps"),
    Code("P705", "amp_overflow", _E, "float16 parameters with an Adam eps that underflows"),
    Code("P799", "amp_overflow", _E, "user code raised under autocast"),
    Code("P801", "registration", _E, "parameters or buffers on the meta device (no data)"),
    Code("P802", "registration", _E, "lazy module not initialised (run a dry forward first)"),
    Code("P803", "registration", _E, "parameters used in forward but not registered (plain list/dict/attribute)"),
    Code("P804", "registration", _W, "unregistered parameters that only the optimizer holds"),
    Code("P805", "registration", _W, "submodule created inside forward"),
    Code("P809", "registration", _E, "user code raised during the registration check"),
    Code("P811", "loss_shapes", _E, "cross-entropy over the wrong axis (classes last on a 3-D+ input)"),
    Code("P812", "loss_shapes", _E, "loss input and target broadcast silently (non-regression loss)"),
    Code("P819", "loss_shapes", _E, "user code raised during the loss-shape check"),
    Code("P821", "dependencies", _E, "a sample's output depends on other samples (batch mixing)"),
    Code("P822", "dependencies", _E, "position t depends on later tokens (no causal mask)"),
    Code("P829", "dependencies", _E, "user code raised during the dependency check"),
    Code("P831", "eval_determinism", _E, "dropout active in eval mode"),
    Code("P832", "eval_determinism", _W, "two eval-mode forwards on the same batch disagree"),
    Code("P839", "eval_determinism", _E, "user code raised during the eval-mode forwards"),
    Code("P901", "distributed", _E, "parameters differ across ranks at the start"),
    Code("P902", "distributed", _E, "ranks get the same samples (no DistributedSampler)"),
    Code("P903", "distributed", _E, "ranks get different numbers of batches (hangs at the end of an epoch)"),
    Code("P904", "distributed", _W, "set_epoch does not change the sample order between epochs"),
    Code("P905", "distributed", _E, "gradients are not synchronised across ranks after backward"),
    Code("P999", "distributed", _E, "user code raised during the distributed check"),
)

CODES: dict[str, Code] = {entry.code: entry for entry in _ALL}


def finding(
    code: str,
    message: str,
    hint: str,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    severity: Severity | None = None,
) -> Finding:
    """Build a finding for ``code``; ``severity`` overrides the catalogue default."""
    entry = CODES[code]
    return Finding(
        check=entry.check,
        code=code,
        severity=severity or entry.severity,
        message=message,
        hint=hint,
        subject=subject,
        details=details or {},
    )


def markdown_table() -> str:
    """The codes table as Markdown; the README section embeds exactly this text."""
    lines = ["| Code | Check | Severity | Meaning |", "|---|---|---|---|"]
    lines += [f"| {c.code} | `{c.check}` | {c.severity.value} | {c.title} |" for c in _ALL]
    return "\n".join(lines)
