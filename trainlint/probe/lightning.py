"""A PyTorch Lightning callback that probes the training pipeline before the first step.

    trainer = Trainer(callbacks=[ProbeCallback()])

It runs when training starts (the dataloader and optimizers exist by then), on the
LightningModule's own ``training_step`` (so softmax before a loss computed there is
caught), and raises :class:`~trainlint.probe.report.ProbeFailure` on errors, which stops
``trainer.fit`` before a GPU-hour is spent. The report stays on ``callback.report``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from trainlint.probe.integrations import ProbeSettings

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # the standalone package
    from pytorch_lightning import Callback, LightningModule, Trainer  # type: ignore[no-redef,assignment]


class ProbeCallback(Callback):  # type: ignore[misc]
    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings = ProbeSettings(**settings)

    @property
    def report(self) -> Any:
        return self.settings.report

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            return  # manual optimization steps inside training_step: nothing to call safely
        optimizers, loader = trainer.optimizers, trainer.train_dataloader
        if loader is None:
            return
        with _no_logging(pl_module):
            self.settings.run(
                pl_module,
                loader,
                optimizer=optimizers[0] if len(optimizers) == 1 else None,
                step_fn=_training_loss,
                device=pl_module.device,
            )


def _training_loss(module: Any, batch: Any) -> torch.Tensor:
    output = module.training_step(batch, 0)
    if isinstance(output, Mapping):
        output = output["loss"]
    return output  # type: ignore[no-any-return]


@contextlib.contextmanager
def _no_logging(module: Any) -> Iterator[None]:
    """``self.log`` from inside training_step would record the probe's steps as metrics."""
    module.log = module.log_dict = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del module.log, module.log_dict
