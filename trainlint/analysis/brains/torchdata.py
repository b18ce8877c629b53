"""What trainlint knows about torchdata: its stateful loader and sampler behave like
torch's DataLoader and DistributedSampler."""

from __future__ import annotations

ROOTS = frozenset({"torchdata"})

DATA_LOADERS = frozenset({"torchdata.stateful_dataloader.StatefulDataLoader", "torchdata.stateful_dataloader.stateful_dataloader.StatefulDataLoader"})
DISTRIBUTED_SAMPLERS = frozenset(
    {"torchdata.stateful_dataloader.sampler.StatefulDistributedSampler", "torchdata.stateful_dataloader.StatefulDistributedSampler"}
)
