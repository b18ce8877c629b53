"""TL209 (loss term detached) beyond its page."""

from __future__ import annotations

from trainlint.testing import expected_lines, lint_files, lint_snippet


def _check(source: str, code: str = "TL209") -> None:
    found = sorted(d.line for d in lint_snippet(source, select=[code]) if d.code == code)
    assert found == expected_lines(source, code)


def test_cut_terms_and_live_look_alikes() -> None:
    _check(
        """
import torch
import torch.nn.functional as F
from accelerate import Accelerator

accelerator = Accelerator()
for x, y in loader:
    out = model(x)
    ce = F.cross_entropy(out, y)
    kl = float(F.kl_div(out.log_softmax(1), prior))
    loss = ce - 0.1 * kl  # expect: TL209
    accelerator.backward(loss)

for x, y in loader:
    penalty = torch.tensor(grad_norms).mean()
    accelerator.backward(criterion(model(x), y) + penalty)  # expect: TL209

for x, y in loader:
    per_head = [criterion(h(x), y) for h in heads]
    loss = torch.tensor(per_head).sum()
    (loss / accumulation).backward()  # expect: TL209

for x, y in loader:
    reg = torch.tensor(0.0, device=x.device)
    for p in model.parameters():
        reg += p.pow(2).sum()
    acc = torch.zeros(1)
    acc.add_(model(x).sum())
    logits = model(x)
    soft = logits - logits.detach() + hard.detach()
    loss = criterion(logits, y) + reg + 1.0 * acc + (q - q.detach()) + float(args.margin)
    loss.backward()
    total = loss.item() + reg.item()

for real, _ in loader:
    fake = G(noise)
    d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
    d_loss.backward()
""",
    )


def test_lightning_training_step_returns() -> None:
    _check(
        """
import lightning as L

class Model(L.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self(x), y)
        aux = self.aux_loss(x).detach()
        return {"loss": loss + aux, "log": loss.item()}  # expect: TL209

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return {"loss": self.criterion(self(x), y).item()}
""",
    )


def test_terms_of_a_helper_loss_backpropagated_by_its_caller() -> None:
    loss = """
import torch

def compute_loss(outputs, targets):
    lcls, lobj = torch.zeros(1), torch.zeros(1)
    for out, t in zip(outputs, targets):
        lcls += bce(out[..., 5:], t)
        lobj += bce(out[..., 4], t).item()  # expect: TL209
    lobj *= 0.5
    loss = lcls + lobj
    return loss, torch.cat((lcls, lobj)).detach()

def metrics(outputs, targets):
    return bce(outputs, targets).item()
"""
    train = """
from loss import compute_loss, metrics

for x, y in loader:
    loss, parts = compute_loss(model(x), y)
    loss.backward()
    logged = metrics(model(x), y)
"""
    found = lint_files({"loss.py": loss, "train.py": train}, select=["TL209"], main="loss.py")
    assert [d.line for d in found] == expected_lines(loss, "TL209")
    assert "the caller `compute_loss(model(x), y)` at train.py:5" in found[0].message
