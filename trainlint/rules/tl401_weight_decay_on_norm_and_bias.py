from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.argparse_defaults import resolve_number
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.optimizers import OptimizerCall, decay_of, optimizer_calls, same_decay, whole_model_params
from trainlint.analysis.project import find_project_root
from trainlint.analysis.values import literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class WeightDecayOnNormAndBias(Rule):
    code = "TL401"
    name = "weight-decay-on-norm-and-bias"
    severity = Severity.WARNING
    summary = "weight_decay is applied to every parameter, normalization weights and biases included."
    message = "weight decay is applied to all parameters, including biases and normalization weights"
    hint = (
        "Split the parameters into two groups: decay only weights with p.ndim >= 2, and give biases and "
        "norm weights {'weight_decay': 0.0}."
    )
    # ``optim`` is in every way of naming torch.optim; a positional decay has no keyword.
    triggers = ("optim",)

    def check(self, ctx: Context) -> Iterator[Report]:
        for optimizer in optimizer_calls(ctx.model, ctx.evaluator):
            message = _problem(optimizer, ctx)
            if message is not None:
                yield Report(optimizer.call, message=message)


def _problem(optimizer: OptimizerCall, ctx: Context) -> str | None:
    model, ev = ctx.model, ctx.evaluator
    if optimizer.groups is not None:
        return _groups_problem(optimizer, ctx)
    # No explicit argument means the optimizer's default (AdamW's 1e-2 included): a
    # deliberate library choice, not reported.
    if optimizer.weight_decay is None or optimizer.params is None or decay_of(optimizer.weight_decay, model, ev) == "zero":
        return None
    owner = whole_model_params(optimizer.params, model, ev)
    # LoRA adapters are bias-free low-rank matrices, the very parameters decay is meant for.
    if owner is None or "lora" in owner.lower():
        return None
    return (
        f"{optimizer.short_name} applies weight_decay={_shown(optimizer.weight_decay, model, ctx)}{_configured(optimizer, ctx)} "
        f"to every parameter of `{owner}`, so biases and normalization weights are pulled towards zero too"
    )


def _configured(optimizer: OptimizerCall, ctx: Context) -> str:
    """`` (set in configs/optimizer/adamw.yaml)`` for an optimizer built from a config."""
    if optimizer.origin is None:
        return ""
    root = find_project_root(ctx.path)
    shown = optimizer.origin.relative_to(root) if optimizer.origin.is_relative_to(root) else optimizer.origin
    return f" (set in {shown.as_posix()})"


def _groups_problem(optimizer: OptimizerCall, ctx: Context) -> str | None:
    groups = optimizer.groups or ()
    if any(decay_of(g.decay, g.module, ctx.evaluator) == "zero" for g in groups) or not same_decay(groups, ctx.evaluator):
        return None
    first = groups[0]
    assert first.decay is not None  # same_decay rejects groups running with the default
    return (
        f"every parameter group of {optimizer.short_name} gets weight_decay={_shown(first.decay, first.module, ctx)}"
        f"{_configured(optimizer, ctx)}; no group exempts biases and normalization weights"
    )


def _shown(decay: cst.BaseExpression, module: ModuleModel, ctx: Context) -> str:
    """``5e-4``, or ``args.weight_decay (= 0.0005)`` when a variable resolves."""
    text = module.tree.code_for_node(decay)
    number = resolve_number(decay, module, ctx.evaluator)
    if number is None or literal_value(decay) is not ...:
        return text
    return f"{text} (= {number:g})"
