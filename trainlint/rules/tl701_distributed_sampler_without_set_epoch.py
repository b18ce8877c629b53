from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis import catalog
from trainlint.analysis.flow import Action, Branch, LoopItem, Seq, _unwrap_iteration
from trainlint.analysis.module import Loop, ModuleModel
from trainlint.analysis.modes import is_eval_name
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Lit, Obj, call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

DISTRIBUTED_SAMPLERS = frozenset(
    {"torch.utils.data.DistributedSampler", "torch.utils.data.distributed.DistributedSampler"}
)
SAMPLER_POSITION = 3  # DataLoader(dataset, batch_size, shuffle, sampler, ...)
# Frameworks whose prepared loaders call set_epoch themselves.
SELF_EPOCHING = ("accelerate", "lightning", "pytorch_lightning")
MAX_HELPER_DEPTH = 3


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
            if _sets_epoch(epoch_loop, ctx.model, ctx, 0):
                continue
            for sampler in _shuffling_samplers(batch_loop, ctx):
                # At the sampler when it is built in this file, else at the epoch loop.
                node = sampler.call if sampler.module is ctx.model else epoch_loop
                if id(node) not in reported and not _self_epoching(sampler.module):
                    reported.add(id(node))
                    yield Report(node, message=_message(sampler, epoch_loop, ctx))


def _epoch_loops(ctx: Context) -> Iterator[tuple[Loop, LoopItem]]:
    """(loop, training loop it runs directly): the epoch loop of each training loop, whether
    the training loop is written inside it or in a function it calls."""
    for loop in ctx.model.loops:
        for inner in _direct_loops(ctx.flow.loop_body(loop, ctx.model)):
            actions = {e.action for e in ctx.flow.events(inner.body)}
            if {Action.BACKWARD, Action.STEP} <= actions and isinstance(inner.node, cst.For):
                yield loop, inner


def _direct_loops(block: Seq) -> Iterator[LoopItem]:
    for item in block.items:
        if isinstance(item, LoopItem):
            yield item
        elif isinstance(item, Seq):
            yield from _direct_loops(item)
        elif isinstance(item, Branch):
            for alternative in item.alternatives:
                yield from _direct_loops(alternative)


def _shuffling_samplers(batch_loop: LoopItem, ctx: Context) -> Iterator[Obj]:
    """DistributedSamplers (not ``shuffle=False``, not for held-out data) given as ``sampler=``
    to the DataLoader the training loop iterates."""
    assert isinstance(batch_loop.node, cst.For)
    iterable = _unwrap_iteration(batch_loop.node.iter)
    for loader in ctx.evaluator.objects(iterable, batch_loop.module):
        if loader.qualname not in catalog.DATA_LOADERS:
            continue
        sampler = call_arg(loader.call, SAMPLER_POSITION, "sampler")
        for obj in ctx.evaluator.objects(sampler, loader.module) if sampler is not None else ():
            if obj.qualname in DISTRIBUTED_SAMPLERS and _shuffles(obj, ctx) and not _held_out(obj):
                yield obj


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


def _sets_epoch(node: cst.CSTNode, module: ModuleModel, ctx: Context, depth: int) -> bool:
    """Some call under ``node`` (or in a helper it calls) is ``x.set_epoch(...)``: on the
    sampler, ``loader.sampler``, a batch sampler or a dataset, all of which reshuffle."""
    calls = [c for c in module.calls if module.is_within(c, node)]
    if any(isinstance(c.func, cst.Attribute) and c.func.attr.value == "set_epoch" for c in calls):
        return True
    if depth >= MAX_HELPER_DEPTH:
        return False
    return any(
        _sets_epoch(function.node, function.module, ctx, depth + 1)
        for call in calls
        for function in ctx.evaluator.functions_called(call, module)
    )


def _self_epoching(module: ModuleModel) -> bool:
    return any(
        (binding.qualname or "").split(".")[0] in SELF_EPOCHING
        for bindings in module.module_scope.bindings.values()
        for binding in bindings
        if binding.kind == "import"
    )


def _message(sampler: Obj, epoch_loop: Loop, ctx: Context) -> str:
    return (
        f"the DistributedSampler built at {sampler.module.where(sampler.call)} never gets "
        f"`set_epoch(epoch)` in the epoch loop at {ctx.model.where(epoch_loop)}: it reshuffles with "
        "the same seed, so every epoch visits the data in exactly the same order"
    )
