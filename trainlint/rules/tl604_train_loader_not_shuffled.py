from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.data import data_sources
from trainlint.analysis.training import is_eval_name
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Evaluator, Instance, Lit, Obj, call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Arguments (keyword, position) that decide the order themselves: a sampler may shuffle
# (DistributedSampler, RandomSampler, weighted sampling), so the loader is not judged.
ORDER_ARGUMENTS = (("sampler", T.LOADER_SAMPLER_POSITION), ("batch_sampler", T.LOADER_BATCH_SAMPLER_POSITION))


class TrainLoaderNotShuffled(Rule):
    code = "TL604"
    name = "train-loader-not-shuffled"
    severity = Severity.WARNING
    summary = "The DataLoader that drives training is built without shuffle=True or a sampler."
    message = "the training DataLoader does not shuffle: every epoch sees the batches in the same order"
    hint = "Pass shuffle=True to the training DataLoader (or a sampler such as DistributedSampler); keep shuffle=False for validation/test loaders."
    # The loader may be built in another file: the loop names it.
    triggers = ("DataLoader", "loader", "_dl")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for facts in ctx.engine.loops(ctx.model):
            if not ctx.engine.is_training_loop(facts):
                continue
            for source in data_sources(facts.loop, ctx.evaluator):
                for loader in _loaders(source, facts.loop.module, ctx.evaluator):
                    site = loader.call if loader.module is ctx.model else _site(source, ctx)
                    if site is not None and id(site) not in reported and _unshuffled(loader, site, ctx.model, ctx.evaluator):
                        reported.add(id(site))
                        yield Report(site)


def _site(source: cst.BaseExpression, ctx: Context) -> cst.Call | None:
    """The call in this file that builds a loader elsewhere: ``loader = get_loader(...)``."""
    if isinstance(source, cst.Call):
        return source
    if isinstance(source, cst.Name):
        bindings = [b for b in ctx.evaluator.reaching(source, ctx.model) if b.kind == "assign" and b.value is not None]
        if len(bindings) == 1 and isinstance(bindings[0].value, cst.Call) and not bindings[0].path:
            return bindings[0].value
    return None


def _loaders(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> list[Obj]:
    """DataLoaders ``expr`` may be, also through ``accelerator.prepare(..., loader, ...)``."""
    found = [obj for obj in ev.objects(expr, module) if obj.qualname in brains.DATA_LOADERS]
    if found or not isinstance(expr, cst.Name):
        return found
    for binding in ev.reaching(expr, module):
        value = binding.value
        if isinstance(value, cst.Call) and _is_prepare(value, module, ev) and len(binding.path) <= 1:
            argument = call_arg(value, binding.path[0] if binding.path else 0, None)
            if argument is not None:
                found.extend(_loaders(argument, module, ev))
    return found


def _is_prepare(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    """``accelerator.prepare(...)`` hands its arguments back, wrapped, in the same order."""
    func = call.func
    return (
        isinstance(func, cst.Attribute)
        and func.attr.value == "prepare"
        and any(obj.qualname in brains.ACCELERATORS for obj in ev.objects(func.value, module))
    )


def _unshuffled(loader: Obj, site: cst.Call, site_module: ModuleModel, ev: Evaluator) -> bool:
    call = loader.call
    if any(arg.star for arg in call.args) or any(_orders(call_arg(call, position, name), loader, ev) for name, position in ORDER_ARGUMENTS):
        return False  # **kwargs may shuffle; a sampler orders the data itself
    shuffle = call_arg(call, T.LOADER_SHUFFLE_POSITION, "shuffle")
    if shuffle is not None:
        shuffle, module = _at_site(shuffle, loader, site, site_module)
        if shuffle is None or not _provably_false(shuffle, module, ev):
            return False
    dataset = call_arg(call, 0, "dataset")
    return (
        dataset is not None
        and not _streams(dataset, loader.module, ev)
        and not _held_out(loader, dataset, ev)
    )


def _at_site(expr: cst.BaseExpression, loader: Obj, site: cst.Call, site_module: ModuleModel) -> tuple[cst.BaseExpression | None, ModuleModel]:
    """A helper's ``shuffle=shuffle`` parameter, read at the call that built this loader
    (its argument there, else its default), not merged over every call of the helper."""
    function = loader.module.enclosing_function(loader.call)
    if site is loader.call or function is None or not isinstance(expr, cst.Name):
        return expr, loader.module
    params = [*function.params.posonly_params, *function.params.params, *function.params.kwonly_params]
    names = [p.name.value for p in params]
    if expr.value not in names:
        return expr, loader.module
    position = names.index(expr.value)
    positional = position if position < len(function.params.posonly_params) + len(function.params.params) else None
    argument = call_arg(site, positional, expr.value)
    if argument is not None:
        return argument, site_module
    default = params[position].default
    return default, loader.module


def _orders(sampler: cst.BaseExpression | None, loader: Obj, ev: Evaluator) -> bool:
    """A sampler is given, and on every path: ``DistributedSampler(ds) if distributed else
    None`` leaves the single-process loader in file order."""
    if sampler is None:
        return False
    values = ev.eval(sampler, loader.module)
    return not (values and any(v == Lit(None) for v in values)) and literal_value(sampler) is not None


def _held_out(loader: Obj, dataset: cst.BaseExpression, ev: Evaluator) -> bool:
    """A validation/test loader that also reaches the loop (``run_epoch(val_loader, train=False)``
    shares the loop with training): judged by the loader's and dataset's names and by
    ``train=False`` / ``split="test"`` on the dataset."""
    module = loader.module
    target = module.parent_of(loader.call)
    names = [dotted(dataset) or ""]
    if isinstance(target, cst.Assign):
        names.extend(dotted(t.target) or "" for t in target.targets)
    if any(is_eval_name(name) for name in names):
        return True
    for obj in ev.objects(dataset, module):
        train = call_arg(obj.call, None, "train")
        split = call_arg(obj.call, None, "split")
        if (train is not None and literal_value(train) is False) or (
            split is not None and is_eval_name(str(literal_value(split)))
        ):
            return True
    return False


def _provably_false(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    if literal_value(expr) is False:
        return True
    values = ev.eval(expr, module)
    return bool(values) and all(isinstance(v, Lit) and v.value is False for v in values)


def _streams(dataset: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """An IterableDataset (user subclass or library stream), or ``load_dataset(..., streaming=True)``."""
    for value in ev.eval(dataset, module):
        if isinstance(value, Instance) and any(m in q for q in ev.base_qualnames(value.cls) for m in T.STREAMING_MARKERS):
            return True
        if isinstance(value, Obj) and (any(m in value.qualname for m in T.STREAMING_MARKERS) or _streaming_flag(value.call)):
            return True
    return False


def _streaming_flag(call: cst.Call) -> bool:
    streaming = call_arg(call, None, "streaming")
    return streaming is not None and literal_value(streaming) is True
