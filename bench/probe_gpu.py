"""GPU benchmark of the runtime probe: cost versus plain training, and memory overhead.

Builds two models locally (no downloads): a ResNet-18-style CNN and a GPT-2-small-sized
decoder (12 layers, 12 heads, d=768, vocab 50257). For each it counts the forward passes
``probe()`` makes, times ``probe()`` against the same number of plain training steps
(float32 forward, backward, Adam step), records peak CUDA memory for both, checks that the probe
made no second device copy of the weights and left them bit-exactly as they were, and
prints a Markdown table.

    python bench/probe_gpu.py [--max-steps 50] [--amp] [--models resnet gpt2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlint.probe import probe


# --------------------------------------------------------------------------- models
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, classes: int = 100) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        widths, layers, cin = (64, 128, 256, 512), [], 64
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers += [BasicBlock(cin, width, stride), BasicBlock(width, width, 1)]
            cin = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT2Small(nn.Module):
    """GPT-2 small shapes; returns ``(N*T, vocab)`` logits so CrossEntropyLoss applies directly."""

    def __init__(
        self, vocab: int = 50257, ctx: int = 256, dim: int = 768, depth: int = 12, heads: int = 12
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(ctx, dim)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.blocks(self.wte(ids) + self.wpe(positions))
        return self.head(self.ln_f(h)).flatten(0, 1)


# --------------------------------------------------------------------------- workloads
@dataclass
class Workload:
    name: str
    model: nn.Module
    batches: list[tuple[torch.Tensor, torch.Tensor]]


def resnet_workload(device: torch.device, batch: int) -> Workload:
    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = [
        (
            torch.randn(batch, 3, 64, 64, generator=gen).to(device),
            torch.randint(0, 100, (batch,), generator=gen).to(device),
        )
        for _ in range(4)
    ]
    return Workload("ResNet-18 (64×64, 100 classes)", ResNet18().to(device), batches)


def gpt2_workload(device: torch.device, batch: int, ctx: int = 256) -> Workload:
    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = []
    for _ in range(4):
        ids = torch.randint(0, 50257, (batch, ctx + 1), generator=gen)
        batches.append((ids[:, :-1].to(device), ids[:, 1:].reshape(-1).to(device)))
    return Workload(f"GPT-2 small (ctx {ctx})", GPT2Small(ctx=ctx).to(device), batches)


# --------------------------------------------------------------------------- measurement
def _count_forwards(model: nn.Module) -> tuple[list[int], Callable[[], None]]:
    counter = [0]

    def hook(module: nn.Module, args: Any) -> None:
        counter[0] += 1

    handle = model.register_forward_pre_hook(hook)
    return counter, handle.remove


def _checksum(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().to("cpu", copy=True) for t in model.state_dict().values()]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return result, time.perf_counter() - start, torch.cuda.max_memory_allocated()


def plain_training(workload: Workload, steps: int) -> None:
    """Float32 steps: the probe's own training stages run in float32 whatever ``--amp`` says
    (only its amp_overflow stage runs under autocast), so this is the like-for-like baseline.
    """
    model, loss_fn = workload.model, nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    inputs, targets = workload.batches[0]
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()


def bench(workload: Workload, max_steps: int, amp: bool) -> dict[str, Any]:
    model = workload.model
    params = list(model.parameters())  # tied weights appear once
    weights = sum(p.numel() * p.element_size() for p in params)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = _checksum(model)
    counter, remove = _count_forwards(model)
    report, probe_s, probe_peak = _timed(
        lambda: probe(
            model,
            workload.batches,
            nn.CrossEntropyLoss(),
            optimizer,
            amp_dtype=torch.float16 if amp else None,
            max_steps=max_steps,
        )
    )
    remove()
    restored = all(torch.equal(a, b) for a, b in zip(before, _checksum(model)))
    steps = counter[0]
    snapshot = _checksum(model)
    _, plain_s, plain_peak = _timed(lambda: plain_training(workload, steps))
    # Put the weights back for the next comparison run (plain training changed them).
    with torch.no_grad():
        for tensor, saved in zip(model.state_dict().values(), snapshot):
            tensor.copy_(saved)
    return {
        "model": workload.name,
        "params (M)": sum(p.numel() for p in params) / 1e6,
        "forwards": steps,
        "probe s": probe_s,
        "plain s": plain_s,
        "overhead ×": probe_s / plain_s,
        "probe peak GiB": probe_peak / 2**30,
        "plain peak GiB": plain_peak / 2**30,
        # A second device copy of the weights would add at least `weights` bytes.
        "no 2nd copy": probe_peak - plain_peak < 0.5 * weights,
        "restored": restored,
        "probe ok": report.ok,
        "findings": ", ".join(f"{f.code}:{f.subject}" for f in report.at_least("warning")) or "-",
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [
            f"{v:.3g}"
            if isinstance(v, float)
            else ("✓" if v is True else "✗" if v is False else str(v))
            for v in row.values()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument(
        "--amp", action="store_true", help="probe with amp_dtype=float16 (exercises the GradScaler)"
    )
    parser.add_argument(
        "--models", nargs="+", choices=["resnet", "gpt2"], default=["resnet", "gpt2"]
    )
    parser.add_argument("--resnet-batch", type=int, default=64)
    parser.add_argument("--gpt2-batch", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("probe_gpu.py needs a CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    builders = {
        "resnet": lambda: resnet_workload(device, args.resnet_batch),
        "gpt2": lambda: gpt2_workload(device, args.gpt2_batch),
    }
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        workload = builders[name]()
        rows.append(bench(workload, args.max_steps, args.amp))
        del workload
        torch.cuda.empty_cache()
    print(
        f"GPU: {torch.cuda.get_device_name()} · torch {torch.__version__} · max_steps {args.max_steps} · amp {args.amp}\n"
    )
    print(markdown(rows))
    return 0 if all(row["no 2nd copy"] and row["restored"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
