"""TL209 (loss term detached) beyond its page."""

from __future__ import annotations

from trainlint.testing import expected_lines, lint_snippet


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
