"""What trainlint knows about Hugging Face transformers (and diffusers, which shares its
conventions)."""

from __future__ import annotations

ROOTS = frozenset({"transformers", "diffusers", "peft"})

# ``get_linear_schedule_with_warmup(...)``, ``get_scheduler("cosine", ...)``: every schedule
# is written in optimizer steps (warmup and training steps).
SCHEDULE_PREFIXES = ("transformers.get_", "transformers.optimization.get_", "diffusers.optimization.get_")
# Schedules that do not change the LR at all, so their frequency is moot.
CONSTANT_SCHEDULES = frozenset({"get_constant_schedule", "constant"})
# Models loaded with ``from_pretrained`` come back in eval mode.
LOADERS_IN_EVAL_MODE = ("from_pretrained",)
# Things called like models that are not: tokenizers and processors return inputs.
NOT_MODELS = ("Tokenizer", "Processor", "FeatureExtractor", "ImageProcessor", "Pipeline", "Config")
# Old ``transformers.AdamW`` is a torch-style optimizer.
OPTIMIZERS = frozenset({"transformers.AdamW", "transformers.optimization.AdamW", "transformers.Adafactor",
                        "transformers.optimization.Adafactor"})
# Trainer classes whose loop (zero_grad, backward, step, eval mode) is the library's.
TRAINERS = frozenset({"transformers.Trainer", "transformers.Seq2SeqTrainer", "transformers.trainer.Trainer"})
# Methods of a Trainer subclass the library calls once per batch.
TRAINER_STEP_METHODS = frozenset({"compute_loss", "training_step"})
TRAINER_EVAL_METHODS = frozenset({"prediction_step", "evaluate", "evaluation_loop"})
# ``outputs.loss`` of a model output.
OUTPUT_LOSS_ATTRIBUTES = frozenset({"loss"})


def is_schedule(qualname: str) -> bool:
    return qualname.startswith(SCHEDULE_PREFIXES) and "schedule" in qualname


def is_model(qualname: str) -> bool:
    """A library model class or its ``from_pretrained`` result (not a tokenizer)."""
    return qualname.startswith(("transformers.", "diffusers.", "peft.")) and not any(word in qualname for word in NOT_MODELS) and (
        qualname.endswith(LOADERS_IN_EVAL_MODE) or qualname.rsplit(".", 1)[-1][:1].isupper() or "get_peft_model" in qualname
    )


def starts_in_eval_mode(qualname: str) -> bool:
    return qualname.endswith(LOADERS_IN_EVAL_MODE) and not any(word in qualname for word in NOT_MODELS)
