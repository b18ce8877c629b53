"""TL601-TL604: train/eval mode, no_grad during evaluation, shuffling of the training data.

Every case is a small realistic script whose flagged lines carry ``# expect: TLxxx``;
a case without markers must stay silent for its rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlint.testing import expected_lines, lint_files, lint_snippet

MODE_CODES = ("TL601", "TL602", "TL603", "TL604")

MODEL = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.drop(self.bn(self.conv(x)).mean((2, 3))))
'''

TRAIN = '''
def train(model, loader, optimizer):
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
'''

TL601_CASES = {
    "evaluate_without_eval_after_train": MODEL + TRAIN + '''
def test(model, loader):
    with torch.no_grad():
        for x, y in loader:
            out = model(x)  # expect: TL601

def main():
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(3):
        train(model, train_loader, opt)
        test(model, test_loader)
''',
    "script_over_test_loader": MODEL + '''
model = Net()
model.load_state_dict(torch.load("net.pt"))
correct = 0
for images, labels in test_loader:
    correct += (model(images).argmax(1) == labels).sum()  # expect: TL601
''',
    "epoch_loop_forgets_eval_before_eval_loop": MODEL + '''
model = Net()
for epoch in range(10):
    model.train()
    for batch in train_dataloader:
        loss = F.cross_entropy(model(batch[0]), batch[1])
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    for batch in eval_dataloader:
        with torch.no_grad():
            outputs = model(batch[0])  # expect: TL601
''',
    "library_helper_whose_callers_are_outside_the_project": '''
import torch

def build_classifier(model, tokenizer, classnames):
    with torch.no_grad():
        weights = []
        for name in classnames:
            weights.append(model(text=tokenizer([name])).mean(dim=0))
        return torch.stack(weights, dim=1)
''',
    "caller_sets_eval": MODEL + TRAIN + '''
@torch.no_grad()
def evaluate(model, loader):
    return [model(x) for x, _ in loader] if False else [model(x) for x in loader.dataset]

def score(model, loader):
    total = 0
    with torch.no_grad():
        for x, y in loader:
            total += (model(x).argmax(1) == y).sum()
    return total

def main():
    model = Net()
    for epoch in range(3):
        train(model, train_loader, opt)
        model.eval()
        score(model, val_loader)
''',
    "nested_validate_like_imagenet": MODEL + '''
def validate(val_loader, model, criterion):
    def run_validate(loader):
        with torch.no_grad():
            for images, target in loader:
                loss = criterion(model(images), target)

    model.eval()
    run_validate(val_loader)
''',
    "estimate_loss_like_nanogpt": MODEL + '''
model = Net()

@torch.no_grad()
def estimate_loss():
    model.eval()
    for k in range(eval_iters):
        X, Y = get_batch("val")
        loss = F.cross_entropy(model(X), Y)
    model.train()
''',
    "monte_carlo_dropout_on_purpose": MODEL + '''
model = Net()
model.train()  # keep dropout active: Monte-Carlo dropout
with torch.no_grad():
    for x, _ in test_loader:
        samples = torch.stack([model(x) for _ in range(20)])
''',
    "recomputing_batch_norm_statistics_on_purpose": MODEL + '''
@torch.no_grad()
def update_bn(loader, model):
    momenta = {m: m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    model.train()
    for module in momenta:
        module.momentum = None
    for x, _ in loader:
        model(x)
''',
    "helper_trains_between_train_switch_and_evaluation": MODEL + '''
def train_epoch(model, loader, opt):
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

def fit(model, opt):
    for epoch in range(10):
        model.train()
        train_epoch(model, train_loader, opt)
        with torch.no_grad():
            for x, y in val_loader:
                predictions = model(x).argmax(1)  # expect: TL601
''',
    "model_without_dropout_or_batch_norm": '''
import torch
import torch.nn as nn

class Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.norm(x))

probe = Probe()
with torch.no_grad():
    for x, y in val_loader:
        pred = probe(x).argmax(1)
''',
    "generation_inside_the_model": '''
import torch
import torch.nn as nn

class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.1)

    @torch.no_grad()
    def generate(self, idx, steps):
        for _ in range(steps):
            idx = torch.cat([idx, self(idx)], 1)
        return idx
''',
}

TL602_CASES = {
    "validate_without_no_grad": MODEL + '''
def validate(model, val_loader):
    model.eval()
    losses = []
    for x, y in val_loader:
        losses.append(F.cross_entropy(model(x), y).item())  # expect: TL602
    return losses
''',
    "eval_via_train_false_in_script": MODEL + '''
model = Net()
model.train(False)
for x, y in test_loader:
    acc = (model(x).argmax(1) == y).float().mean()  # expect: TL602
''',
    "no_grad_in_caller": MODEL + '''
def evaluate(model, loader):
    model.eval()
    for x, y in loader:
        out = model(x)

def main(model):
    with torch.no_grad():
        evaluate(model, val_loader)
''',
    "set_grad_enabled_false": MODEL + '''
def evaluate(model, loader):
    model.eval()
    torch.set_grad_enabled(False)
    for x, y in loader:
        out = model(x)
''',
    "adversarial_evaluation_needs_gradients": MODEL + '''
def fgsm_accuracy(model, loader, eps):
    model.eval()
    for x, y in loader:
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        x_adv = x + eps * x.grad.sign()
''',
    "inference_mode_inside_loop": MODEL + '''
def evaluate(model, loader):
    model.eval()
    for x, y in loader:
        with torch.inference_mode():
            out = model(x)
''',
}

TL603_CASES = {
    "evaluate_switches_and_train_never_restores": MODEL + '''
def train_epoch(model, loader, opt):
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        return [model(x) for x, _ in loader]

def main(model, opt):
    for epoch in range(10):
        train_epoch(model, train_loader, opt)
        evaluate(model, val_loader)  # expect: TL603
''',
    "estimate_loss_without_restore": MODEL + '''
model = Net()

@torch.no_grad()
def estimate_loss():
    model.eval()
    for k in range(eval_iters):
        loss = F.cross_entropy(*model(get_batch("val")))

while True:
    if it % eval_interval == 0:
        estimate_loss()  # expect: TL603
    loss = F.cross_entropy(model(X), Y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
''',
    "estimate_loss_restores": MODEL + '''
model = Net()

@torch.no_grad()
def estimate_loss():
    model.eval()
    for k in range(eval_iters):
        loss = F.cross_entropy(*model(get_batch("val")))
    model.train()

while True:
    if it % eval_interval == 0:
        estimate_loss()
    loss = F.cross_entropy(model(X), Y)
    loss.backward()
    optimizer.step()
''',
    "train_function_switches_back": MODEL + TRAIN + '''
def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        return [model(x) for x, _ in loader]

def main(model, opt):
    for epoch in range(10):
        train(model, train_loader, opt)
        evaluate(model, val_loader)
''',
    "frozen_teacher_in_distillation": MODEL + '''
teacher, student = Net(), Net()
for epoch in range(10):
    teacher.eval()
    for x, y in train_loader:
        with torch.no_grad():
            soft = teacher(x)
        loss = F.kl_div(student(x).log_softmax(1), soft.softmax(1))
        loss.backward()
        optimizer.step()
''',
}

TL604_CASES = {
    "no_shuffle": '''
from torch.utils.data import DataLoader

loader = DataLoader(train_set, batch_size=32)  # expect: TL604
for epoch in range(5):
    for x, y in loader:
        loss = model(x).sum()
        loss.backward()
        optimizer.step()
''',
    "shuffle_variable_false": '''
import torch

shuffle = False
train_loader = torch.utils.data.DataLoader(dataset, 64, shuffle)  # expect: TL604

def train(model, train_loader, optimizer):
    for x, y in train_loader:
        optimizer.zero_grad()
        model(x).mean().backward()
        optimizer.step()

train(model, train_loader, optimizer)
''',
    "shuffled_sampled_or_unknown": '''
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

class Stream(IterableDataset):
    def __iter__(self):
        yield from range(10)

loaders = [
    DataLoader(train_set, batch_size=32, shuffle=True),
    DataLoader(train_set, batch_size=32, sampler=DistributedSampler(train_set)),
    DataLoader(train_set, batch_size=32, shuffle=args.shuffle),
    DataLoader(Stream(), batch_size=32),
    DataLoader(train_set, **loader_kwargs),
    build_loader(cfg),
]

def fit(loader):
    for x, y in loader:
        model(x).sum().backward()
        optimizer.step()

for loader in loaders:
    fit(loader)
''',
    "validation_loader_in_shared_epoch_function": '''
from torch.utils.data import DataLoader

train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
val_loader = DataLoader(val_set, batch_size=32)

def run_epoch(loader, training):
    for x, y in loader:
        loss = model(x).sum()
        if training:
            loss.backward()
            optimizer.step()

run_epoch(train_loader, True)
run_epoch(val_loader, False)
''',
}

CASES = [
    (code, name, source)
    for code, cases in (("TL601", TL601_CASES), ("TL602", TL602_CASES), ("TL603", TL603_CASES), ("TL604", TL604_CASES))
    for name, source in cases.items()
]


@pytest.mark.parametrize(("code", "name", "source"), CASES, ids=[f"{c}-{n}" for c, n, _ in CASES])
def test_flags_exactly_the_marked_lines(code: str, name: str, source: str) -> None:
    found = sorted(d.line for d in lint_snippet(source, select=[code]) if d.code == code)
    assert found == expected_lines(source, code), name


def test_model_eval_in_another_file_counts() -> None:
    evaluation = '''
import torch

@torch.no_grad()
def evaluate(model, loader):
    for x, y in loader:
        out = model(x)
'''
    train = MODEL + '''
from evaluation import evaluate

model = Net()
model.eval()
evaluate(model, val_loader)
'''
    files = {"evaluation.py": evaluation, "train.py": train}
    assert lint_files(files, select=["TL601"], main="evaluation.py") == []


def test_unrestored_mode_is_reported_once_in_the_tightest_loop() -> None:
    source = TL603_CASES["evaluate_switches_and_train_never_restores"] + '''
for seed in range(3):
    main(model, opt)
'''
    found = [d.line for d in lint_snippet(source, select=["TL603"])]
    assert found == expected_lines(source, "TL603")


def test_pretrained_models_start_in_eval_mode() -> None:
    source = """\
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained("gpt2")
with torch.no_grad():
    for batch in loader:
        outputs = model(**batch)
"""
    assert lint_snippet(source, select=["TL601"]) == []


def test_callers_in_other_folders_set_eval_mode() -> None:
    evaluation = '''
import torch

@torch.no_grad()
def evaluate(model, loader):
    for x, y in loader:
        out = model(x)
'''
    train = MODEL + '''
from mylib.evaluation import evaluate

model = Net()
model.eval()
evaluate(model, val_loader)
'''
    files = {"mylib/__init__.py": "", "mylib/evaluation.py": evaluation, "tools/train.py": train}
    assert [d for d in lint_files(files, select=["TL601"], main="mylib/evaluation.py")] == []
    # Without the caller's model.eval(), the same helper is reported.
    files["tools/train.py"] = train.replace("model.eval()\n", "")
    assert [d.line for d in lint_files(files, select=["TL601"], main="mylib/evaluation.py")] == [7]
