"""TL403, TL404, TL801, TL802 on look-alikes beyond their catalogue pages."""

from __future__ import annotations

import pytest

from trainlint.testing import expected_lines, lint_files, lint_snippet


def _check(source: str, code: str) -> None:
    found = sorted(d.line for d in lint_snippet(source, select=[code]) if d.code == code)
    assert found == expected_lines(source, code)


ZERO_INIT = '''
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        for name, m in self.named_modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and m.weight is not None:
                nn.init.constant_(m.weight, 0.0)  # expect: TL403
            if isinstance(m, nn.Linear) and m.out_features == 10:
                nn.init.zeros_(m.weight)
            if "head" in name:
                nn.init.zeros_(m.weight)
            if isinstance(m, nn.LayerNorm):
                nn.init.zeros_(m.weight)
        for m in self.head.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.weight)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
                m.weight.data.normal_(0, 0.02)

class Linear(nn.Module):  # a LoRA-style user class that shadows the name
    pass

def init_lora(m):
    if isinstance(m, Linear):
        nn.init.zeros_(m.weight)

net = Net()
net.apply(init_lora)
for m in net.modules():
    if hasattr(m, "weight"):
        m.weight.detach().zero_()  # expect: TL403
'''


def test_zero_initialized_weights() -> None:
    _check(ZERO_INIT, "TL403")


DROPOUT = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def forward(self, x):
        x = F.alpha_dropout(x, 0.2)  # expect: TL404
        x = F.dropout(x, self.p, self.training)
        x = torch.dropout(x, 0.1, self.training)
        x = F.dropout(x, 0.3) if self.training else x
        return nn.functional.dropout(x, p=0.1, training=True)  # expect: TL404

class Plain:
    def run(self, x):
        return F.dropout(x, 0.5)
'''


def test_functional_dropout_always_on() -> None:
    _check(DROPOUT, "TL404")


LOAD = '''
import torch as th
from torch import load

a = th.load("a.pt", weights_only=False)  # expect: TL801
b = load("b.pt", weights_only=False)  # expect: TL801
c = th.load("c.pt", weights_only=args.unsafe)
flag = False
flag = True
d = th.load("d.pt", weights_only=flag)
e = th.load("e.pt")
f = other.load("f.pt", weights_only=False)
'''


def test_torch_load_weights_only_false() -> None:
    _check(LOAD, "TL801")


@pytest.mark.parametrize(
    ("snippet", "flagged"),
    [
        ("import torch.nn as nn\nlayer = nn.Linear(2, 2)\nlayer.forward(x)\n", True),
        ("import torchvision\nbackbone = torchvision.models.resnet18()\nbackbone.forward(x)\n", True),
        ("from transformers import AutoModel\nm = AutoModel.from_pretrained('bert')\nm.forward(**batch)\n", True),
        ("ddp_model.module.forward(x)\n", False),
        ("def run(student_net, x):\n    return student_net.forward(x)\n", True),
        ("def run(thing, x):\n    return thing.forward(x)\n", False),
        ("import torch\nclass F(torch.autograd.Function):\n    pass\nF.forward(ctx, x)\n", False),
        ("class Trainer:\n    def step(self, x):\n        return self.model.forward(x)\n", True),
    ],
)
def test_forward_called_directly(snippet: str, flagged: bool) -> None:
    assert bool(lint_snippet(snippet, select=["TL802"])) is flagged


def test_forward_called_directly_across_files() -> None:
    files = {
        "model.py": "import torch.nn as nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return x\n",
        "train.py": "from model import Net\nm = Net()\nout = m.forward(1)\n",
    }
    found = lint_files(files, select=["TL802"], main="train.py")
    assert [d.line for d in found] == [3]
