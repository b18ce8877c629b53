"""TL102-TL104: sigmoid/softmax outputs reaching losses that expect something else,
across statements, methods and files."""

from __future__ import annotations

from trainlint.testing import expected_lines, lint_files, lint_snippet


def _lines(found: list, code: str) -> list[int]:
    return sorted(d.line for d in found if d.code == code)


def _check(source: str, code: str) -> None:
    assert _lines(lint_snippet(source, [code]), code) == expected_lines(source, code)


SIGMOID_MODEL = """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 1)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x))
"""

SOFTMAX_MODEL = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(16, 10), nn.Softmax(dim=1))

    def forward(self, x):
        return self.layers(x)
"""


def test_tl102_model_forward_in_other_file_via_trainer_attributes() -> None:
    train = """
import torch.nn as nn
from model import Net

class Trainer:
    def __init__(self, model):
        self.model = model
        self.criterion = nn.BCEWithLogitsLoss()

    def step(self, x, y):
        out = self.model(x)
        return self.criterion(out, y)

trainer = Trainer(Net())
"""
    found = lint_files({"model.py": SIGMOID_MODEL, "train.py": train}, select=["TL102"], main="train.py")
    assert _lines(found, "TL102") == [12]
    assert "model.py:12" in found[0].message


def test_tl102_package_relative_import_and_train_function_parameters() -> None:
    train = """
import torch
import torch.nn as nn
from .model import Net

def train(model, loader, criterion, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()

net = Net()
train(net, loader, nn.BCEWithLogitsLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
"""
    files = {"pkg/__init__.py": "", "pkg/model.py": SIGMOID_MODEL, "pkg/train.py": train}
    assert _lines(lint_files(files, select=["TL102"], main="pkg/train.py"), "TL102") == [9]


def test_tl102_functional_and_silent_look_alikes() -> None:
    _check(
        """
import torch
import torch.nn as nn
import torch.nn.functional as F

probs = torch.sigmoid(logits)
loss = F.binary_cross_entropy_with_logits(probs, y)  # expect: TL102
ok_bce = nn.BCELoss()(probs, y)
ok_target = F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher))

def focal_loss(logits, targets, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return (ce * (1 - p_t) ** gamma).mean()
""",
        "TL102",
    )


def test_tl102_eval_only_sigmoid_is_silent() -> None:
    _check(
        """
import torch
import torch.nn as nn

class Net(nn.Module):
    def forward(self, x):
        logits = self.fc(x)
        if self.training:
            return logits
        return torch.sigmoid(logits)

net = Net()
loss = nn.BCEWithLogitsLoss()(net(x), y)
""",
        "TL102",
    )


def test_tl103_sequential_softmax_model_across_files() -> None:
    train = """
import torch.nn as nn
from model import Net

model = Net()
criterion = nn.NLLLoss()
for x, y in loader:
    loss = criterion(model(x), y)
"""
    found = lint_files({"model.py": SOFTMAX_MODEL, "train.py": train}, select=["TL103"], main="train.py")
    assert _lines(found, "TL103") == [8]


def test_tl103_softmax_attribute_and_log_softmax_look_alike() -> None:
    _check(
        """
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.fc(x))

net = Net()
loss = F.nll_loss(net(x), y)  # expect: TL103
good = F.nll_loss(F.log_softmax(logits, dim=1), y)
accuracy = (F.softmax(logits, dim=1).argmax(1) == y).float().mean()
""",
        "TL103",
    )


def test_tl104_log_of_softmax_shapes() -> None:
    _check(
        """
import torch
import torch.nn.functional as F

probs = F.softmax(logits, dim=-1)
nll = -torch.log(probs[range(len(y)), y]).mean()  # expect: TL104
log_p = torch.log(F.softmax(x, dim=1))  # expect: TL104
log_q = probs.log()  # expect: TL104
fine = F.log_softmax(logits, dim=-1)
log_sig = torch.log(torch.sigmoid(z))
plain = torch.log(x)
""",
        "TL104",
    )


def test_tl104_log_of_model_output_in_other_file() -> None:
    train = """
import torch
import torch.nn.functional as F
from model import Net

net = Net()
out = net(x)
loss = F.nll_loss(torch.log(out), y)
"""
    files = {"model.py": SOFTMAX_MODEL, "train.py": train}
    assert _lines(lint_files(files, select=["TL104"], main="train.py"), "TL104") == [8]
    # The log turns probabilities into log-probabilities: nll_loss itself is fine.
    assert _lines(lint_files(files, select=["TL103"], main="train.py"), "TL103") == []
