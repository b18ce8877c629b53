"""Generate one large training script, to check that lint time grows linearly with size.

The file repeats varied blocks of training code (a model class, a training function with
AMP, a scheduler and gradient clipping, an evaluation function, and module-level set-up
and training loops), each with its own names, so that every block is new code for the
analysis: nothing is memoized across blocks. Some blocks carry real bugs, so the rules
report findings and their positions are computed, as on real code.

    python bench/gen_large.py 1000 /tmp/large_1mb.py     # ~1 MB (size in KB)
    python bench/gen_large.py 5000 /tmp/large_5mb.py     # ~5 MB

Deterministic: the same size gives the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = '''\
"""Generated training script (bench/gen_large.py)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
'''

BLOCK = '''

class Net{i}(nn.Module):
    """Block {i}: a small classifier."""

    def __init__(self, width={width}, classes={classes}):
        super().__init__()
        self.fc1 = nn.Linear({width}, width)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(0.{drop})
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = F.relu(self.norm(self.fc1(x)))
        if self.training and h.shape[0] > {i}:
            h = self.drop(h)
        return {head}


def make_loader_{i}(n={n}, batch_size={batch}):
    data = TensorDataset(torch.randn(n, {width}), torch.randint(0, {classes}, (n,)))
    return DataLoader(data, batch_size=batch_size, shuffle={shuffle})


def train_{i}(model, loader, epochs={epochs}, lr={lr}):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    scaler = torch.cuda.amp.GradScaler()
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    history = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for step, (inputs, targets) in enumerate(loader):
            inputs, targets = inputs.to(device), targets.to(device)
            {zero_grad}
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                logits = model(inputs)
                loss = criterion(logits, targets)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += {total}
            if step % 100 == 0:
                print(f"block {i} epoch {{epoch}} step {{step}}: {{loss.item():.4f}}")
        history.append(total / max(len(loader), 1))
    return history


@torch.no_grad()
def evaluate_{i}(model, loader):
    model.eval()
    correct = seen = 0
    for inputs, targets in loader:
        predictions = model(inputs.to(device)).argmax(dim=-1)
        correct += (predictions == targets.to(device)).sum().item()
        seen += targets.numel()
    return correct / max(seen, 1)


model_{i} = Net{i}().to(device)
loader_{i} = make_loader_{i}()
optimizer_{i} = torch.optim.SGD(model_{i}.parameters(), lr={lr}, momentum=0.9)
warmup_{i} = torch.optim.lr_scheduler.LambdaLR(optimizer_{i}, lambda s: min(1.0, (s + 1) / {warm}))
for epoch in range({epochs}):
    for inputs, targets in loader_{i}:
        optimizer_{i}.zero_grad(set_to_none=True)
        loss_{i} = F.cross_entropy(model_{i}(inputs), targets)
        loss_{i}.backward()
        optimizer_{i}.step()
        warmup_{i}.step()
    accuracy_{i} = evaluate_{i}(model_{i}, loader_{i})
    print("block {i}", epoch, accuracy_{i}, math.exp(loss_{i}.item()))
history_{i} = train_{i}(model_{i}, loader_{i})
'''


def block(i: int) -> str:
    # Every fifth block has bugs: a softmax fed to CrossEntropyLoss, no zero_grad in the
    # loop, the loss summed as a tensor, an unshuffled training loader.
    buggy = i % 5 == 0
    return BLOCK.format(
        i=i,
        width=32 + i % 7 * 16,
        classes=2 + i % 11,
        drop=1 + i % 5,
        n=256 + i % 13 * 64,
        batch=16 << (i % 4),
        epochs=1 + i % 3,
        lr=f"{(1 + i % 9) * 1e-4:.4g}",
        warm=10 + i % 50,
        head="F.softmax(self.head(h), dim=-1)" if buggy else "self.head(h)",
        zero_grad="pass" if buggy else "optimizer.zero_grad(set_to_none=True)",
        total="loss" if buggy else "loss.item()",
        shuffle="False" if buggy else "True",
    )


def generate(kilobytes: int) -> str:
    parts, size, i = [HEADER], len(HEADER), 0
    while size < kilobytes * 1000:
        text = block(i)
        parts.append(text)
        size += len(text)
        i += 1
    return "".join(parts)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    Path(sys.argv[2]).write_text(generate(int(sys.argv[1])), encoding="utf-8")


if __name__ == "__main__":
    main()
