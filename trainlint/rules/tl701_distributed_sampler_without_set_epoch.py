from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.engine import LoopFacts
from trainlint.analysis.ir import OpKind, iterated
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.training import is_eval_name
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Lit, Obj, call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Frameworks whose prepared loaders call set_epoch themselves.
SELF_EPOCHING = brains.SELF_EPOCHING_ROOTS


class DistributedSamplerWithoutSetEpoch(Rule):
    code = "TL701"
    name = "distributed-sampler-without-set-epoch"
    severity = Severity.WARNING
    summary = "A shuffling DistributedSampler feeds the training loop but set_epoch() is never called."
    message = "DistributedSampler.set_epoch(epoch) is never called: every epoch uses the same shuffled order"
    hint = "Call sampler.set_epoch(epoch) (or loader.sampler.set_epoch(epoch)) at the start of every epoch, before iterating the loader."
    # The sampler may be built in another file than the epoch loop.
    triggers = ("DistributedSampler", "epoch")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for epoch_loop, batch_loop in _epoch_loops(ctx):
            if any(op.kind is OpKind.SET_EPOCH for op in ctx.engine.iteration_ops(epoch_loop)):
                continue
            for sampler in _shuffling_samplers(batch_loop, ctx):
                # At the sampler when it is built in this file, else at the epoch loop.
                node = sampler.call if sampler.module is ctx.model else epoch_loop.loop.node
                if id(node) not in reported and not _self_epoching(sampler.module):
                    reported.add(id(node))
                    yield Report(node, message=_message(sampler, epoch_loop, ctx))


def _epoch_loops(ctx: Context) -> Iterator[tuple[LoopFacts, LoopFacts]]:
    """(epoch loop, training loop it runs): the training loop may be written inside it or
    in a function it calls, in this file or another."""
    engine = ctx.engine
    for facts in engine.loops(ctx.model):
        for child in facts.children:
            inner = engine._loops.get(child)
            if inner is not None and isinstance(inner.loop.node, cst.For) and engine.is_training_loop(inner):
                yield facts, inner


def _shuffling_samplers(batch_loop: LoopFacts, ctx: Context) -> Iterator[Obj]:
    """DistributedSamplers (not ``shuffle=False``, not for held-out data) that order the
    DataLoader the training loop iterates: as ``sampler=``, or inside a ``batch_sampler=``."""
    node = batch_loop.loop.node
    assert isinstance(node, cst.For)
    module = batch_loop.loop.module
    for loader in ctx.evaluator.objects(iterated(node), module):
        if loader.qualname not in brains.DATA_LOADERS:
            continue
        for expr in (call_arg(loader.call, T.LOADER_SAMPLER_POSITION, "sampler"), call_arg(loader.call, T.LOADER_BATCH_SAMPLER_POSITION, "batch_sampler")):
            for obj in _samplers(expr, loader.module, ctx):
                if _shuffles(obj, ctx) and not _held_out(obj):
                    yield obj


def _samplers(expr: cst.BaseExpression | None, module: ModuleModel, ctx: Context) -> Iterator[Obj]:
    """DistributedSamplers an expression may be, looking inside a BatchSampler."""
    for obj in ctx.evaluator.objects(expr, module) if expr is not None else ():
        if obj.qualname in brains.DISTRIBUTED_SAMPLERS:
            yield obj
        elif obj.qualname in T.BATCH_SAMPLERS:
            yield from _samplers(call_arg(obj.call, 0, "sampler"), obj.module, ctx)


def _shuffles(sampler: Obj, ctx: Context) -> bool:
    shuffle = call_arg(sampler.call, 3, "shuffle")
    if shuffle is None:
        return True  # DistributedSampler shuffles by default
    values = ctx.evaluator.eval(shuffle, sampler.module)
    return literal_value(shuffle) is not False and not (values and all(v == Lit(False) for v in values))


def _held_out(sampler: Obj) -> bool:
    dataset = call_arg(sampler.call, 0, "dataset")
    target = sampler.module.parent_of(sampler.call)
    names = [dotted(dataset) or ""] if dataset is not None else []
    if isinstance(target, cst.Assign):
        names.extend(dotted(t.target) or "" for t in target.targets)
    return any(is_eval_name(name) for name in names)


def _self_epoching(module: ModuleModel) -> bool:
    return any(
        (binding.qualname or "").split(".")[0] in SELF_EPOCHING
        for bindings in module.module_scope.bindings.values()
        for binding in bindings
        if binding.kind == "import"
    )


def _message(sampler: Obj, epoch_loop: LoopFacts, ctx: Context) -> str:
    return (
        f"the DistributedSampler built at {sampler.module.where(sampler.call)} never gets "
        f"`set_epoch(epoch)` in the epoch loop at {ctx.model.where(epoch_loop.loop.node)}: it reshuffles with "
        "the same seed, so every epoch visits the data in exactly the same order"
    )
