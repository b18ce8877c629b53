"""TL501-TL506: mixed-precision training (GradScaler use, autocast dtype, torch.cuda.amp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlint.config import Settings
from trainlint.fixing import FixSafety
from trainlint.linter import Linter
from trainlint.testing import expected_lines, lint_files, lint_snippet

CODES = ("TL501", "TL502", "TL503", "TL504", "TL505", "TL506")


def _lines(found: list, code: str) -> list[int]:
    return sorted(d.line for d in found if d.code == code)


def _check(source: str) -> None:
    """Every AMP rule flags exactly the lines marked for it (none when unmarked)."""
    found = lint_snippet(source, CODES)
    for code in CODES:
        assert _lines(found, code) == expected_lines(source, code), code


def test_nanogpt_training_loop_is_silent() -> None:
    _check(
        """
import torch
from contextlib import nullcontext

dtype = 'bfloat16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'float16'
device_type = 'cuda' if 'cuda' in device else 'cpu'
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if device_type == 'cpu' else torch.amp.autocast(device_type=device_type, dtype=ptdtype)
scaler = torch.amp.GradScaler('cuda', enabled=(dtype == 'float16'))
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
while True:
    for micro_step in range(gradient_accumulation_steps):
        with ctx:
            logits, loss = model(X, Y)
            loss = loss / gradient_accumulation_steps
        X, Y = get_batch('train')
        scaler.scale(loss).backward()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
"""
    )


def test_torchvision_reference_with_optional_scaler_is_silent() -> None:
    _check(
        """
import torch

def train_one_epoch(model, criterion, optimizer, data_loader, device, args, scaler=None):
    model.train()
    for image, target in data_loader:
        with torch.autocast("cuda", enabled=scaler is not None):
            loss = criterion(model(image), target)
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            if args.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if args.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()
"""
    )


def test_timm_native_scaler_and_its_caller_are_silent() -> None:
    _check(
        """
import torch

class NativeScaler:
    def __init__(self, device="cuda"):
        self._scaler = torch.amp.GradScaler(device)

    def __call__(self, loss, optimizer, clip_grad=None, parameters=None, need_update=True):
        self._scaler.scale(loss).backward()
        if need_update:
            if clip_grad is not None:
                self._scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
            self._scaler.step(optimizer)
            self._scaler.update()

def train_one_epoch(model, loader, optimizer, loss_scaler=None):
    for inputs, target in loader:
        with torch.autocast("cuda"):
            loss = model(inputs)
        if loss_scaler is not None:
            loss_scaler(loss, optimizer, clip_grad=1.0, parameters=model.parameters())
        else:
            loss.backward()
            optimizer.step()
"""
    )


def test_split_conditions_on_the_same_flag_are_not_mixed() -> None:
    _check(
        """
import torch

def train(model, optimizer, loader, use_amp, scaler):
    for x, y in loader:
        loss = model(x, y)
        if use_amp:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if not use_amp:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
"""
    )


def test_clip_in_a_method_before_unscale() -> None:
    _check(
        """
import torch

class Trainer:
    def __init__(self, model, lr):
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler("cuda")

    def step(self, batch):
        self.optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = self.model(batch)
        scaled = self.scaler.scale(loss)
        scaled.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)  # expect: TL501
        self.scaler.step(self.optimizer)
        self.scaler.update()
"""
    )


def test_clip_in_a_helper_from_another_file_is_reported_at_the_call() -> None:
    helpers = """
import torch

def clip(model):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
"""
    train = """
import torch
from helpers import clip

scaler = torch.amp.GradScaler("cuda")
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(model(x, y)).backward()
    clip(model)  # expect: TL501
    scaler.step(optimizer)
    scaler.update()
"""
    found = lint_files({"helpers.py": helpers, "train.py": train}, CODES, main="train.py")
    assert [(d.code, d.line) for d in found] == [("TL501", line) for line in expected_lines(train, "TL501")]


def test_direct_step_unscaled_backward_and_missing_update() -> None:
    _check(
        """
import torch

scaler = torch.amp.GradScaler("cuda")
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(model(x, y)).backward()
    scaler.step(optimizer)
    optimizer.step()  # expect: TL502
    scaler.update()

for x, y in loader:
    optimizer.zero_grad()
    loss = model(x, y)
    loss.backward()  # expect: TL504
    scaler.step(optimizer)
    scaler.update()

