"""TL405 (freeze has no effect) and TL406 (submodules in plain lists) beyond their pages."""

from __future__ import annotations

from trainlint.testing import expected_lines, lint_snippet


def _check(source: str, code: str) -> None:
    found = sorted(d.line for d in lint_snippet(source, select=[code]) if d.code == code)
    assert found == expected_lines(source, code)


def test_flags_set_on_modules_and_misspelt() -> None:
    _check(
        """
import torch
import torch.nn as nn

class Encoder(nn.Module):
    def __init__(self, frozen):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.pos = nn.Parameter(torch.zeros(1, 8))
        self.embed.requires_grad = False  # expect: TL405
        self.pos.requires_grad = False
        self.cls_token.requires_grad = False
        if frozen:
            self.requires_grad = False  # expect: TL405

class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.requires_grad = True

    def forward(self, x):
        return x if self.requires_grad else x.detach()

net = Encoder(True)
for m in net.modules():
    if isinstance(m, nn.BatchNorm2d):
        m.requires_grad = False  # expect: TL405
for name, p in net.named_parameters():
    p.requires_grads = False  # expect: TL405
    p.requires_grad = False
net.embed.weight.requires_grad = False
settings.require_grad = True
print(settings.require_grad)
""",
        "TL405",
    )


def test_undone_freezes() -> None:
    _check(
        """
import torch

def main():
    model = build()
    for name, p in model.named_parameters():
        if "backbone" in name:
            p.requires_grad = False
    model.requires_grad_()  # expect: TL405
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

def deliberate(epochs):
    model = build()
    model.backbone.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for epoch in range(epochs):
        if epoch == 5:
            for p in model.parameters():
                p.requires_grad = True
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

def whole_then_all():
    model = build()
    model.requires_grad_(False)
    for p in model.parameters():
        p.requires_grad = True
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

def used_while_frozen():
    model = build()
    model.encoder.requires_grad_(False)
    stats = model(calibration_batch)
    model.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

def after_the_optimizer():
    model = build()
    model.encoder.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.requires_grad_(True)

if __name__ == "__main__":
    net = build()
    for p in net.features.parameters():
        p.requires_grad = False
    for p in net.parameters():  # expect: TL405
        p.requires_grad = True
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
""",
        "TL405",
    )


def test_submodules_in_plain_containers() -> None:
    _check(
        """
import copy
import torch
import torch.nn as nn
from transformers import AutoModel

class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

def make_block(width):
    return Block(width)

class Net(nn.Module):
    def __init__(self, depth, encoders):
        super().__init__()
        layers = []
        for i in range(depth):
            layer = make_block(i)
            layers.append(layer)
        self.layers = layers  # expect: TL406
        self.towers = (Block(4), Block(8))  # expect: TL406
        self.experts = {name: Block(4) for name in ("a", "b")}  # expect: TL406
        self.encoders = [e for e in encoders]
        self.ema = [copy.deepcopy(self.layers)]
        self.tokens = [nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(4))]
        self.pretrained = [AutoModel.from_pretrained("a"), AutoModel.from_pretrained("b")]  # expect: TL406
        self.stages = [Block(2), Block(2)]
        self.stages = nn.ModuleList(self.stages)
        self.convs = [nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)]
        self.body = build_sequential(self.convs)

class Registered(nn.Module):
    def __init__(self):
        super().__init__()
        self.parts = [nn.Linear(2, 2), nn.Linear(2, 2)]
        for i, part in enumerate(self.parts):
            self.add_module(f"part{i}", part)
""",
        "TL406",
    )
