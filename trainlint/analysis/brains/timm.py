"""What trainlint knows about timm: models, its own schedulers, its loss-scaler callable and
its optimizer factory."""

from __future__ import annotations

ROOTS = frozenset({"timm"})

MODEL_FACTORIES = ("timm.create_model", "timm.models.create_model")
# ``loss_scaler(loss, optimizer, clip_grad=..., parameters=...)`` scales, runs backward,
# unscales, clips, steps and updates: a whole AMP step in one call.
LOSS_SCALERS = frozenset({"timm.utils.NativeScaler", "timm.utils.cuda.NativeScaler", "timm.utils.ApexScaler"})
# timm schedulers are stepped with the epoch (``step(epoch)``) and per update
# (``step_update(num_updates)``): their frequency is explicit.
SCHEDULER_PREFIX = "timm.scheduler."
SCHEDULER_FACTORIES = frozenset({"timm.scheduler.create_scheduler", "timm.scheduler.create_scheduler_v2"})
# ``create_optimizer_v2(model, weight_decay=...)`` exempts biases and norms itself.
OPTIMIZER_FACTORIES = frozenset({"timm.optim.create_optimizer_v2", "timm.optim.create_optimizer", "timm.optim.optim_factory.create_optimizer_v2"})


def is_model(qualname: str) -> bool:
    return qualname.startswith(MODEL_FACTORIES) or (qualname.startswith("timm.models.") and qualname.rsplit(".", 1)[-1][:1].isupper())

# ``AverageMeter.update(val, n)`` adds ``val`` into its running sum (a tensor keeps its graph).
METERS = frozenset({"timm.utils.AverageMeter", "timm.utils.metrics.AverageMeter"})
# ``model_ema.update(model)`` moves the EMA copy's weights towards the model's.
EMA_MODELS = frozenset(
    {"timm.utils.ModelEma", "timm.utils.ModelEmaV2", "timm.utils.ModelEmaV3", "timm.utils.model_ema.ModelEma",
     "timm.utils.model_ema.ModelEmaV2", "timm.utils.model_ema.ModelEmaV3"}
)
