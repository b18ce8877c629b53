"""The probe on real architectures, on CPU: verdicts (healthy and buggy) and cost.

Builds torchvision, timm and transformers models from their constructors and small configs
(no pretrained weights, no downloads), plus an LSTM tagger and a UNet. Each runs once
healthy and once with a realistic silent bug. For the healthy runs it counts the forward
passes ``probe()`` makes and times the same number of plain training steps (forward,
backward, AdamW step on one batch): the cost ratio is probe time / plain time.

Wall-clock time on a shared machine measures the neighbours as much as the model, so both
sides are timed in CPU seconds of this process (``time.process_time``) with one torch
thread by default. One untimed plain step first pays the model's one-time costs (lazy
initialisation, allocator warm-up) that would otherwise fall on whichever runs first; then
probe and plain steps are timed ``--repeat`` times (more for sub-second cases, up to 8),
alternating, and the best of each is kept.

    python bench/probe_cpu.py [--max-steps 60] [--repeat 2] [--only resnet18 gpt2] [--reports DIR]

A full run (no ``--only``) writes its tables to ``bench/results/probe_cpu.md``; ``--reports``
also saves each probe report as the 80-column text ``str(report)`` gives.

Needs ``pip install torchvision timm transformers`` next to the pinned torch.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainlint.probe import probe


def _import_torchvision() -> Any:
    """torchvision's PyPI wheel targets CUDA builds of torch; with the CPU build its C ops
    fail to load, and only two fake-op registrations stand in the way of the models."""
    try:
        import torchvision
    except RuntimeError:
        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - kept alive below
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        import torchvision
    return torchvision


_KEEP: list[Any] = []
RESULTS = Path(__file__).resolve().parent / "results" / "probe_cpu.md"
clock = time.process_time
SHORT_S, MAX_TRIES = 2.0, 8


@dataclass
class Case:
    name: str
    model: nn.Module
    loader: Any
    loss_fn: Any = None
    optimizer: torch.optim.Optimizer | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    # The bug a buggy case must be caught by: (code, words the message must contain).
    bug: tuple[str, str] | None = None


# --------------------------------------------------------------------------- data
def images(n: int, size: int, classes: int, seed: int, batch: int = 16) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)


def tokens(n: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


def adamw(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


# --------------------------------------------------------------------------- vision
def vision(name: str, build: Callable[[], nn.Module], bug: str | None) -> Case:
    torch.manual_seed(0)
    model = build()
    loader = images(64, 64, 10, 0)
    case = Case(name, model, loader, nn.CrossEntropyLoss(), adamw(model))
    if bug == "softmax":
        case.model = nn.Sequential(model, nn.Softmax(dim=1))
        case.optimizer = adamw(case.model)
        case.bug = ("P201", "softmax")
    elif bug == "rare_label":
        x, y = loader.dataset.tensors
        x, y = torch.cat([x] * 8), torch.cat([y] * 8)
        y[-7] = 10  # one label in 512, outside the 10 classes
        case.loader = DataLoader(TensorDataset(x, y), batch_size=16)
        case.bug = ("P103", "outside [0, 10)")
    elif bug == "diverging_lr":
        case.optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
        case.bug = ("P40", "learning rate is too high")
    elif bug == "huge_head":
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.normal_(head.weight, std=1.0)  # a custom init without the 1/sqrt(fan_in)
        case.bug = ("P30", "initial loss")
    elif bug == "detached_trunk":
        case.model = DetachedTrunk(model)
        case.optimizer = adamw(case.model)
        case.bug = ("P502", "no gradient")
    return case


class DetachedTrunk(nn.Module):
    """``features(x).detach()`` before the classifier: only the head trains."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features = model.features
        self.avgpool = model.avgpool
        self.classifier = model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x).detach()).flatten(1))


