from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.ir import OpKind
from trainlint.analysis.lifetimes import STORING
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.training import call_text, extends_container, kept_loss
from trainlint.analysis.uses import variable_uses
from trainlint.analysis.values import DictV, SeqV
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety, method_call
from trainlint.rule import Context, Report, Rule


class LossTensorKeptAcrossIterations(Rule):
    code = "TL211"
    name = "loss-tensor-kept-across-iterations"
    severity = Severity.WARNING
    summary = "Loss tensors are appended to a list, a dict or a meter that outlives the iteration, keeping every graph alive."
    message = "a loss tensor is kept in a container that outlives the iteration, which keeps each iteration's graph in memory"
    hint = "Keep a number (`loss.item()`) or a detached tensor (`loss.detach()`) instead."
    triggers = ("loss",)
    # ``losses.append(loss)`` -> ``losses.append(loss.detach())``. Safe: the container keeps
    # a tensor with the same value, dtype and device (``torch.stack(losses)`` and
    # ``.item()`` later work as before); only the graph it kept alive is released. No fix
    # where the container, or a value made from it, is backpropagated (after the loop
    # too); unsafe where it reaches code the analysis does not see (an attribute, a
    # project function, a return to unknown callers).
    fix_safety = FixSafety.SAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STORE, OpKind.ASSIGN):
            op = occurrence.op
            if op.module is not ctx.model or op.name is None or not extends_container(op):
                continue
            loss = kept_loss(ctx.engine, occurrence)
            if loss is None or id(loss) in reported:
                continue
            reported.add(id(loss))
            text = call_text(loss, ctx.model)
            yield Report(
                loss,
                message=(
                    f"`{op.name}` keeps the loss tensor `{text}` from one iteration to the next: each kept tensor holds "
                    "its iteration's whole autograd graph (activations included), so memory grows with every step"
                ),
                hint=f"Keep `{text}.item()` (a number) or `{text}.detach()` (a tensor without its graph) instead.",
            )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.BaseExpression):
            return None
        if any(isinstance(v, (SeqV, DictV)) for v in ctx.evaluator.eval(node, ctx.model)):
            return None  # a dict or list holding the loss: detaching it is not evident
        container = _container(node, ctx.model)
        if isinstance(container, cst.Name):
            uses = variable_uses(container.value, container, ctx.model, ctx.evaluator)
            if uses.graph:
                return None  # what the container holds is backpropagated later
            unknown = uses.unknown
        else:
            unknown = True  # ``self.losses.append(loss)``: used where the analysis does not look
        return Fix([Edit(node, method_call(node, "detach"))], FixSafety.UNSAFE if unknown else None)


def _container(value: cst.CSTNode, model: ModuleModel) -> cst.BaseExpression | None:
    """What ``value`` is kept in: ``losses`` of ``losses.append(value)``, of
    ``losses[i] = value`` and of ``losses += [value]``."""
    for ancestor in model.ancestors(value):
        if isinstance(ancestor, cst.Call) and isinstance(ancestor.func, cst.Attribute) and ancestor.func.attr.value in STORING:
            return ancestor.func.value
        if isinstance(ancestor, cst.Assign) and isinstance(ancestor.targets[0].target, cst.Subscript):
            return ancestor.targets[0].target.value
        if isinstance(ancestor, cst.AugAssign):
            return ancestor.target
        if isinstance(ancestor, cst.BaseSmallStatement):
            return None
    return None
