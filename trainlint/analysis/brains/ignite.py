"""What trainlint knows about pytorch-ignite: ``Engine(step_fn)`` runs ``step_fn`` once per
batch, and the supervised factories build whole training or evaluation loops."""

from __future__ import annotations

ROOTS = frozenset({"ignite"})

ENGINES = frozenset({"ignite.engine.Engine", "ignite.engine.engine.Engine"})
# ``create_supervised_trainer`` clears, backpropagates and steps correctly by itself.
TRAINER_FACTORIES = frozenset({"ignite.engine.create_supervised_trainer", "ignite.engine.supervised_training_step"})
# ``create_supervised_evaluator`` puts the model in eval mode under no_grad.
EVALUATOR_FACTORIES = frozenset({"ignite.engine.create_supervised_evaluator"})