# --------------------------------------------------------------------------- language
def gpt2(bug: str | None) -> Case:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=500, n_positions=64, n_embd=64, n_layer=2, n_head=4, attn_implementation="eager",
        initializer_range=1.0 if bug == "init_range" else 0.02,  # a config typo: 1.0 for 0.02
    )
    model = GPT2LMHeadModel(config)
    ids = tokens(32, 32, 500, 1)
    batches = [{"input_ids": ids[i : i + 8], "labels": ids[i : i + 8]} for i in range(0, 32, 8)]
    case = Case("GPT-2 (2 layers)", model, batches, None, adamw(model))
    if bug == "no_causal_mask":
        for block in model.transformer.h:
            block.attn.is_causal = False
        _no_mask(model)
        case.bug = ("P822", "causal mask")
    elif bug == "init_range":
        case.bug = ("P30", "initial loss")
    return case


def _no_mask(model: nn.Module) -> None:
    """Drop the attention mask HF builds (the 'forgot the mask' bug in a custom attention)."""
    import transformers.models.gpt2.modeling_gpt2 as gpt2_module

    original = gpt2_module.eager_attention_forward

    def unmasked(module: nn.Module, query: Any, key: Any, value: Any, attention_mask: Any, **kw: Any) -> Any:
        return original(module, query, key, value, None, **kw)

    for block in model.transformer.h:
        block.attn._trainlint_bench_unmasked = True
    gpt2_module.eager_attention_forward = unmasked
    _RESTORE.append(lambda: setattr(gpt2_module, "eager_attention_forward", original))


_RESTORE: list[Callable[[], None]] = []


def bert(bug: str | None) -> Case:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    dropout = 1.0 if bug == "dropout_p1" else 0.1
    config = BertConfig(
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=3,
        hidden_dropout_prob=dropout,
    )
    model = BertForSequenceClassification(config)
    ids = tokens(32, 24, 500, 2)
    labels = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(3))
    batches = [
        {"input_ids": ids[i : i + 8], "attention_mask": torch.ones(8, 24, dtype=torch.long), "labels": labels[i : i + 8]}
        for i in range(0, 32, 8)
    ]
    case = Case("BERT (2 layers)", model, batches, None, adamw(model, 5e-4))
    if bug == "dropout_p1":
        case.bug = ("P510", "p=1")
    return case


def t5(bug: str | None) -> Case:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=300, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    source, target = tokens(32, 20, 300, 4), tokens(32, 12, 300, 5)
    if bug == "labels_out_of_range":
        target[5, 3] = 300 + 17
    batches = [{"input_ids": source[i : i + 8], "labels": target[i : i + 8]} for i in range(0, 32, 8)]
    case = Case("T5 (2+2 layers)", model, batches, None, adamw(model))
    if bug == "labels_out_of_range":
        case.bug = ("P103", "vocabulary")
    return case


class LSTMTagger(nn.Module):
    def __init__(self, vocab: int = 200, tags: int = 12) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.lstm = nn.LSTM(32, 64, batch_first=True, bidirectional=True)
        self.head = nn.Linear(128, tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])  # (N, T, tags)


def lstm_tagger(bug: str | None) -> Case:
    torch.manual_seed(0)
    model = LSTMTagger()
    ids, tags = tokens(64, 12, 200, 6), tokens(64, 12, 12, 7)
    batches = [(ids[i : i + 16], tags[i : i + 16]) for i in range(0, 64, 16)]

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.transpose(1, 2), y)

    def wrong_axis(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)  # (N, T, C) with T == C == 12: runs, wrong axis

    case = Case("LSTM tagger", model, batches, wrong_axis if bug else loss, adamw(model, 3e-3))
    if bug:
        case.bug = ("P811", "dim 1")
    return case


class UNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
            )

        self.down1, self.down2, self.bottom = block(3, 16), block(16, 32), block(32, 64)
        self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, 2), block(64, 32)
        self.up1, self.dec1 = nn.ConvTranspose2d(32, 16, 2, 2), block(32, 16)
        self.out = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(F.max_pool2d(d1, 2))
        b = self.bottom(F.max_pool2d(d2, 2))
        u2 = self.dec2(torch.cat([self.up2(b), d2], 1))
        return self.out(self.dec1(torch.cat([self.up1(u2), d1], 1)))


