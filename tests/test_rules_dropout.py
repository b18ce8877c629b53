"""TL606 (dropout active in eval) beyond its page, and its fix."""

from __future__ import annotations

from pathlib import Path

from trainlint.config import Settings
from trainlint.fixing import FixSafety
from trainlint.linter import Linter
from trainlint.testing import expected_lines, lint_snippet


def _check(source: str, code: str = "TL606") -> None:
    found = sorted(d.line for d in lint_snippet(source, select=[code]) if d.code == code)
    assert found == expected_lines(source, code)


def test_attention_kernels_and_their_gates() -> None:
    _check(
        """
import torch.nn as nn
import torch.nn.functional as F
from flash_attn import flash_attn_func
from xformers import ops as xops

class Attention(nn.Module):
    def __init__(self, p, zero):
        super().__init__()
        self.p = p
        self.off = 0.0

    def forward(self, q, k, v, mask):
        a = flash_attn_func(q, k, v, self.p, causal=True)  # expect: TL606
        b = xops.memory_efficient_attention(q, k, v, attn_bias=mask, p=self.p)  # expect: TL606
        c = F.scaled_dot_product_attention(q, k, v, mask, self.off)
        d = F.scaled_dot_product_attention(q, k, v, mask)
        e = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p * self.training)
        if self.training:
            f = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p)
        p = self.p
        if not self.training:
            p = 0.0
        g = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        h = self.attend(q, k, v, self.p if self.training else 0.0)
        return F.multi_head_attention_forward(q, k, v, 8, 2, None, None, None, None, False, self.p, None, None, self.training)

    def attend(self, q, k, v, dropout_p):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)

    def attend_raw(self, q, k, v, rate):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=rate)  # expect: TL606

    def use_raw(self, q, k, v):
        return self.attend_raw(q, k, v, self.p)

def attention(q, k, v, p):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
""",
    )


def test_hand_written_dropout_modules() -> None:
    _check(
        """
import torch
import torch.nn as nn

class WordDropout(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        mask = torch.rand(x.shape[:2], device=x.device) > self.p  # expect: TL606
        return x * mask.unsqueeze(-1)

class LockedDropout(nn.Module):
    def forward(self, x, p=0.5):
        if not self.training or not p:
            return x
        mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p)
        return mask * x / (1 - p)

class StochasticDepth(nn.Module):
    def forward(self, x):
        return drop_path(x, self.p, self.training)

class TokenDrop:  # a data transform, not a module
    def __call__(self, x):
        return x * (torch.rand_like(x) > 0.1)

class Augment(nn.Module):  # not named as a dropout
    def forward(self, x):
        return x * torch.rand_like(x)
""",
    )


def test_fix_gates_the_rate_on_training(tmp_path: Path) -> None:
    source = """\
import torch.nn as nn
import torch.nn.functional as F

class Attention(nn.Module):
    def forward(this, q, k, v):
        a = F.scaled_dot_product_attention(q, k, v, None, this.p)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=this.p if this.big else this.small)
"""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    path = tmp_path / "attention.py"
    path.write_text(source)
    result = Linter(Settings(root=tmp_path, select=("TL606",)), frozenset({FixSafety.SAFE})).lint_file(path)
    assert result.fixed[0].fixed == source.replace(
        "None, this.p)", "None, this.p if this.training else 0.0)"
    ).replace("dropout_p=this.p if this.big else this.small", "dropout_p=(this.p if this.big else this.small) if this.training else 0.0")
    assert not result.diagnostics


def test_fix_of_a_computed_rate_is_unsafe(tmp_path: Path) -> None:
    # Gated, ``this.rate()`` no longer runs in eval mode.
    source = """\
import torch.nn as nn
import torch.nn.functional as F

class Attention(nn.Module):
    def forward(this, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=this.rate())
"""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    path = tmp_path / "attention.py"
    path.write_text(source)
    result = Linter(Settings(root=tmp_path, select=("TL606",)), frozenset({FixSafety.SAFE})).lint_file(path)
    assert not result.fixed and [d.fix for d in result.diagnostics] == [FixSafety.UNSAFE]
