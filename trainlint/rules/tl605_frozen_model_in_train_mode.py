from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.engine import Engine, LoopFacts, Snapshot
from trainlint.analysis.keys import Key, Relation, relation
from trainlint.analysis.models import has_mode_layers, share_modules
from trainlint.analysis.training import (
    ModelCall,
    frozen_at,
    model_calls,
    model_expression,
    model_name,
    trained_models,
    weights_written,
)
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class FrozenModelInTrainMode(Rule):
    code = "TL605"
    name = "frozen-model-in-train-mode"
    severity = Severity.WARNING
    summary = "A frozen model (teacher, frozen backbone, reference model) runs in the training step in train mode: batch-norm statistics drift, dropout adds noise."
    message = "a frozen model runs in training mode inside the training step"
    hint = "Put the frozen model in eval mode (`teacher.eval()`) after the student's model.train(), and keep it there."
    triggers = ("requires_grad", "no_grad", "inference_mode")

    def check(self, ctx: Context) -> Iterator[Report]:
        engine = ctx.engine
        reported: set[int] = set()
        for loop in engine.loops(ctx.model):
            if not engine.is_training_loop(loop):
                continue
            trained = trained_models(engine, loop)
            for call in model_calls(engine, loop):
                if id(call.anchor) not in reported and _frozen_in_train_mode(engine, loop, call, trained) is not None:
                    reported.add(id(call.anchor))
                    yield Report(call.anchor, message=_message(call))


def _frozen_in_train_mode(engine: Engine, loop: LoopFacts, call: ModelCall, trained: tuple[Key, ...] | None) -> Key | None:
    """The called model, when on every way to the call it is frozen and in training mode
    (not put there on purpose by its own ``.train()``), has dropout or batch norm, and
    the loop neither trains it nor moves its weights (an EMA teacher)."""
    expression = model_expression(call.call)
    snapshots = engine.snapshots(call.call, call.module)
    if expression is None or not snapshots:
        return None
    key = engine.key(expression, call.module, snapshots[0].frame)
    if any(relation(key, model) is not Relation.DIFFERENT or key.is_part_of(model) for model in trained or []):
        return None
    # ``no_grad`` says the model is frozen only next to optimizers known to train other
    # models, none of them built over its modules (a tokenizer wrapping the trained LM).
    others = trained is not None and not any(share_modules(key.values, model.values, engine.ev) for model in trained)
    if not all(_frozen(engine, call, snapshot, others) and _in_train_mode(engine, call, snapshot) for snapshot in snapshots):
        return None
    if has_mode_layers(key.values, engine.ev) is not True or weights_written(engine, loop, key):
        return None
    return key


def _frozen(engine: Engine, call: ModelCall, snapshot: Snapshot, others_trained: bool) -> bool:
    """``requires_grad_(False)`` on it, or run under ``no_grad`` while the optimizers train
    other models."""
    expression = model_expression(call.call)
    assert expression is not None
    if frozen_at(engine, expression, call.module, snapshot) == frozenset({True}):
        return True
    return others_trained and snapshot.state.grad == frozenset({"off"})


def _in_train_mode(engine: Engine, call: ModelCall, snapshot: Snapshot) -> bool:
    expression = model_expression(call.call)
    assert expression is not None
    modes = engine.modes(expression, call.module, snapshot)
    key = engine.key(expression, call.module, snapshot.frame)
    for mode in modes:
        if mode.mode != "train" or not mode.certain:
            return False
        origin = mode.origin
        if origin is not None and origin.target is not None and engine.key(origin.target, origin.module, snapshot.frame) == key:
            return False  # its own ``.train()``: batch-norm adaptation on purpose
    return bool(modes)


def _message(call: ModelCall) -> str:
    name = model_name(call.call)
    return (
        f"`{name}` is frozen (its parameters get no gradient) but runs in training mode in the training step: its "
        "batch-norm layers keep updating their running statistics from training batches and its dropout drops "
        "activations, so the targets or features it provides are noisy and drift away from the model you loaded"
    )