def unet(bug: str | None) -> Case:
    torch.manual_seed(0)
    model = UNet()
    gen = torch.Generator().manual_seed(8)
    x, y = torch.randn(32, 3, 32, 32, generator=gen), torch.randint(0, 3, (32, 32, 32), generator=gen)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    case = Case("UNet", model, batches, nn.CrossEntropyLoss(), adamw(model))
    if bug == "softmax":
        case.model = nn.Sequential(model, nn.Softmax(dim=1))
        case.optimizer = adamw(case.model)
        case.bug = ("P201", "softmax")
    return case


# --------------------------------------------------------------------------- registry
def cases(names: list[str] | None) -> list[tuple[str, Callable[[str | None], Case], list[str]]]:
    tv = _import_torchvision()
    import timm

    def tv_case(label: str, factory: Callable[..., nn.Module]) -> Callable[[str | None], Case]:
        return lambda bug: vision(label, lambda: factory(num_classes=10), bug)

    def timm_case(label: str, arch: str, **kw: Any) -> Callable[[str | None], Case]:
        return lambda bug: vision(label, lambda: timm.create_model(arch, num_classes=10, **kw), bug)

    table = [
        ("resnet18", tv_case("ResNet-18", tv.models.resnet18), ["softmax", "rare_label", "huge_head"]),
        ("mobilenet_v3", tv_case("MobileNetV3-S", tv.models.mobilenet_v3_small), ["detached_trunk"]),
        ("efficientnet_b0", tv_case("EfficientNet-B0", tv.models.efficientnet_b0), ["detached_trunk", "huge_head"]),
        ("vit_tiny", timm_case("ViT-tiny", "vit_tiny_patch16_224", img_size=64), ["softmax"]),
        ("convnext_atto", timm_case("ConvNeXt-atto", "convnext_atto"), ["diverging_lr"]),
        ("gpt2", gpt2, ["no_causal_mask", "init_range"]),
        ("bert", bert, ["dropout_p1"]),
        ("t5", t5, ["labels_out_of_range"]),
        ("lstm_tagger", lstm_tagger, ["wrong_axis"]),
        ("unet", unet, ["softmax"]),
    ]
    return [row for row in table if not names or row[0] in names]


# --------------------------------------------------------------------------- measurement
def _count_forwards(model: nn.Module) -> tuple[list[int], Callable[[], None]]:
    counter = [0]
    handle = model.register_forward_pre_hook(lambda module, args: counter.__setitem__(0, counter[0] + 1))
    return counter, handle.remove


