"""A Hugging Face ``TrainerCallback`` that probes the model before the first training step.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[ProbeTrainerCallback()])

It runs in ``on_train_begin`` on the trainer's own model, optimizer and train dataloader
(dict batches: ``model(**batch).loss``, as the Trainer computes it), and raises
:class:`~trainlint.probe.report.ProbeFailure` on errors, which stops ``trainer.train()``.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from trainlint.probe.integrations import ProbeSettings


class ProbeTrainerCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, **settings: Any) -> None:
        self.settings = ProbeSettings(**settings)

    @property
    def report(self) -> Any:
        return self.settings.report

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, loader = kwargs.get("model"), kwargs.get("train_dataloader")
        if model is None or loader is None or not state.is_world_process_zero:
            return
        self.settings.run(model, loader, optimizer=kwargs.get("optimizer"))
