"""Everything trainlint knows about libraries, one module per library (like astroid's
brains). Rules and the engine ask these predicates; no other module spells a library name.
"""

from __future__ import annotations

import enum
import re

from trainlint.analysis.brains import (
    accelerate, deepspeed, flash_attn, ignite, lightning, python, timm, torch, torchdata, transformers, xformers,
)

# Top-level packages that are never local files: skips a file-system probe per lookup.
KNOWN_LIBRARIES = (
    torch.ROOTS | transformers.ROOTS | accelerate.ROOTS | timm.ROOTS | lightning.ROOTS | ignite.ROOTS
    | deepspeed.ROOTS | torchdata.ROOTS | flash_attn.ROOTS | xformers.ROOTS
    | frozenset(
        {
            "torchvision", "torchaudio", "torchtext", "numpy", "np", "os", "sys", "math", "random",
            "time", "json", "argparse", "logging", "functools", "itertools", "collections", "typing",
            "pathlib", "copy", "tqdm", "apex", "bitsandbytes", "datasets", "sklearn", "scipy",
            "pandas", "wandb", "einops", "hydra", "omegaconf", "contextlib", "dataclasses", "re",
        }
    )
)
# Packages whose models are nn.Modules built by the library.
MODEL_PREFIXES = ("torchvision.models.", "torch.hub.", "timm.", "transformers.", "diffusers.", "peft.")

DATA_LOADERS = torch.DATA_LOADERS | torchdata.DATA_LOADERS
DISTRIBUTED_SAMPLERS = torch.DISTRIBUTED_SAMPLERS | torchdata.DISTRIBUTED_SAMPLERS
GRAD_SCALERS = torch.GRAD_SCALERS
RANK_FUNCTIONS = torch.RANK_FUNCTIONS | deepspeed.RANK_FUNCTIONS
# Values that differ between the processes of one job without naming the rank.
PER_PROCESS_VALUES = python.PER_PROCESS_VALUES | torch.PER_PROCESS_SEEDS
# Attention kernels with a dropout rate argument: qualname -> (keyword, position).
DROPOUT_RATE_ARGUMENTS = {**torch.DROPOUT_RATE_ARGUMENTS, **flash_attn.DROPOUT_RATE_ARGUMENTS, **xformers.DROPOUT_RATE_ARGUMENTS}
ACCELERATORS = accelerate.ACCELERATORS
# Frameworks whose ``backward(loss)`` scales the loss, and whose loaders get set_epoch.
FRAMEWORK_PREFIXES = ("accelerate.", "deepspeed.", "lightning.", "pytorch_lightning.", "lightning_fabric.")
# Receivers named like framework objects (``self.accelerator``, ``model_engine``, ``fabric``).
FRAMEWORK_NAMES = ("accelerator", "fabric", "engine", "trainer")
# Roots of libraries whose prepared loaders call set_epoch themselves.
SELF_EPOCHING_ROOTS = frozenset({"accelerate", "lightning", "pytorch_lightning", "lightning_fabric"})


class Kind(str, enum.Enum):
    """What a library object is, as far as training state is concerned."""

    OPTIMIZER = "optimizer"
    SCHEDULER = "scheduler"
    SCALER = "scaler"
    LOADER = "loader"
    SAMPLER = "sampler"
    MODEL = "model"
    LOSS = "loss"
    FRAMEWORK = "framework"


def kind_of(qualname: str) -> Kind | None:
    """The kind of the object a library call builds (``torch.optim.SGD`` → OPTIMIZER)."""
    if qualname in GRAD_SCALERS:
        return Kind.SCALER
    if is_scheduler(qualname):
        return Kind.SCHEDULER
    if is_optimizer(qualname):
        return Kind.OPTIMIZER
    if qualname in DATA_LOADERS:
        return Kind.LOADER
    if qualname in DISTRIBUTED_SAMPLERS or qualname in torch.BATCH_SAMPLERS:
        return Kind.SAMPLER
    if qualname in torch.LOSS_CLASSES:
        return Kind.LOSS
    if qualname.startswith(FRAMEWORK_PREFIXES) and not is_model(qualname):
        return Kind.FRAMEWORK
    if is_model(qualname):
        return Kind.MODEL
    return None


