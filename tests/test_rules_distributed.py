"""TL701: a shuffling DistributedSampler whose epoch is never advanced; TL702: a per-rank sampler seed."""

from __future__ import annotations

from pathlib import Path

from trainlint.testing import expected_lines, lint_files, lint_snippet



def _lines(source: str) -> list[int]:
    return sorted(d.line for d in lint_snippet(source, ["TL701"]) if d.code == "TL701")


def _check(source: str) -> None:
    assert _lines(source) == expected_lines(source, "TL701")


LOOP = """
for epoch in range(epochs):
{set_epoch}    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
"""


def test_sampler_in_a_builder_function_without_set_epoch() -> None:
    _check(
        """
import torch
from torch.utils.data import DataLoader, DistributedSampler

class Data:
    def __init__(self, dataset):
        self.sampler = DistributedSampler(dataset)  # expect: TL701
        self.loader = DataLoader(dataset, 32, False, self.sampler)

data = Data(train_set)
loader = data.loader
"""
        + LOOP.format(set_epoch="")
    )


def test_set_epoch_on_the_sampler_or_the_loader_under_a_guard() -> None:
    prelude = """
import torch
from torch.utils.data import DataLoader, DistributedSampler

sampler = DistributedSampler(train_set) if distributed else None
loader = DataLoader(train_set, batch_size=32, sampler=sampler)
"""
    _check(prelude + LOOP.format(set_epoch="    if distributed:\n        sampler.set_epoch(epoch)\n"))
    _check(prelude + LOOP.format(set_epoch="    loader.sampler.set_epoch(epoch)\n"))


def test_set_epoch_in_a_helper_of_the_epoch_loop() -> None:
    _check(
        """
import torch
from torch.utils.data import DataLoader, DistributedSampler

def start_epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)

loader = DataLoader(train_set, batch_size=32, sampler=DistributedSampler(train_set))
"""
        + LOOP.format(set_epoch="    start_epoch(loader, epoch)\n")
    )


def test_unshuffled_held_out_and_single_epoch_samplers_are_silent() -> None:
    _check(
        """
import torch
from torch.utils.data import DataLoader, DistributedSampler

loader = DataLoader(train_set, batch_size=32, sampler=DistributedSampler(train_set, shuffle=False))
"""
        + LOOP.format(set_epoch="")
    )
    _check(
        """
import torch
from torch.utils.data import DataLoader, DistributedSampler

loader = DataLoader(train_set, batch_size=32, sampler=DistributedSampler(train_set))
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
"""
    )


def test_sampler_built_in_another_file_is_reported_at_the_epoch_loop() -> None:
    data = """
from torch.utils.data import DataLoader, DistributedSampler

def make_loader(dataset):
    return DataLoader(dataset, batch_size=32, sampler=DistributedSampler(dataset))
"""
    train = """
import torch
from data import make_loader

loader = make_loader(train_set)
for epoch in range(epochs):  # expect: TL701
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
"""
    found = lint_files({"data.py": data, "train.py": train}, ["TL701"])
    assert [(Path(d.path).name, d.line) for d in found] == [("train.py", line) for line in expected_lines(train, "TL701")]


def test_sampler_seed_differs_per_rank() -> None:
    source = """
import os
import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch.utils.data import DistributedSampler
from torchdata.stateful_dataloader import StatefulDistributedSampler

accelerator = Accelerator()

class Trainer:
    def __init__(self, args):
        self.args = args
        self.global_rank = dist.get_rank()

    def loader(self, dataset):
        return DistributedSampler(dataset, seed=self.args.seed + self.global_rank)  # expect: TL702

def make(dataset, rank, lora_rank):
    a = DistributedSampler(dataset, seed=1000 * rank)  # expect: TL702
    b = DistributedSampler(dataset, seed=lora_rank)
    c = StatefulDistributedSampler(dataset, seed=accelerator.process_index)  # expect: TL702
    d = DistributedSampler(dataset, seed=os.getpid())  # expect: TL702
    e = DistributedSampler(dataset, seed=int(os.environ.get("WORLD_SIZE", 1)))
    f = DistributedSampler(dataset, rank=rank, seed=torch.initial_seed() if rank < 0 else 0)
    return a, b, c, d, e, f
"""
    found = sorted(d.line for d in lint_snippet(source, select=["TL702"]))
    assert found == expected_lines(source, "TL702")
