"""TL201 (missing zero_grad), TL202 (zero_grad between backward and step), TL204 (clip after
step) and TL205 (loss accumulated as a tensor)."""

from __future__ import annotations

import pytest

from trainlint.testing import expected_lines, lint_files, lint_snippet

CODES = ("TL201", "TL202", "TL204", "TL205")


def _lines(found: list, code: str) -> list[int]:
    return sorted(d.line for d in found if d.code == code)


def _check(source: str) -> None:
    """Every loop rule flags exactly the lines marked for it (none when unmarked)."""
    found = lint_snippet(source, CODES)
    for code in CODES:
        assert _lines(found, code) == expected_lines(source, code), code


# -- TL201 -------------------------------------------------------------------------------


def test_never_cleared_in_mnist_style_function() -> None:
    _check(
        """
import torch
import torch.nn.functional as F

def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()  # expect: TL201
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(loss.item())
"""
    )


def test_cleared_once_before_loop_or_in_epoch_loop() -> None:
    _check(
        """
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizer.zero_grad()
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()  # expect: TL201
    optimizer.step()

for epoch in range(10):
    model.zero_grad()
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()  # expect: TL201
        optimizer.step()
"""
    )


def test_clear_on_one_branch_only_even_with_skipped_batches() -> None:
    _check(
        """
import torch

optimizer = torch.optim.Adam(model.parameters())
for i, batch in enumerate(loader):
    if batch is None:
        continue
    if i == 0:
        optimizer.zero_grad()
    loss = model(batch)
    loss.backward()  # expect: TL201
    optimizer.step()
"""
    )


def test_message_names_optimizer_and_accumulation() -> None:
    source = """
import torch
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x in loader:
    model(x).sum().backward()
    opt.step()
"""
    [finding] = [d for d in lint_snippet(source, ["TL201"]) if d.code == "TL201"]
    assert finding.line == 5
    assert "`opt`" in finding.message and "accumulate across iterations" in finding.message


def test_gan_generator_not_cleared() -> None:
    _check(
        """
import torch

optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4)
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4)
for real in dataloader:
    netD.zero_grad()
    errD_real = criterion(netD(real), ones)
    errD_real.backward()
    errD_fake = criterion(netD(netG(noise).detach()), zeros)
    errD_fake.backward()
    optimizerD.step()
    errG = criterion(netD(netG(noise)), ones)
    errG.backward()  # expect: TL201
    optimizerG.step()
"""
    )


def test_correct_clearing_idioms_stay_silent() -> None:
    _check(
        """
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizerD = torch.optim.Adam(netD.parameters())
optimizerG = torch.optim.Adam(netG.parameters())
lbfgs = torch.optim.LBFGS(model.parameters())

def reset(opt):
    opt.zero_grad(set_to_none=True)

for x, y in loader:
    reset(optimizer)
    criterion(model(x), y).backward()
    optimizer.step()

for x, y in loader:
    criterion(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()

for x, y in loader:
    for p in model.parameters():
        p.grad = None
    criterion(model(x), y).backward()
    optimizer.step()

for i, (x, y) in enumerate(loader):
    (criterion(model(x), y) / 4).backward()
    if (i + 1) % 4 == 0:
        optimizer.step()
        optimizer.zero_grad()

for i, (x, y) in enumerate(loader):
    if i % 4 == 0:
        optimizer.zero_grad()
    (criterion(model(x), y) / 4).backward()
    if (i + 1) % 4 == 0:
        optimizer.step()

for x, y in loader:
    def closure():
        lbfgs.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        return loss
    lbfgs.step(closure)

for real in dataloader:
    optimizerD.zero_grad()
    lossD = netD(real).mean()
    lossD.backward()
    optimizerD.step()
    optimizerG.zero_grad()
    lossG = netD(netG(z)).mean() + 0.1 * penalty(netG)
    lossG.backward()
    optimizerG.step()
"""
    )


def test_nanogpt_while_loop_with_micro_steps_is_silent() -> None:
    _check(
        """
import torch

scaler = torch.cuda.amp.GradScaler(enabled=True)
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
while True:
    for micro_step in range(gradient_accumulation_steps):
        with ctx:
            logits, loss = model(X, Y)
            loss = loss / gradient_accumulation_steps
        X, Y = get_batch("train")
        scaler.scale(loss).backward()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    iter_num += 1
    if iter_num > max_iters:
        break
"""
    )


def test_missing_clear_in_method_reported_through_helper_in_other_file() -> None:
    files = {
        "steps.py": """
def compute(model, batch):
    loss = model(batch).mean()
    loss.backward()
    return loss
""",
        "train.py": """
import torch
from steps import compute

class Trainer:
    def __init__(self, model):
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def fit(self, loader):
        for batch in loader:
            loss = compute(self.model, batch)  # expect: TL201
            self.optimizer.step()
""",
    }
    found = lint_files(files, ["TL201"], main="train.py")
    assert _lines(found, "TL201") == expected_lines(files["train.py"], "TL201")


# -- TL202 -------------------------------------------------------------------------------


