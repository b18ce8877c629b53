"""The shared program model, exercised through TL101 (the simplest data-flow rule)."""

from __future__ import annotations

from trainlint.testing import lint_files, lint_snippet

SOFTMAX_MODEL = """\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 4), nn.Softmax(dim=1))

    def forward(self, x):
        return self.body(x)
"""

LOGITS_MODEL = SOFTMAX_MODEL.replace(", nn.Softmax(dim=1)", "")

TRAIN = """\
import torch.nn as nn
from model import Net

def train_one_epoch(model, loader, criterion):
    for x, y in loader:
        loss = criterion(model(x), y)

train_one_epoch(Net(), loader, nn.CrossEntropyLoss())
"""


def lines(diagnostics: list, code: str = "TL101") -> list[tuple[str, int]]:
    return sorted((d.path.rsplit("/", 1)[-1], d.line) for d in diagnostics if d.code == code)


def test_parameters_follow_call_sites_and_local_imports() -> None:
    found = lint_files({"model.py": SOFTMAX_MODEL, "train.py": TRAIN}, select=["TL101"])
    assert lines(found) == [("train.py", 6)]


def test_same_named_functions_in_other_scripts_do_not_leak_arguments() -> None:
    # Two independent scripts with the same helper name: only the buggy one is flagged.
    files = {
        "buggy/model.py": SOFTMAX_MODEL,
        "buggy/train.py": TRAIN,
        "healthy/model.py": LOGITS_MODEL,
        "healthy/train.py": TRAIN,
    }
    found = lint_files(files, select=["TL101"])
    assert [d.path.split("/")[-2] for d in found if d.code == "TL101"] == ["buggy"]


def test_reassignment_after_the_loss_does_not_reach_it() -> None:
    source = """\
import torch.nn.functional as F

for x, y in loader:
    out = net(x)
    loss = F.cross_entropy(out, y)
    out = F.softmax(out, dim=1)
    acc = (out.argmax(1) == y).float().mean()
"""
    assert lint_snippet(source, ["TL101"]) == []


def test_branch_assignments_both_reach_the_use() -> None:
    source = """\
import torch.nn.functional as F

for x, y in loader:
    if use_probs:
        out = F.softmax(net(x), dim=1)
    else:
        out = net(x)
    loss = F.cross_entropy(out, y)
"""
    assert [d.line for d in lint_snippet(source, ["TL101"])] == [8]


def test_tuple_returns_are_unpacked_by_position() -> None:
    source = """\
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def forward(self, x):
        logits = self.fc(x)
        return logits, F.softmax(logits, dim=-1)

net = Net()
logits, probs = net(x)
loss_ok = F.cross_entropy(logits, y)
loss_bad = F.cross_entropy(probs, y)
"""
    assert [d.line for d in lint_snippet(source, ["TL101"])] == [12]


def test_attribute_set_in_one_method_used_in_another_and_wrappers() -> None:
    source = """\
import torch
import torch.nn as nn

class Trainer:
    def __init__(self, model):
        self.model = torch.compile(nn.DataParallel(model))
        self.criterion = nn.CrossEntropyLoss()

    def step(self, x, y):
        return self.criterion(self.model(x), y)

Trainer(nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=-1)))
"""
    assert [d.line for d in lint_snippet(source, ["TL101"])] == [10]