# Library base classes a project subclasses, and what the subclass then is.
_BASE_KINDS = {
    "torch.optim.Optimizer": Kind.OPTIMIZER,
    "torch.optim.optimizer.Optimizer": Kind.OPTIMIZER,
    "torch.optim.lr_scheduler.LRScheduler": Kind.SCHEDULER,
    "torch.optim.lr_scheduler._LRScheduler": Kind.SCHEDULER,
    "torch.utils.data.Dataset": None,
}


def base_kind(qualname: str) -> Kind | None:
    """What a project class deriving from ``qualname`` is (``LARS(torch.optim.Optimizer)``
    is an optimizer, ``WarmUpLR(_LRScheduler)`` a scheduler)."""
    if qualname in _BASE_KINDS:
        return _BASE_KINDS[qualname]
    if is_module_base(qualname) and kind_of(qualname) in (None, Kind.MODEL):
        return Kind.MODEL
    return kind_of(qualname)


def is_optimizer(qualname: str) -> bool:
    return torch.is_optimizer(qualname) or qualname in transformers.OPTIMIZERS


def is_scheduler(qualname: str) -> bool:
    return torch.is_scheduler(qualname) or transformers.is_schedule(qualname) or qualname.startswith(timm.SCHEDULER_PREFIX)


def is_model(qualname: str) -> bool:
    """A call that builds an ``nn.Module`` (a layer, a wrapper, a library model)."""
    if qualname in torch.LOSS_CLASSES:
        return False
    if torch.is_module_factory(qualname) or qualname in torch.MODEL_WRAPPERS:
        return True
    if qualname.startswith(("transformers.", "diffusers.", "peft.")):
        return transformers.is_model(qualname)
    return qualname.startswith(("torchvision.models.", "torch.hub.")) or timm.is_model(qualname)


def is_module_base(qualname: str) -> bool:
    """A library base class that makes a user class an ``nn.Module``."""
    return qualname.startswith(("torch.nn.", "transformers.", "diffusers.", "timm.", "lightning.", "pytorch_lightning."))


def starts_in_eval_mode(qualname: str) -> bool:
    """Models that a library hands back in eval mode (``from_pretrained``)."""
    return transformers.starts_in_eval_mode(qualname)


def is_library_model(qualname: str) -> bool:
    """A model whose layers are not visible: assume it has dropout or batch norm."""
    return qualname.startswith(MODEL_PREFIXES)


def is_framework(qualname: str) -> bool:
    return qualname.startswith(FRAMEWORK_PREFIXES)


def kind_from_name(name: str | None) -> Kind | None:
    """What a receiver is named after, when nothing is known about its value."""
    if not name:
        return None
    lowered = name.lower()
    if "scaler" in lowered:
        return Kind.SCALER
    if "sched" in lowered or lowered in ("lr", "lr_sched", "warmup"):
        return Kind.SCHEDULER
    if "optim" in lowered or lowered in ("opt", "optimiser") or lowered.startswith("opt_") or lowered.endswith("_opt"):
        return Kind.OPTIMIZER
    if "criterion" in lowered or lowered.endswith("loss") or lowered.startswith("loss"):
        return Kind.LOSS
    if "accelerator" in lowered or "fabric" in lowered or lowered.endswith("engine"):
        return Kind.FRAMEWORK
    return None


# Names given to a process's rank: ``rank``, ``local_rank``, ``ddp_rank``, ``args.gpu_rank``,
# accelerate's ``process_index``, Lightning's ``global_rank``, ``hvd.rank()``, ``xm.get_ordinal()``
# (not ``lora_rank``: a LoRA rank is a matrix size).
RANK_NAME = re.compile(
    r"^(local_|global_|world_|node_|ddp_|ddp_local_|dist_|gpu_|process_|my_)?rank$|^(local_)?process_index$"
    r"|^proc_?id$|^get_(local_|global_|node_local_)?rank$|^get_ordinal$"
)


def is_rank_name(name: str | None) -> bool:
    return name is not None and RANK_NAME.match(name.lower()) is not None