def test_zero_grad_between_backward_and_step() -> None:
    _check(
        """
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.cuda.amp.GradScaler()
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.zero_grad()  # expect: TL202
    optimizer.step()

for x, y in loader:
    loss = criterion(model(x), y)
    scaler.scale(loss).backward()
    model.zero_grad()  # expect: TL202
    scaler.step(optimizer)
    scaler.update()

class Trainer:
    def training_step(self, batch):
        loss = self.model(batch)
        loss.backward()
        self.optimizer.zero_grad(set_to_none=True)  # expect: TL202
        self.optimizer.step()
        return loss.item()
"""
    )


def test_clear_before_backward_or_after_step_or_for_other_gan_model_is_silent() -> None:
    _check(
        """
import torch

optimizerD = torch.optim.Adam(netD.parameters())
optimizerG = torch.optim.Adam(netG.parameters())
for x, y in loader:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    if not torch.isfinite(loss):
        optimizer.zero_grad()
    optimizer.step()

for real in dataloader:
    netD.zero_grad()
    netD(real).mean().backward()
    optimizerD.step()
    netG.zero_grad()
    errG = netD(netG(z)).mean()
    errG.backward()
    netD.zero_grad()
    optimizerG.step()
    optimizerG.zero_grad()
"""
    )


def test_zero_grad_in_helper_reported_at_its_line() -> None:
    _check(
        """
import torch

def clear(optimizer):
    optimizer.zero_grad()

def step(model, optimizer, batch):
    model(batch).sum().backward()
    clear(optimizer)  # expect: TL202
    optimizer.step()
"""
    )


# -- TL204 -------------------------------------------------------------------------------


def test_clip_after_step() -> None:
    _check(
        """
import torch
from torch.nn.utils import clip_grad_value_

optimizer = torch.optim.SGD(model.parameters(), lr=20)
scaler = torch.cuda.amp.GradScaler()
for data, targets in batches:
    model.zero_grad()
    loss = criterion(model(data), targets)
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)  # expect: TL204

def train_step(batch):
    optimizer.zero_grad()
    scaler.scale(model(batch)).backward()
    scaler.step(optimizer)
    scaler.update()
    clip_grad_value_(model.parameters(), 1.0)  # expect: TL204
"""
    )


def test_clip_before_step_and_norm_logging_are_silent() -> None:
    _check(
        """
import math
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=20)
scaler = torch.cuda.amp.GradScaler()
for data, targets in batches:
    optimizer.zero_grad()
    loss = criterion(model(data), targets)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)

for i, (x, y) in enumerate(loader):
    optimizerD.zero_grad()
    netD(x).mean().backward()
    optimizerD.step()
    optimizerG.zero_grad()
    netD(netG(z)).mean().backward()
    torch.nn.utils.clip_grad_norm_(netG.parameters(), 5.0)
    optimizerG.step()
"""
    )


# -- TL205 -------------------------------------------------------------------------------


def test_loss_tensor_accumulated() -> None:
    _check(
        """
import torch
import torch.nn as nn

criterion = nn.CrossEntropyLoss()
for epoch in range(epochs):
    total_loss = 0.0
    for inputs, labels in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        total_loss += loss * inputs.size(0)  # expect: TL205

train_loss = 0
for batch_idx, (data, _) in enumerate(train_loader):
    optimizer.zero_grad()
    recon, mu, logvar = model(data)
    loss = loss_function(recon, data, mu, logvar)
    loss.backward()
    train_loss = train_loss + loss  # expect: TL205
    optimizer.step()

total = 0
for step, batch in enumerate(train_dataloader):
    outputs = model(**batch)
    total += outputs.loss  # expect: TL205
    accelerator.backward(outputs.loss)
    optimizer.step()
    optimizer.zero_grad()
"""
    )


def test_detached_totals_built_losses_and_eval_loops_are_silent() -> None:
    _check(
        """
import torch
import torch.nn.functional as F

total, seen, as_float, on_device = 0.0, 0, 0.0, 0.0
for x, y in loader:
    optimizer.zero_grad()
    logits, aux = model(x)
    loss = F.cross_entropy(logits, y)
    loss += 0.4 * F.cross_entropy(aux, y)
    loss.backward()
    optimizer.step()
    total += loss.item() * x.size(0)
    as_float += float(loss)
    on_device += loss.detach()
    seen += x.size(0)

for x, y in loader:
    optimizer.zero_grad()
    combined = 0
    for head, target in zip(model(x), y):
        combined += F.cross_entropy(head, target)
    combined.backward()
    optimizer.step()

@torch.no_grad()
def evaluate(model, loader):
    val = 0.0
    for x, y in loader:
        val += F.cross_entropy(model(x), y)
    return val

val_loss = 0.0
with torch.inference_mode():
    for x, y in val_loader:
        val_loss += F.cross_entropy(model(x), y)
"""
    )


@pytest.mark.parametrize("code", CODES)
def test_rules_are_registered_with_expected_severity(code: str) -> None:
    from trainlint.rule import rule_by_code

    rule = rule_by_code(code)
    assert rule is not None
    assert rule.severity.value == ("warning" if code == "TL205" else "error")
