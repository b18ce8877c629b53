"""What trainlint knows about Hugging Face accelerate: the Accelerator scales the loss in
its own ``backward``, hands prepared objects back in order, sets the sampler's epoch of the
loaders it prepares, and its ``accumulate`` context gates optimizer steps."""

from __future__ import annotations

ROOTS = frozenset({"accelerate"})

ACCELERATORS = frozenset({"accelerate.Accelerator", "accelerate.accelerator.Accelerator"})
# ``accelerator.prepare(model, optimizer, loader)`` returns its arguments, wrapped.
PREPARE_METHODS = frozenset({"prepare", "prepare_model", "prepare_optimizer", "prepare_data_loader", "prepare_scheduler"})
# ``with accelerator.accumulate(model):`` makes optimizer.step()/zero_grad() no-ops except on
# the micro-batch that syncs gradients.
ACCUMULATE_CONTEXTS = frozenset({"accumulate", "no_sync"})
# ``Accelerator(gradient_accumulation_steps=k)`` (or a plugin setting it) makes
# ``accelerator.backward`` divide the loss by k; built without them, it divides by nothing.
ACCUMULATION_ARGUMENTS = frozenset({"gradient_accumulation_steps", "gradient_accumulation_plugin", "deepspeed_plugin"})
# ``accelerator.clip_grad_norm_`` unscales first.
UNSCALING_CLIPS = frozenset({"clip_grad_norm_", "clip_grad_value_"})
