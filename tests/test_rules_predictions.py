"""TL105 (argmax without dim) and TL106 (softmax over the batch dimension) beyond their pages."""

from __future__ import annotations

from pathlib import Path

from trainlint.config import Settings
from trainlint.fixing import FixSafety
from trainlint.linter import Linter
from trainlint.testing import expected_lines, lint_files, lint_snippet


def _check(source: str, code: str) -> None:
    found = sorted(d.line for d in lint_snippet(source, select=[code]) if d.code == code)
    assert found == expected_lines(source, code)


def test_argmax_batches_and_samples() -> None:
    _check(
        """
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

train_loader = DataLoader(train_set, batch_size=128, shuffle=True)
default_loader = DataLoader(test_set)
unbatched = DataLoader(test_set, batch_size=None)

for step, (x, y) in enumerate(train_loader):
    out = model(x.cuda(non_blocking=True))
    loss = F.cross_entropy(out, y)
    flat = out.detach().argmax()  # expect: TL105
    explicit = out.argmax(dim=-1)
    first = model(x)[0].argmax()
    probs = F.softmax(out, dim=1)
    top = torch.argmax(probs)  # expect: TL105
    likely = torch.exp(F.log_softmax(out, dim=1)).argmax()  # expect: TL105
    picked = out.exp().argmax(1)

for x, y in default_loader:
    out = model(x)
    loss = F.cross_entropy(out, y)
    single = out.argmax()

images, labels = next(iter(train_loader))  # one batch, as notebooks draw it
ps = torch.exp(model(images))
top_class = ps.argmax()  # expect: TL105
equals = top_class == labels.view(*top_class.shape)
it = iter(default_loader)
image, label = next(it)
guess = torch.exp(model(image)).argmax()
same = guess == label

for x, y in unbatched:
    out = model(x)
    loss = F.cross_entropy(out, y)
    sample = out.argmax()

for x, y in train_loader:
    scores = ranker(x)
    best = scores.argmax()  # nothing says where classes are: may be 1-D

env_state = env.reset()
action = policy_net(env_state).argmax().item()
""",
        "TL105",
    )


def test_argmax_in_library_hooks_and_dict_batches() -> None:
    _check(
        """
import torch
import lightning as L

class Classifier(L.LightningModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        acc = (logits.argmax() == y).float().mean()  # expect: TL105
        return acc

    def test_step(self, batch, batch_idx):
        logits = self.net(batch["image"])
        preds = torch.argmax(logits)  # expect: TL105
        return preds.eq(batch["label"]).sum()

def evaluate(model, eval_dataloader):
    for batch in eval_dataloader:
        batch = {k: v.to("cuda") for k, v in batch.items()}
        outputs = model(**batch)
        predictions = outputs.logits.argmax()  # expect: TL105
        metric.add_batch(predictions=predictions, references=batch["labels"])
        loss = torch.nn.functional.cross_entropy(outputs.logits, batch["labels"])
""",
        "TL105",
    )


def test_softmax_over_batch() -> None:
    _check(
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

loader = DataLoader(train_set, batch_size=64)
softmax = nn.Softmax(dim=0)
for images, labels in loader:
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    p = logits.softmax(0)  # expect: TL106
    q = softmax(logits)  # expect: TL106
    r = torch.softmax(logits, dim=1)
    s = torch.softmax(logits.T, dim=0)
    weights = F.softmax(critic(images), dim=0)  # a weighting over the batch: no class evidence

for x, y in DataLoader(val_set, batch_size=1):
    logp = F.log_softmax(model(x), dim=0)
    loss = F.nll_loss(logp, y)
""",
        "TL106",
    )


def _fixed(tmp_path: Path, source: str, code: str) -> str:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    path = tmp_path / "train.py"
    path.write_text(source)
    result = Linter(Settings(root=tmp_path, select=(code,)), frozenset(FixSafety)).lint_file(path)
    return result.fixed[0].fixed if result.fixed else source


def test_fixes_use_the_stated_class_axis(tmp_path: Path) -> None:
    source = """\
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

for x, y in DataLoader(data, batch_size=8):
    out = model(x)
    loss = F.nll_loss(F.log_softmax(out, 0), y)
    pred = out.argmax(keepdim=True)
    top = torch.argmax(out)
    used = out.argmax()
    correct = used.item()
"""
    assert _fixed(tmp_path, source, "TL106") == source.replace("log_softmax(out, 0)", "log_softmax(out, 1)")
    assert _fixed(tmp_path, source, "TL105") == source.replace("argmax(keepdim=True)", "argmax(dim=1, keepdim=True)").replace(
        "torch.argmax(out)", "torch.argmax(out, dim=1)"
    )


MODEL = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 26 * 26, 10)
        self.rnn = nn.GRU(10, 10)

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = torch.flatten(x, 1)
        return F.softmax(self.fc(x), dim=0)

class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(10, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return F.log_softmax(out, dim=0)
"""

TRAIN = """\
import torch.nn.functional as F
from torch.utils.data import DataLoader
from model import Net, Tagger

net, tagger = Net(), Tagger()
for x, y in DataLoader(data, batch_size=16):
    loss = F.cross_entropy(net(x), y) + F.nll_loss(tagger(x), y)
"""


def test_softmax_returned_by_forward_across_files() -> None:
    found = lint_files({"model.py": MODEL, "train.py": TRAIN}, select=["TL106"], main="model.py")
    assert [(d.line, "`net(x)` at train.py:7" in d.message) for d in found] == [(15, True)]
