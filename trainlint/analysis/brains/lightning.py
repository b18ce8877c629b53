"""What trainlint knows about PyTorch Lightning (and Fabric): the library runs the loop,
puts the model in train/eval mode, turns gradients off for validation, scales the loss and
sets the sampler's epoch."""

from __future__ import annotations

ROOTS = frozenset({"lightning", "pytorch_lightning", "lightning_fabric"})

MODULE_BASES = frozenset(
    {"pytorch_lightning.LightningModule", "lightning.LightningModule", "lightning.pytorch.LightningModule",
     "pytorch_lightning.core.LightningModule", "pytorch_lightning.core.module.LightningModule",
     "lightning.pytorch.core.LightningModule", "lightning.pytorch.core.module.LightningModule"}
)
# Hooks the library calls once per training batch, in train mode, with gradients on.
TRAINING_HOOKS = frozenset({"training_step"})
# Hooks it calls in eval mode under no_grad.
EVALUATION_HOOKS = frozenset({"validation_step", "test_step", "predict_step"})
FABRIC = frozenset({"lightning.Fabric", "lightning.fabric.Fabric", "lightning_fabric.Fabric"})
# ``self.manual_backward(loss)`` / ``fabric.backward(loss)`` scale the loss themselves.
BACKWARD_METHODS = frozenset({"manual_backward", "backward"})
# Under manual optimization nothing divides the loss for gradient accumulation: the
# module's own ``training_step`` must.
MANUAL_BACKWARD = "manual_backward"
# Inside a LightningModule, ``self.trainer.model`` is the module itself (possibly wrapped by
# the strategy): its ``parameters()`` are the whole network.
SELF_MODEL_ATTRIBUTES = frozenset({"self.trainer.model", "self.trainer.lightning_module"})
# ``self.save_hyperparameters()`` stores the ``__init__`` arguments as ``self.hparams.<name>``.
SAVE_HYPERPARAMETERS = "save_hyperparameters"
HPARAMS = "self.hparams"
ROOT_PREFIXES = ("lightning.", "pytorch_lightning.")
# ``self.automatic_optimization = False``: the module backpropagates and steps itself.
AUTOMATIC_OPTIMIZATION = "automatic_optimization"
