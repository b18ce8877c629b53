from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.processes import Varying, per_process
from trainlint.analysis.training import call_text
from trainlint.analysis.values import Evaluator, call_arg
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule

SAMPLER_NAMES = frozenset(q.rsplit(".", 1)[1] for q in brains.DISTRIBUTED_SAMPLERS)


class DistributedSamplerSeedDiffersPerRank(Rule):
    code = "TL702"
    name = "distributed-sampler-seed-differs-per-rank"
    severity = Severity.ERROR
    summary = "DistributedSampler(seed=...) depends on the rank or the time: ranks shuffle differently and overlap."
    message = "the DistributedSampler's seed differs between ranks, so their shards overlap and some samples are skipped"
    hint = "Give every rank the same seed (seed=args.seed); seed the per-rank augmentation RNGs separately."
    triggers = ("DistributedSampler",)
    # ``DistributedSampler(ds, seed=args.seed + rank)`` -> ``seed=args.seed``, only when the
    # seed is a sum whose one side depends on the rank and whose other side does not.
    # Unsafe: every rank then shuffles with the same permutation, which is the fix, but the
    # order of the data changes for every rank.
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        for call, seed in seeded_samplers(model, ev):
            varying = per_process(seed, model, ev)
            if varying is not None:
                yield Report(seed, message=_message(seed, varying, model))

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not (isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add)):
            return None
        left = per_process(node.left, ctx.model, ctx.evaluator)
        right = per_process(node.right, ctx.model, ctx.evaluator)
        if left is None and right is not None and right.kind == "rank":
            return Fix([Edit(node, node.left.with_changes(lpar=node.lpar, rpar=node.rpar) if node.lpar else node.left)])
        if right is None and left is not None and left.kind == "rank":
            return Fix([Edit(node, node.right)])
        return None


def seeded_samplers(model: ModuleModel, ev: Evaluator) -> Iterator[tuple[cst.Call, cst.BaseExpression]]:
    """DistributedSampler constructions in ``model`` given a seed, with the seed."""
    for name in sorted(SAMPLER_NAMES):
        for call in model.calls_by_name.get(name, []):
            seed = call_arg(call, T.SAMPLER_SEED_POSITION, "seed")
            if seed is not None and ev.callee(call, model) & brains.DISTRIBUTED_SAMPLERS:
                yield call, seed


def _message(seed: cst.BaseExpression, varying: Varying, model: ModuleModel) -> str:
    cause = f"`{call_text(varying.node, varying.module)}`"
    if not (varying.module is model and model.is_within(varying.node, seed)):
        cause += f" at {varying.module.where(varying.node)}"
    why = f"the process rank ({cause})" if varying.kind == "rank" else f"{cause}, which may differ from one process to the next"
    return (
        f"the DistributedSampler's seed `{call_text(seed, model)}` depends on {why}: every rank shuffles with its own "
        "permutation before taking its shard, so the shards overlap and some samples are never seen in an epoch"
    )
