"""What trainlint knows about torch itself, by qualified name.

The analyzer never imports torch, so every alias is spelled out
(``torch.nn.modules.loss.CrossEntropyLoss`` is ``torch.nn.CrossEntropyLoss``).
"""

from __future__ import annotations

ROOTS = frozenset({"torch"})

TENSOR_KINDS = ("probs", "log_probs", "sigmoid", "loss", "manual_log_probs")


def _with_prefixes(names: dict[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    return {f"{prefix}.{name}": kind for prefix in prefixes for name, kind in names.items()}


_ACTIVATIONS = {"softmax": "probs", "log_softmax": "log_probs", "sigmoid": "sigmoid"}
# Library functions whose result has a known tensor kind.
TENSOR_FUNCTION_KINDS: dict[str, str] = {
    **_with_prefixes(_ACTIVATIONS, ("torch.nn.functional", "torch", "torch.special")),
    "torch.special.expit": "sigmoid",
}
# Tensor methods with a known result kind: ``logits.softmax(dim=-1)``.
TENSOR_METHOD_KINDS: dict[str, str] = dict(_ACTIVATIONS)
# ``nn`` layers whose output has a known kind when called.
MODULE_CLASS_KINDS: dict[str, str] = _with_prefixes(
    {"Softmax": "probs", "Softmax2d": "probs", "LogSoftmax": "log_probs", "Sigmoid": "sigmoid"},
    ("torch.nn", "torch.nn.modules.activation"),
)
LOG_FUNCTIONS = frozenset({"torch.log", "torch.log2", "torch.log10"})
# ``torch.argmax(input, dim=None)``: without ``dim`` it flattens the input.
ARGMAX_FUNCTIONS = frozenset({"torch.argmax"})
ARGMAX_METHOD = "argmax"
# softmax(input, dim) and friends: the position of ``dim`` (methods and layers: 0).
SOFTMAX_DIM_POSITION = 1
# Constructors of new leaf tensors: whatever they are given, the result has no history.
NEW_TENSOR_FUNCTIONS = frozenset(
    {"torch.tensor", "torch.as_tensor", "torch.Tensor", "torch.FloatTensor", "torch.DoubleTensor", "torch.LongTensor",
     "torch.from_numpy", "torch.scalar_tensor", "torch.cuda.FloatTensor"}
)
# Functions that join tensors: the result keeps the kind its parts share.
JOIN_FUNCTIONS = frozenset({"torch.cat", "torch.concat", "torch.concatenate", "torch.stack", "torch.vstack", "torch.hstack"})

# Methods that return (a view of) the receiver with the same meaning.
PASS_THROUGH_METHODS = frozenset(
    {
        "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose", "contiguous",
        "float", "double", "half", "bfloat16", "to", "cuda", "cpu", "flatten", "clone",
        "view_as", "reshape_as", "type", "requires_grad_", "train", "squeeze_", "unsqueeze_",
        "to_empty",
    }
)
# Old wrappers that hand back the same tensor (``Variable(x)``, a no-op since PyTorch 0.4).
TENSOR_WRAPPERS = frozenset({"torch.autograd.Variable", "torch.autograd.variable.Variable"})
# Functions that return their first argument (typing.cast returns its second).
IDENTITY_FUNCTIONS = frozenset({"torch.compile", "copy.deepcopy", "torch.jit.script", "torch.nn.utils.convert_sync_batchnorm"})
# Of those, the ones that build a new object (its train/eval mode is its own).
COPY_FUNCTIONS = frozenset({"copy.deepcopy"})

# Wrappers whose first argument is the real model; ``wrapper.module`` is that model.
MODEL_WRAPPERS = frozenset(
    {
        "torch.nn.DataParallel",
        "torch.nn.parallel.DataParallel",
        "torch.nn.parallel.DistributedDataParallel",
        "torch.nn.parallel.distributed.DistributedDataParallel",
        "torch.distributed.fsdp.FullyShardedDataParallel",
        "torch.distributed.fsdp.fully_sharded_data_parallel.FullyShardedDataParallel",
    }
)
DDP_WRAPPERS = frozenset(q for q in MODEL_WRAPPERS if "DistributedDataParallel" in q or "FullySharded" in q)
SYNC_BATCHNORM = frozenset({"torch.nn.SyncBatchNorm.convert_sync_batchnorm"})

_LOSS_CLASS_NAMES = (
    "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
    "SmoothL1Loss", "HuberLoss", "KLDivLoss", "CTCLoss", "MarginRankingLoss",
    "MultiLabelSoftMarginLoss", "MultiLabelMarginLoss", "CosineEmbeddingLoss",
    "TripletMarginLoss", "PoissonNLLLoss", "GaussianNLLLoss", "SoftMarginLoss",
    "HingeEmbeddingLoss", "MultiMarginLoss", "TripletMarginWithDistanceLoss",
)
LOSS_CLASSES = frozenset(f"{prefix}.{name}" for prefix in ("torch.nn", "torch.nn.modules.loss") for name in _LOSS_CLASS_NAMES)
_LOSS_FUNCTION_NAMES = (
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "ctc_loss",
    "margin_ranking_loss", "multilabel_soft_margin_loss", "cosine_embedding_loss",
    "triplet_margin_loss", "poisson_nll_loss", "gaussian_nll_loss", "soft_margin_loss",
)
LOSS_FUNCTIONS = frozenset(f"torch.nn.functional.{name}" for name in _LOSS_FUNCTION_NAMES)

CROSS_ENTROPY = frozenset({"torch.nn.CrossEntropyLoss", "torch.nn.modules.loss.CrossEntropyLoss", "torch.nn.functional.cross_entropy"})
BCE_WITH_LOGITS = frozenset(
    {"torch.nn.BCEWithLogitsLoss", "torch.nn.modules.loss.BCEWithLogitsLoss", "torch.nn.functional.binary_cross_entropy_with_logits"}
)
NLL = frozenset({"torch.nn.NLLLoss", "torch.nn.modules.loss.NLLLoss", "torch.nn.functional.nll_loss"})

OPTIMIZER_NAMES = (
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam",
    "SparseAdam", "LBFGS", "ASGD", "Rprop", "Adafactor", "Muon",
)
OPTIMIZERS = frozenset(f"torch.optim.{name}" for name in OPTIMIZER_NAMES) | frozenset(
    f"torch.optim.{name.lower()}.{name}" for name in OPTIMIZER_NAMES
)
# Position of ``weight_decay`` in each optimizer's signature (after ``params``, ``lr``...).
DECAY_POSITION = {
    "SGD": 4, "Adam": 4, "AdamW": 4, "RMSprop": 4, "Adadelta": 4, "Adamax": 4, "NAdam": 4,
    "RAdam": 4, "Adafactor": 4, "Adagrad": 3, "ASGD": 5,
}
ADAM = frozenset({"torch.optim.Adam", "torch.optim.adam.Adam"})
# Optimizers that keep no state from one step to the next unless an argument turns it on:
# name -> (that argument, its position). Plain SGD rebuilt every epoch loses nothing.
STATE_ARGUMENTS = {"SGD": ("momentum", 2)}
SCHEDULERS = "torch.optim.lr_scheduler."

GRAD_SCALERS = frozenset(
    {"torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.cpu.amp.GradScaler", "torch.amp.grad_scaler.GradScaler",
     "torch.cuda.amp.grad_scaler.GradScaler", "torch.distributed.fsdp.sharded_grad_scaler.ShardedGradScaler"}
)
AUTOCASTS = frozenset(
    {"torch.autocast", "torch.amp.autocast", "torch.amp.autocast_mode.autocast", "torch.cuda.amp.autocast",
     "torch.cuda.amp.autocast_mode.autocast", "torch.cpu.amp.autocast"}
)
FLOAT16 = frozenset({"torch.float16", "torch.half"})
# Deprecated callable -> (its ``torch.amp`` replacement, its parameters in positional order).
DEPRECATED_AMP: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch.cuda.amp.autocast": ("autocast", ("enabled", "dtype", "cache_enabled")),
    "torch.cuda.amp.autocast_mode.autocast": ("autocast", ("enabled", "dtype", "cache_enabled")),
    "torch.cuda.amp.GradScaler": ("GradScaler", ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled")),
    "torch.cuda.amp.grad_scaler.GradScaler": ("GradScaler", ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled")),
}
DEPRECATED_AMP_MODULE = "torch.cuda.amp"
# torch.amp counterparts that older torch releases lack: torch.amp.GradScaler came in 2.3.
LATE_MODERN_AMP = frozenset({"GradScaler"})
MODERN_AMP_MODULE = "torch.amp"

DATA_LOADERS = frozenset({"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"})
# DistributedSampler(dataset, num_replicas, rank, shuffle, seed, drop_last)
SAMPLER_SEED_POSITION = 4
# The process's rank: torch.distributed and the variables torchrun / SLURM / MPI set.
RANK_FUNCTIONS = frozenset(
    {"torch.distributed.get_rank", "torch.distributed.get_node_local_rank", "torch.distributed.distributed_c10d.get_rank"}
)
RANK_ENVIRONMENT = frozenset(
    {"RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK",
     "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMIX_RANK"}
)
# ``torch.seed()`` draws a non-deterministic seed: different in every process.
PER_PROCESS_SEEDS = frozenset({"torch.seed", "torch.random.seed"})
DISTRIBUTED_SAMPLERS = frozenset({"torch.utils.data.DistributedSampler", "torch.utils.data.distributed.DistributedSampler"})
BATCH_SAMPLERS = frozenset({"torch.utils.data.BatchSampler", "torch.utils.data.sampler.BatchSampler"})
# Datasets that stream: a DataLoader cannot shuffle them (``shuffle=True`` raises).
STREAMING_MARKERS = ("Iterable", "IterDataPipe", "WebDataset", "Stream")
# DataLoader(dataset, batch_size, shuffle, sampler, batch_sampler, ...)
LOADER_BATCH_SIZE_POSITION = 1
LOADER_BATCH_SIZE_DEFAULT = 1
LOADER_SHUFFLE_POSITION = 2
LOADER_SAMPLER_POSITION = 3
LOADER_BATCH_SAMPLER_POSITION = 4

CLIP_FUNCTIONS = frozenset(
    {"torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_value_", "torch.nn.utils.clip_grad_norm",
     "torch.nn.utils.clip_grad.clip_grad_norm_", "torch.nn.utils.clip_grad.clip_grad_value_"}
)
BACKWARD_FUNCTIONS = frozenset({"torch.autograd.backward"})
GRAD_FUNCTIONS = frozenset({"torch.autograd.grad"})
NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad"})
ENABLE_GRAD = frozenset({"torch.enable_grad", "torch.autograd.enable_grad"})
SET_GRAD_ENABLED = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"})
UNPICKLING_LOADERS = frozenset({"torch.load", "torch.serialization.load", "torch.hub.load_state_dict_from_url"})

# Functional dropouts: (input, p, training, inplace), ``training`` defaulting to True.
FUNCTIONAL_DROPOUTS = frozenset(
    f"torch.nn.functional.{name}"
    for name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
)
# ``torch.dropout(input, p, train)``: ``train`` is required.
TORCH_DROPOUTS = frozenset(f"torch.{name}" for name in ("dropout", "alpha_dropout", "feature_dropout", "feature_alpha_dropout"))
# Attention kernels whose dropout rate argument ignores the module's mode:
# qualname -> (keyword, position) of the rate.
DROPOUT_RATE_ARGUMENTS: dict[str, tuple[str, int]] = {
    "torch.nn.functional.scaled_dot_product_attention": ("dropout_p", 4),
    "torch.nn.functional.multi_head_attention_forward": ("dropout_p", 10),
}
# Of those, the ones with a ``training`` switch (defaulting to True): its position.
TRAINING_FLAG_POSITION = {"torch.nn.functional.multi_head_attention_forward": 13}
# Calls that draw the random mask of a hand-written dropout (``x.new_empty(s).bernoulli_(q)``).
RANDOM_MASK_NAMES = frozenset({"bernoulli", "bernoulli_", "rand", "rand_like", "uniform_"})
ZERO_INITS = frozenset({"torch.nn.init.zeros_", "torch.nn.init.zeros"})
CONSTANT_INITS = frozenset({"torch.nn.init.constant_", "torch.nn.init.constant"})
RNN_CLASSES = frozenset(f"{p}.{n}" for p in ("torch.nn", "torch.nn.modules.rnn") for n in ("LSTM", "GRU", "RNN"))
# Recurrent layers whose state is one tensor (an LSTM's is an ``(h, c)`` pair).
SINGLE_STATE_RNNS = frozenset(f"{p}.{n}" for p in ("torch.nn", "torch.nn.modules.rnn") for n in ("GRU", "RNN", "GRUCell", "RNNCell"))

# Layers whose behaviour differs between train() and eval().
MODE_DEPENDENT_LAYERS = frozenset(
    {
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
        "LazyBatchNorm3d", "SyncBatchNorm", "Transformer", "TransformerEncoder",
        "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer",
    }
)
DROPOUT_ARGUMENT_LAYERS = frozenset({"MultiheadAttention", "LSTM", "GRU", "RNN"})
RUNNING_STATS_ARGUMENT_LAYERS = frozenset({"InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"})
MODE_FREE_LAYERS = frozenset(
    {
        "Linear", "LazyLinear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
        "ConvTranspose2d", "ConvTranspose3d", "ReLU", "ReLU6", "GELU", "SiLU", "Mish", "Tanh",
        "Sigmoid", "Softmax", "LogSoftmax", "LeakyReLU", "ELU", "SELU", "PReLU", "Softplus",
        "Hardswish", "Hardtanh", "LayerNorm", "GroupNorm", "RMSNorm", "LocalResponseNorm",
        "Embedding", "EmbeddingBag", "Flatten", "Unflatten", "Identity", "MaxPool1d",
        "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d", "Upsample", "PixelShuffle", "ZeroPad2d", "ConstantPad1d",
        "ConstantPad2d", "ReflectionPad2d", "Parameter",
    }
)
# Layers without parameters or buffers: registering them changes nothing.
PARAMETER_FREE_LAYERS = frozenset(
    {
        "ReLU", "ReLU6", "GELU", "SiLU", "Mish", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "LeakyReLU", "ELU",
        "SELU", "Softplus", "Hardswish", "Hardtanh", "Hardsigmoid", "Identity", "Flatten", "Unflatten", "MaxPool1d",
        "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "Upsample",
        "PixelShuffle", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ReflectionPad2d",
    }
)
NORM_LAYERS = frozenset(
    {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
     "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm"}
)
CONTAINER_LAYERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
# Layers with a ``bias=`` argument (True by default).
BIASED_LAYERS = frozenset(
    {"Linear", "LazyLinear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
     "ConvTranspose3d", "MultiheadAttention", "LSTM", "GRU", "RNN"}
)
# Functional normalizations (their weight, when given, is a norm weight).
FUNCTIONAL_NORMS = frozenset({"layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm"})
# ``nn.Parameter`` is a tensor, not a layer (``layer_name`` accepts it as one).
PARAMETER_CLASSES = frozenset({"torch.nn.Parameter", "torch.nn.parameter.Parameter"})
CONTAINERS = frozenset(f"torch.nn.{name}" for name in CONTAINER_LAYERS)
MODULE_BASES = frozenset({"torch.nn.Module", "torch.nn.modules.module.Module"})
# ``F.dropout(x, p, training=self.training)`` and friends inside a forward.
FUNCTIONAL_MODE_DEPENDENT = frozenset(
    {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm"}
)


def layer_name(qualname: str) -> str | None:
    """``Dropout`` for ``torch.nn.Dropout`` and ``torch.nn.modules.dropout.Dropout``."""
    if qualname.startswith("torch.nn.") and not qualname.startswith(("torch.nn.functional", "torch.nn.init", "torch.nn.utils")):
        last = qualname.rsplit(".", 1)[-1]
        return last if last[:1].isupper() else None
    return None


def is_scheduler(qualname: str) -> bool:
    return qualname.startswith(SCHEDULERS) and qualname.rsplit(".", 1)[-1][:1].isupper() and "LRScheduler" != qualname.rsplit(".", 1)[-1]


def is_optimizer(qualname: str) -> bool:
    if qualname in OPTIMIZERS:
        return True
    return (
        qualname.startswith("torch.optim.")
        and not qualname.startswith(SCHEDULERS)
        and qualname.rsplit(".", 1)[-1][:1].isupper()
        and qualname.rsplit(".", 1)[-1] != "Optimizer"
    )


def is_module_factory(qualname: str) -> bool:
    """``nn.Linear(...)``, ``torch.hub.load(...)``: builds an ``nn.Module``."""
    return layer_name(qualname) is not None or qualname.startswith(("torch.hub.load", "torch.distributed.fsdp."))