for i, (x, y) in enumerate(loader):
    scaler.scale(model(x, y)).backward()
    if (i + 1) % 4 == 0:
        scaler.step(optimizer)  # expect: TL503
        optimizer.zero_grad()
"""
    )


def test_deprecated_cuda_amp_spellings_and_replacements() -> None:
    source = """
import torch
from torch.cuda import amp
from torch.cuda.amp import autocast as cuda_autocast  # expect: TL505

scaler = amp.GradScaler(2.0 ** 12, enabled=use_amp)  # expect: TL505
with cuda_autocast(True):  # expect: TL505
    out = model(x)
with torch.autocast("cuda"):
    out = model(x)
"""
    found = lint_snippet(source, ["TL505"])
    assert _lines(found, "TL505") == expected_lines(source, "TL505")
    messages = [d.message for d in sorted(found, key=lambda d: d.line)]
    assert "`from torch.amp import autocast as cuda_autocast`" in messages[0]
    assert '`torch.amp.GradScaler("cuda", init_scale=2.0 ** 12, enabled=use_amp)`' in messages[1]
    assert '`cuda_autocast("cuda", enabled=True)`' in messages[2]


def test_fp16_autocast_without_scaler() -> None:
    _check(
        """
import torch

for x, y in loader:
    optimizer.zero_grad()
    with torch.cuda.amp.autocast():  # expect: TL505, TL506
        loss = model(x, y)
    loss.backward()
    optimizer.step()

for x, y in loader:
    optimizer.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x, y)
    loss.backward()
    optimizer.step()

for x, y in loader:
    optimizer.zero_grad()
    with torch.autocast("cpu"):
        loss = model(x, y)
    loss.backward()
    optimizer.step()

for x, _ in val_loader:
    with torch.autocast("cuda", dtype=torch.half):
        preds = model(x)
"""
    )


def test_fp16_autocast_with_frameworks_or_a_scaler_elsewhere_is_silent() -> None:
    _check(
        """
import torch

def accelerate_loop(accelerator, model, optimizer, loader):
    for x, y in loader:
        with torch.autocast("cuda"):
            loss = model(x, y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()

def deepspeed_loop(model_engine, loader):
    for x, y in loader:
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model_engine(x, y)
        model_engine.backward(loss)
        model_engine.step()
"""
    )
    helpers = """
def train_one_epoch(model, loader, optimizer, scaler):
    for x, y in loader:
        with torch.autocast("cuda"):
            loss = model(x, y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
"""
    assert lint_files({"engine.py": "import torch\n" + helpers}, ["TL506"]) == []


# Old-torch fallbacks: the deprecated API is what they are for, so TL505 neither flags nor
# fixes them. The new API in the same file is untouched as well.
FALLBACKS = {
    "hasattr": """
import torch

if hasattr(torch, "amp"):
    scaler = torch.amp.GradScaler("cuda")
else:
    scaler = torch.cuda.amp.GradScaler()
""",
    "hasattr-early-exit": """
import torch

def make_scaler():
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()
""",
    "import-error": """
try:
    from torch.amp import GradScaler, autocast
except ImportError:
    from torch.cuda.amp import GradScaler, autocast

scaler = GradScaler()
with autocast("cuda"):
    out = model(x)
""",
    "attribute-error": """
import torch

try:
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
except AttributeError:
    scaler = torch.cuda.amp.GradScaler(enabled=use_amp)
""",
    "version-string": """
import torch

if torch.__version__ >= "2.3":
    ctx = torch.amp.autocast("cuda")
else:
    ctx = torch.cuda.amp.autocast()
""",
    "packaging-version": """
import torch
from packaging import version

if version.parse(torch.__version__) < version.parse("2.3"):
    scaler = torch.cuda.amp.GradScaler()
else:
    scaler = torch.amp.GradScaler("cuda")
""",
    "version-flag": """
import torch
from packaging.version import Version

NEW_AMP = Version(torch.__version__) >= Version("2.3")
scaler = torch.amp.GradScaler("cuda") if NEW_AMP else torch.cuda.amp.GradScaler()
""",
}


@pytest.mark.parametrize("source", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_version_fallbacks_are_neither_flagged_nor_fixed(tmp_path: Path, source: str) -> None:
    assert not [d for d in lint_snippet(source, ["TL505"]) if d.code == "TL505"]
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'example'\n")
    (tmp_path / "train.py").write_text(source)
    result = Linter(Settings(select=("TL505",), root=tmp_path), frozenset(FixSafety)).lint_paths([tmp_path / "train.py"])
    assert not result.fixed and not result.errors
