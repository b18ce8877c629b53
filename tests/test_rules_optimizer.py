"""TL401 (weight decay on norm and bias) and TL402 (Adam with L2 weight decay)."""

from __future__ import annotations

from pathlib import Path

from trainlint.testing import expected_lines, lint_files, lint_snippet


def _lines(found: list, code: str) -> list[int]:
    return sorted(d.line for d in found if d.code == code)


def _check(source: str, *codes: str) -> None:
    found = lint_snippet(source, codes)
    for code in codes:
        assert _lines(found, code) == expected_lines(source, code), code


def test_whole_model_parameters_with_explicit_decay() -> None:
    _check(
        """
import torch
import torch.nn as nn

model = Net()
a = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)  # expect: TL401
b = torch.optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=0.1, weight_decay=cfg.wd)  # expect: TL401
trainable = [p for p in model.parameters() if p.requires_grad]
c = torch.optim.RMSprop(trainable, lr=0.01, weight_decay=1e-5)  # expect: TL401
d = torch.optim.SGD(model.module.parameters(), 0.1, 0.9, 0, 1e-4)  # expect: TL401
default_decay = torch.optim.AdamW(model.parameters(), lr=3e-4)
zero = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.0)
head_only = torch.optim.SGD(model.fc.parameters(), lr=0.1, weight_decay=5e-4)
probe = nn.Linear(512, 10)
linear_probe = torch.optim.SGD(probe.parameters(), lr=0.1, weight_decay=1e-4)
encoder = model.encoder
encoder_only = torch.optim.SGD(encoder.parameters(), lr=0.1, weight_decay=1e-4)
if args.norm_weight_decay is None:
    parameters = [p for p in model.parameters() if p.requires_grad]
else:
    parameters = split_normalization_params(model, args.norm_weight_decay)
optional_split = torch.optim.SGD(parameters, lr=0.1, weight_decay=args.weight_decay)
""",
        "TL401",
    )


def test_parameter_groups() -> None:
    _check(
        """
import torch
from torch import optim

same = optim.SGD(  # expect: TL401
    [{"params": model.backbone.parameters()}, {"params": model.head.parameters(), "lr": 1e-2}],
    lr=1e-3,
    weight_decay=1e-4,
)
explicit = optim.AdamW([{"params": a, "weight_decay": 0.05}, {"params": b, "weight_decay": 0.05}], lr=1e-3)  # expect: TL401
exempt = optim.AdamW([{"params": a}, {"params": b, "weight_decay": 0.0}], lr=1e-3, weight_decay=0.05)
implicit = optim.AdamW([{"params": a}, {"params": b, "lr": 1e-4}], lr=1e-3)
different = optim.SGD([{"params": a, "weight_decay": args.wd}, {"params": b, "weight_decay": args.wd_norm}], lr=0.1)
groups = [{"params": a}]
groups.append({"params": b, "weight_decay": 0.0})
grown = optim.SGD(groups, lr=0.1, weight_decay=1e-4)
helper = optim.SGD(param_groups_weight_decay(model, 1e-4), lr=0.1, weight_decay=1e-4)
""",
        "TL401",
    )


def test_nanogpt_and_hugging_face_splits_are_silent() -> None:
    _check(
        """
import torch
import torch.nn as nn

class GPT(nn.Module):
    def configure_optimizers(self, weight_decay, learning_rate, betas):
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)

no_decay = ["bias", "LayerNorm.weight"]
grouped = [
    {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": args.weight_decay},
    {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
]
optimizer = torch.optim.AdamW(grouped, lr=args.learning_rate)
no_decay_names = [p for n, p in model.named_parameters() if "bias" not in n]
named_split = torch.optim.SGD(no_decay_names, lr=0.1, weight_decay=1e-4)
""",
        "TL401",
        "TL402",
    )


def test_self_parameters_and_trainer_attribute_across_files() -> None:
    model = """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)
        self.bn = nn.BatchNorm1d(2)

    def head_optimizer(self):
        return torch.optim.SGD(self.fc.parameters(), lr=0.1, weight_decay=1e-4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=1e-4)
"""
    train = """
import torch
from model import Net

class Trainer:
    def __init__(self, model, weight_decay):
        self.model = model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, weight_decay=weight_decay)

trainer = Trainer(Net(), weight_decay=1e-4)
"""
    files = {"model.py": model, "train.py": train}
    assert _lines(lint_files(files, select=["TL401"], main="model.py"), "TL401") == [15]
    found = lint_files(files, select=["TL401", "TL402"], main="train.py")
    assert _lines(found, "TL401") == [8]
    assert _lines(found, "TL402") == [8]


def test_tl402_adam_decay_forms() -> None:
    _check(
        """
import argparse
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--weight-decay", "--wd", default=1e-4, type=float)
parser.add_argument("--l2", default=0.0, type=float)
parser.add_argument("--decay", dest="other_decay", type=float)
args = parser.parse_args()

a = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=5e-4)  # expect: TL402
b = torch.optim.Adam(head.parameters(), 1e-3, (0.9, 0.999), 1e-8, 1e-2)  # expect: TL402
c = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=args.weight_decay)  # expect: TL402
d = torch.optim.Adam([{"params": x}, {"params": y, "weight_decay": 0.0}], lr=1e-3, weight_decay=1e-4)  # expect: TL402
zero_default = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=args.l2)
no_default = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=args.other_decay)
unknown = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=config.wd)
decoupled = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-2, decoupled_weight_decay=True)
adamw = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
plain = torch.optim.Adam(head.parameters(), lr=1e-3)
""",
        "TL402",
    )


def test_tl402_argparse_in_function_and_args_parameter() -> None:
    _check(
        """
import argparse
import torch

def get_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wd", type=float, default=0.0005)
    return parser.parse_args()

def build(args, model):
    return torch.optim.Adam(model.fc.parameters(), lr=args.lr, weight_decay=args.wd)  # expect: TL402

def build_zero(args, model):
    wd = 0
    return torch.optim.Adam(model.fc.parameters(), lr=args.lr, weight_decay=wd)
""",
        "TL402",
    )


def test_classifier_fixture_message_shows_the_resolved_default() -> None:
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "classifier_project"
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(fixture.glob("*.py"))}
    message = next(d.message for d in lint_files(files, select=["TL401"]))
    assert "args.weight_decay (= 0.0005)" in message


def test_lightning_hparams_resolve_to_init_defaults() -> None:
    _check(
        """
import torch
import lightning as L

class Quiet(L.LightningModule):
    def __init__(self, model, lr=1e-3, weight_decay=0.0):
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

class Decayed(L.LightningModule):
    def __init__(self, model, lr=1e-3, weight_decay=1e-4):
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)  # expect: TL401, TL402
""",
        "TL401",
        "TL402",
    )