def plain_steps(case: Case, steps: int) -> float:
    """``steps`` plain training steps on the first batch (what the probe's forwards cost)."""
    model, batch = case.model, next(iter(case.loader))
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    start = clock()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        if isinstance(batch, dict):
            loss = model(**batch).loss
        else:
            loss = case.loss_fn(model(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
    elapsed = clock() - start
    model.load_state_dict(snapshot)
    model.zero_grad(set_to_none=True)
    return elapsed


def run_case(case: Case, max_steps: int, repeat: int) -> tuple[dict[str, Any], str]:
    """One case: its verdict row, and the report's text. ``repeat`` 0: not timed."""
    before = [t.detach().clone() for t in case.model.state_dict().values()]
    if repeat:
        plain_steps(case, 1)  # one-time costs, paid by neither timing
    counter, remove = _count_forwards(case.model)
    start = clock()
    report = probe(case.model, case.loader, case.loss_fn, case.optimizer, max_steps=max_steps, **case.kwargs)
    probe_s = clock() - start
    remove()
    restored = all(torch.equal(a, b) for a, b in zip(before, case.model.state_dict().values()))
    loud = report.at_least("warning")
    leads = [f for f in loud if "related_to" not in f.details]
    row: dict[str, Any] = {
        "model": case.name,
        "bug": "-",
        "verdict": "OK" if report.ok else "FAILED",
        "warnings+": len(leads),
        "related": len(loud) - len(leads),
        "forwards": counter[0],
        "restored": restored,
    }
    if case.bug is not None:
        code, words = case.bug
        row["caught"] = any(f.code.startswith(code) and words in f.message for f in loud)
        row["first"] = bool(leads) and leads[0].code.startswith(code)
    if repeat:
        plain_s = plain_steps(case, counter[0])
        # Sub-second cases vary by a fifth from run to run: they get more tries.
        for _ in range(max(repeat, min(MAX_TRIES, math.ceil(SHORT_S / plain_s))) - 1):
            start = clock()
            probe(case.model, case.loader, case.loss_fn, case.optimizer, max_steps=max_steps, **case.kwargs)
            probe_s = min(probe_s, clock() - start)
            plain_s = min(plain_s, plain_steps(case, counter[0]))
        row.update({"probe s": probe_s, "plain s": plain_s, "cost ×": probe_s / plain_s})
    row["details"] = "; ".join(f"{f.code}:{f.subject}" for f in leads[:4]) or "-"
    return row, str(report)


def markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for key in keys:
            value = row.get(key, "")
            if isinstance(value, bool):
                cells.append("✓" if value else "✗")
            elif isinstance(value, float):
                cells.append(f"{value:.3g}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per healthy case (best kept)")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", default=None, help=f"default: {RESULTS} for a full run")
    parser.add_argument("--reports", default=None, help="folder for the 80-column reports")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or (None if args.only else RESULTS)
    reports = Path(args.reports) if args.reports else None
    if reports:
        reports.mkdir(parents=True, exist_ok=True)
    healthy, buggy = [], []
    for key, build, bugs in cases(args.only):
        row, text = run_case(build(None), args.max_steps, max(1, args.repeat))
        healthy.append(row)
        _save(reports, key, text)
        print(f"{key}: {row['verdict']} ×{row['cost ×']:.2f} {row['details']}", file=sys.stderr)
        for bug in bugs:
            bad, text = run_case(build(bug), args.max_steps, 0)
            while _RESTORE:
                _RESTORE.pop()()
            bad["bug"] = bug
            buggy.append(bad)
            _save(reports, f"{key}-{bug}", text)
            print(f"  {bug}: caught={bad['caught']} first={bad['first']} {bad['details']}", file=sys.stderr)
    ratios = [row["cost ×"] for row in healthy]
    text = "\n\n".join(
        [
            f"torch {torch.__version__} · CPU time, {torch.get_num_threads()} thread(s) · "
            f"max_steps {args.max_steps} · best of {max(1, args.repeat)}+ timed runs",
            "Healthy pipelines (no error, no warning expected):",
            markdown(healthy, ["model", "verdict", "warnings+", "forwards", "probe s", "plain s", "cost ×", "restored", "details"]),
            f"Median cost: {statistics.median(ratios):.2f}× plain steps (max {max(ratios):.2f}×).",
            "Buggy pipelines (the bug must be caught by a finding that names it; `first`: it "
            "leads the report; `warnings+`: lead findings of warning or error severity, "
            "`related`: those grouped under them):",
            markdown(buggy, ["model", "bug", "verdict", "caught", "first", "warnings+", "related", "restored", "details"]),
        ]
    )
    print(text)
    if out:
        command = " ".join(["python bench/probe_cpu.py", *sys.argv[1:]])
        Path(out).write_text(f"<!-- {command} -->\n{text}\n", encoding="utf-8")
    ok = all(r["verdict"] == "OK" and r["warnings+"] == r["related"] == 0 and r["restored"] for r in healthy)
    return 0 if ok and all(r["caught"] and r["restored"] for r in buggy) else 1


def _save(folder: Path | None, name: str, text: str) -> None:
    if folder is not None:
        (folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
