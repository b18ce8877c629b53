from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Engine, LoopFacts, Occurrence
from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.keys import Key
from trainlint.analysis.state import ModeV
from trainlint.analysis.names import dotted
from trainlint.analysis.training import evaluates_after, innermost_loop, model_calls, model_expression, stepped_optimizers, target
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class TrainModeNotRestored(Rule):
    code = "TL603"
    name = "train-mode-not-restored"
    severity = Severity.ERROR
    summary = "Evaluation switches the model to eval mode and training resumes without model.train()."
    message = "after evaluation the model stays in eval mode, so the following epochs train without dropout and with frozen batch-norm statistics"
    hint = "Call model.train() at the start of each epoch (or of the train function), or at the end of the evaluation."
    triggers = (".eval()", "train(False)", "train(mode=False)")

    def check(self, ctx: Context) -> Iterator[Report]:
        engine = ctx.engine
        engine.analyse(ctx.model)
        reported: set[int] = set()
        for backward in engine.all_occurrences(OpKind.BACKWARD):
            # Reports land at a switch written in this file (see _report_node): modes set
            # elsewhere are left to the files that hold them.
            candidates = [(key, values) for key, values in backward.state.modes.items() if any(_switched_here(v, ctx) for v in values)]
            if not candidates:
                continue
            trained = _trained_models(engine, backward)
            for key, values in candidates:
                if key not in trained or _restored_somewhere(engine, backward.op, key):
                    continue
                for value in values:
                    switch = value.origin
                    if not _switched_here(value, ctx) or switch is None or not _evaluates_after(engine, switch):
                        continue
                    if _trains_in_eval_on_purpose(engine, switch, backward):
                        continue
                    where = _report_node(engine, switch, backward, ctx)
                    if where is not None and id(where[0]) not in reported:
                        reported.add(id(where[0]))
                        yield Report(where[0], message=_message(switch, where[1]))


def _switched_here(value: ModeV, ctx: Context) -> bool:
    """Certainly put in eval mode by a switch written in this file."""
    return value.mode == "eval" and value.certain and value.origin is not None and value.origin.module is ctx.model


def _evaluates_after(engine: Engine, switch: Op) -> bool:
    return engine.memo(("evaluates_after", id(switch)), lambda: evaluates_after(engine, switch))


def _restored_somewhere(engine: Engine, backward: Op, key: Key) -> bool:
    """Some way to this backward switches the model back to training mode: the code
    manages the mode itself, and a way that does not is most likely one that cannot
    happen (``if weights == "finetune": model.train() elif weights == "freeze": ...``)."""
    return engine.memo(
        ("restored_somewhere", id(backward), key),
        lambda: any(
            v.mode == "train" and v.origin is not None and v.certain
            for occurrence in engine.occurrences_of(backward)
            for v in occurrence.state.modes.get(key, frozenset())
        ),
    )


def _trains_in_eval_on_purpose(engine: Engine, switch: Op, backward: Occurrence) -> bool:
    """``model.eval()`` written before the training loop in the function that runs it: a
    linear probe keeps the frozen backbone's batch norm fixed on purpose."""
    loop = innermost_loop(engine, backward)
    if loop is None or loop.loop.module is not switch.module or isinstance(loop.loop.node, cst.FunctionDef):
        return False
    module = switch.module
    node = loop.loop.node
    return (
        any(o.frame is backward.home for o in engine.occurrences_of(switch))
        and module.order_of(switch.node, 0) < module.order_of(node, 0)
        and not module.is_within(switch.node, node)
    )


def _trained_models(engine: Engine, backward: Occurrence) -> frozenset[Key]:
    """The models the loop around a backward trains: those its optimizers were built over,
    else those it calls with gradients on (a frozen teacher runs under no_grad). A module
    is one of them only when it is certainly the same object (keys are equal): two names
    of one scope are two models (``teacher`` is not ``student``), an unresolved attribute
    (``model_ema.ema``) is not the model either."""
    loop = innermost_loop(engine, backward)
    if loop is None:
        return frozenset()
    return engine.memo(("tl603_trained", id(loop)), lambda: frozenset(_trained_by(engine, loop)))


def _trained_by(engine: Engine, loop: LoopFacts) -> list[Key]:
    owners: list[Key] = []
    for step in stepped_optimizers(engine, loop):
        optimizer = target(engine, step)
        found = engine.owners(optimizer) if optimizer is not None else ()
        if not found:
            owners = []
            break
        owners.extend(found)
    if owners:
        return owners
    called = []
    for call in model_calls(engine, loop):
        expression = model_expression(call.call)
        for snapshot in engine.snapshots(call.call, call.module):
            if expression is not None and "on" in snapshot.state.grad:
                called.append(engine.key(expression, call.module, snapshot.frame))
    return called


def _report_node(engine: Engine, switch: Op, backward: Occurrence, ctx: Context) -> tuple[cst.CSTNode, bool] | None:
    """Where the unrestored switch is reported: in the tightest loop that runs both the
    evaluation and the next backward pass, at the switch or the call leading to it; when
    that loop lives in another file than the switch, at the switch itself (one place,
    whichever files are linted)."""
    best: tuple[int, cst.CSTNode, bool] | None = None
    for occurrence in engine.occurrences_of(switch):
        common = _common_prefix(occurrence.state.loops, backward.state.loops)
        loop = engine._loops.get(occurrence.state.loops[common - 1].loop) if common else None
        if loop is None:
            continue
        if loop.loop.module is not switch.module:
            found = (switch.node, True) if switch.module is ctx.model else None
        else:
            node = next((n for n in (occurrence.node_at(frame) for frame in loop.frames) if n is not None), None)
            found = (node, node is switch.node) if node is not None and loop.loop.module is ctx.model else None
        if found is not None and (best is None or common > best[0]):
            best = (common, found[0], found[1])
    return (best[1], best[2]) if best is not None else None


def _common_prefix(a: tuple, b: tuple) -> int:  # type: ignore[type-arg]
    count = 0
    for left, right in zip(a, b):
        if left.loop != right.loop:
            break
        count += 1
    return count


def _message(switch: Op, direct: bool) -> str:
    call = switch.node
    text = f"`{dotted(call.func) or 'model.eval'}()`" if isinstance(call, cst.Call) else "`model.eval()`"
    where = f"{text} here" if direct else f"this call ({text} at {switch.module.where(call)})"
    return (
        f"{where} leaves the model in eval mode and the loop's next backward pass runs before any "
        "model.train(): later epochs train without dropout and with frozen batch-norm statistics"
    )
