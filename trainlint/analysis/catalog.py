"""What the analyzer knows about PyTorch and its ecosystem, by qualified name.

Aliases are listed explicitly (``torch.nn.modules.loss.CrossEntropyLoss`` is the same class
as ``torch.nn.CrossEntropyLoss``) because the analyzer never imports torch.
"""

from __future__ import annotations

# Top-level packages that are never local files: skips a file-system probe per lookup.
KNOWN_LIBRARIES = frozenset(
    {
        "torch", "torchvision", "torchaudio", "torchtext", "transformers", "timm", "numpy",
        "np", "accelerate", "deepspeed", "lightning", "pytorch_lightning", "os", "sys", "math",
        "random", "time", "json", "argparse", "logging", "functools", "itertools",
        "collections", "typing", "pathlib", "copy", "tqdm", "apex", "bitsandbytes",
        "datasets", "sklearn", "scipy", "pandas", "wandb", "einops",
    }
)

TENSOR_KINDS = ("probs", "log_probs", "sigmoid", "loss", "manual_log_probs")


def _with_prefixes(names: dict[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    return {f"{prefix}.{name}": kind for prefix in prefixes for name, kind in names.items()}


_FUNCTIONAL = ("torch.nn.functional",)
_TORCH = ("torch", "torch.special")

# Library functions whose result has a known tensor kind.
TENSOR_FUNCTION_KINDS: dict[str, str] = {
    **_with_prefixes({"softmax": "probs", "log_softmax": "log_probs", "sigmoid": "sigmoid"}, _FUNCTIONAL),
    **_with_prefixes({"softmax": "probs", "log_softmax": "log_probs", "sigmoid": "sigmoid"}, _TORCH),
    "torch.special.expit": "sigmoid",
}

# Tensor methods with a known result kind: ``logits.softmax(dim=-1)``.
TENSOR_METHOD_KINDS: dict[str, str] = {
    "softmax": "probs",
    "log_softmax": "log_probs",
    "sigmoid": "sigmoid",
}

# ``nn`` layers whose output has a known kind when called.
MODULE_CLASS_KINDS: dict[str, str] = {
    **_with_prefixes({"Softmax": "probs", "Softmax2d": "probs", "LogSoftmax": "log_probs", "Sigmoid": "sigmoid"},
                     ("torch.nn", "torch.nn.modules.activation")),
}

LOG_FUNCTIONS = frozenset({"torch.log", "torch.log2", "torch.log10"})

# Methods that return (a view of) the receiver with the same meaning.
PASS_THROUGH_METHODS = frozenset(
    {
        "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose", "contiguous",
        "float", "double", "half", "bfloat16", "to", "cuda", "cpu", "flatten", "clone",
        "view_as", "reshape_as", "type", "requires_grad_", "train", "squeeze_", "unsqueeze_",
    }
)

# Wrappers whose first argument is the real model.
MODEL_WRAPPERS = frozenset(
    {
        "torch.nn.DataParallel",
        "torch.nn.parallel.DataParallel",
        "torch.nn.parallel.DistributedDataParallel",
        "torch.nn.parallel.DistributedDataParallel",
        "torch.distributed.fsdp.FullyShardedDataParallel",
    }
)
MODEL_PASS_THROUGH_FUNCTIONS = frozenset({"torch.compile", "copy.deepcopy", "torch.jit.script"})

_LOSS_CLASS_NAMES = (
    "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
    "SmoothL1Loss", "HuberLoss", "KLDivLoss", "CTCLoss", "MarginRankingLoss",
    "MultiLabelSoftMarginLoss", "MultiLabelMarginLoss", "CosineEmbeddingLoss",
    "TripletMarginLoss", "PoissonNLLLoss", "GaussianNLLLoss", "SoftMarginLoss",
    "HingeEmbeddingLoss", "MultiMarginLoss",
)
LOSS_CLASSES = frozenset(
    f"{prefix}.{name}" for prefix in ("torch.nn", "torch.nn.modules.loss") for name in _LOSS_CLASS_NAMES
)
_LOSS_FUNCTION_NAMES = (
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "ctc_loss",
    "margin_ranking_loss", "multilabel_soft_margin_loss", "cosine_embedding_loss",
    "triplet_margin_loss", "poisson_nll_loss", "gaussian_nll_loss", "soft_margin_loss",
)
LOSS_FUNCTIONS = frozenset(f"torch.nn.functional.{name}" for name in _LOSS_FUNCTION_NAMES)

# Losses that expect unnormalized logits as input.
CROSS_ENTROPY = frozenset(
    {"torch.nn.CrossEntropyLoss", "torch.nn.modules.loss.CrossEntropyLoss", "torch.nn.functional.cross_entropy"}
)
BCE_WITH_LOGITS = frozenset(
    {
        "torch.nn.BCEWithLogitsLoss",
        "torch.nn.modules.loss.BCEWithLogitsLoss",
        "torch.nn.functional.binary_cross_entropy_with_logits",
    }
)
NLL = frozenset({"torch.nn.NLLLoss", "torch.nn.modules.loss.NLLLoss", "torch.nn.functional.nll_loss"})

OPTIMIZER_NAMES = (
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam",
    "SparseAdam", "LBFGS", "ASGD", "Rprop", "Adafactor",
)
OPTIMIZERS = frozenset(f"torch.optim.{name}" for name in OPTIMIZER_NAMES) | frozenset(
    f"torch.optim.{name.lower()}.{name}" for name in OPTIMIZER_NAMES
)

SCHEDULER_PREFIXES = ("torch.optim.lr_scheduler.", "transformers.get_", "transformers.optimization.get_")
GRAD_SCALERS = frozenset(
    {"torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.cpu.amp.GradScaler", "torch.amp.grad_scaler.GradScaler"}
)
ACCELERATORS = frozenset({"accelerate.Accelerator", "accelerate.accelerator.Accelerator"})
DATA_LOADERS = frozenset({"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"})
CLIP_FUNCTIONS = frozenset(
    {
        "torch.nn.utils.clip_grad_norm_",
        "torch.nn.utils.clip_grad_value_",
        "torch.nn.utils.clip_grad_norm",
        "torch.nn.utils.clip_grad.clip_grad_norm_",
        "torch.nn.utils.clip_grad.clip_grad_value_",
    }
)
BACKWARD_FUNCTIONS = frozenset({"torch.autograd.backward"})


def is_scheduler(qualname: str) -> bool:
    return qualname.startswith(SCHEDULER_PREFIXES) and (
        "lr_scheduler" in qualname or "schedule" in qualname
    )


def is_optimizer(qualname: str) -> bool:
    return qualname in OPTIMIZERS or (
        qualname.startswith("torch.optim.") and not qualname.startswith("torch.optim.lr_scheduler")
        and qualname.rsplit(".", 1)[-1][:1].isupper()
    )
