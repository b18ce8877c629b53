"""Autofixes: each fixer's rewrite, idempotence, re-linting clean, safety, and the CLI."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.catalogue import fix_safety_of, page_for, pages, rule_index
from trainlint.cli import main
from trainlint.config import Settings
from trainlint.diagnostics import Diagnostic
from trainlint.fixing import FixSafety
from trainlint.linter import Linter
from trainlint.rule import all_rules, rule_by_code

BAD_BLOCK = re.compile(r"```python bad\n(?P<code>.*?)```", re.DOTALL)
EVERY_SAFETY = frozenset(FixSafety)
# Rules whose fixes rewrite code (TL901's, made by the linter, only edits `# noqa` comments).
FIXED = sorted(rule.code for rule in all_rules() if rule.fix_safety is not None and rule.code != "TL901")


def fix(tmp_path: Path, source: str, safeties: frozenset[FixSafety] = EVERY_SAFETY, name: str = "example.py") -> tuple[str, list[Diagnostic]]:
    """The fixed text of ``source`` and the findings left in it."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'example'\n")
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    result = Linter(Settings(root=tmp_path), safeties).lint_file(path)
    assert not result.errors, result.errors
    return (result.fixed[0].fixed if result.fixed else source), result.diagnostics


def _page_examples() -> list[tuple[str, str]]:
    found = []
    for code in FIXED:
        page = page_for(code)
        assert page is not None
        found += [(code, m.group("code")) for m in BAD_BLOCK.finditer(page.read_text(encoding="utf-8"))]
    return found


@pytest.mark.parametrize(("code", "source"), _page_examples(), ids=lambda v: str(v)[:10])
def test_fixed_page_examples_lint_clean_and_fix_idempotently(tmp_path: Path, code: str, source: str) -> None:
    fixed, left = fix(tmp_path, source)
    offered = [d for d in left if d.code == code and d.fix is not None]
    assert not offered, f"{code}: a fix is still offered after fixing: {offered}"
    if fixed != source:
        again, _ = fix(tmp_path, fixed)
        assert again == fixed, "applying the fixes twice changed the code again"
        assert not [d for d in left if d.code == code], f"{code} still fires on the fixed example:\n{fixed}"


AMP = """\
import torch
from torch.cuda.amp import autocast, GradScaler  # old API

scaler = GradScaler(65536.0, enabled=use_amp)
with autocast(True):  # keep this comment
    out = model(x)
with torch.cuda.amp.autocast(dtype=torch.bfloat16):
    out = model(x)
"""

AMP_FIXED = """\
import torch
from torch.amp import autocast, GradScaler  # old API

scaler = GradScaler("cuda", init_scale=65536.0, enabled=use_amp)
with autocast("cuda", enabled=True):  # keep this comment
    out = model(x)
with torch.amp.autocast("cuda", dtype=torch.bfloat16):
    out = model(x)
"""


# Without the GradScaler: torch.amp.autocast is in every torch 2, so the fix is safe.
AUTOCAST = "".join(line for line in AMP.splitlines(keepends=True) if "scaler" not in line).replace(", GradScaler", "")
AUTOCAST_FIXED = "".join(line for line in AMP_FIXED.splitlines(keepends=True) if "scaler" not in line).replace(", GradScaler", "")


def test_tl505_moves_to_torch_amp_and_keeps_comments(tmp_path: Path) -> None:
    fixed, left = fix(tmp_path, AMP)
    assert fixed == AMP_FIXED
    assert not [d for d in left if d.code == "TL505"]
    assert fix(tmp_path, AUTOCAST, frozenset({FixSafety.SAFE}))[0] == AUTOCAST_FIXED


def test_tl505_rewriting_a_grad_scaler_is_unsafe(tmp_path: Path) -> None:
    # torch.amp.GradScaler came with torch 2.3: older torch would raise AttributeError.
    fixed, left = fix(tmp_path, AMP, frozenset({FixSafety.SAFE}))
    assert fixed.startswith("import torch\nfrom torch.cuda.amp import autocast, GradScaler")
    assert "with torch.amp.autocast(" in fixed  # the call on its own is safe
    assert {d.fix for d in left if d.code == "TL505"} == {FixSafety.UNSAFE}


def test_tl505_leaves_an_import_whose_calls_cannot_be_rewritten(tmp_path: Path) -> None:
    source = "from torch.cuda.amp import autocast\n\nwith autocast(*flags):\n    out = model(x)\n"
    fixed, left = fix(tmp_path, source)
    assert fixed == source
    assert any(d.code == "TL505" and d.fix is None for d in left)


ADAM = """\
import torch
from torch.optim import Adam

opt = Adam(model.parameters(), lr=3e-4, weight_decay=1e-2)
"""


def test_tl402_is_unsafe_and_applied_only_with_unsafe_fixes(tmp_path: Path) -> None:
    safe_only, left = fix(tmp_path, ADAM, frozenset({FixSafety.SAFE}))
    assert safe_only == ADAM
    assert [d.fix for d in left if d.code == "TL402"] == [FixSafety.UNSAFE]
    fixed, _ = fix(tmp_path, ADAM)
    assert fixed == ADAM.replace("import Adam", "import AdamW").replace("= Adam(", "= AdamW(")


def test_tl402_keeps_adam_imported_when_still_used(tmp_path: Path) -> None:
    source = ADAM + "plain = Adam(head.parameters(), lr=1e-3)\n"
    fixed, _ = fix(tmp_path, source)
    assert "from torch.optim import Adam, AdamW\n" in fixed
    assert "opt = AdamW(" in fixed and "plain = Adam(" in fixed


ACCUMULATE = """\
total = 0.0
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    total += loss * x.size(0)  # running sum
"""


def test_tl205_parenthesizes_compound_values(tmp_path: Path) -> None:
    fixed, left = fix(tmp_path, ACCUMULATE, frozenset({FixSafety.SAFE}))
    assert "    total += (loss * x.size(0)).item()  # running sum\n" in fixed
    assert not [d for d in left if d.code == "TL205"]


DISTRIBUTED_TOTAL = """\
import torch.distributed as dist

def train_epoch(model, loader, optimizer, loss_fn):
    running_loss = 0
    for batch in loader:
        loss = loss_fn(model(batch["tokens"]), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running_loss += loss
    dist.all_reduce(running_loss)
    return running_loss.detach().item() / len(loader)

print(train_epoch(model, loader, optimizer, loss_fn))
"""


def test_tl205_detaches_a_total_used_as_a_tensor(tmp_path: Path) -> None:
    # torchtune's shape: ``.item()`` would make the total a float, and ``all_reduce`` and
    # ``.detach()`` would then raise.
    fixed, _ = fix(tmp_path, DISTRIBUTED_TOTAL, frozenset({FixSafety.SAFE}))
    assert fixed == DISTRIBUTED_TOTAL.replace("running_loss += loss\n", "running_loss += loss.detach()\n")


def test_tl205_makes_a_number_of_a_total_only_logged(tmp_path: Path) -> None:
    source = DISTRIBUTED_TOTAL.replace("    dist.all_reduce(running_loss)\n", "").replace(
        "return running_loss.detach().item() / len(loader)", 'print(f"{running_loss / len(loader):.4f}")'
    )
    fixed, _ = fix(tmp_path, source, frozenset({FixSafety.SAFE}))
    assert fixed == source.replace("running_loss += loss\n", "running_loss += loss.item()\n")


@pytest.mark.parametrize(
    "use",
    [
        "(running_loss / len(loader)).backward()",
        "return running_loss\n\nepoch_loss = train_epoch(model, loader, optimizer, loss_fn)\nepoch_loss.backward()",
        "losses.append(running_loss)\n    torch.stack(losses).sum().backward()",
    ],
    ids=["derived", "caller", "container"],
)
def test_tl205_offers_no_fix_for_a_backpropagated_total(tmp_path: Path, use: str) -> None:
    source = "import torch\n\nlosses = []\n" + DISTRIBUTED_TOTAL.split("    dist.all_reduce")[0] + f"    {use}\n"
    fixed, left = fix(tmp_path, source)
    assert fixed == source
    assert [d.fix for d in left if d.code == "TL205"] == [None]


def test_tl205_total_returned_to_unseen_callers_is_an_unsafe_detach(tmp_path: Path) -> None:
    source = DISTRIBUTED_TOTAL.split("    dist.all_reduce")[0] + "    return running_loss\n"
    safe_only, left = fix(tmp_path, source, frozenset({FixSafety.SAFE}))
    assert safe_only == source and [d.fix for d in left if d.code == "TL205"] == [FixSafety.UNSAFE]
    assert fix(tmp_path, source)[0] == source.replace("running_loss += loss\n", "running_loss += loss.detach()\n")


SOFTMAX = """\
import torch.nn.functional as F

for x, y in loader:
    logits = model(x)
    probs = F.softmax(logits, dim=1)
    loss = F.cross_entropy(probs, y)
    loss.backward()
"""


def test_tl101_drops_a_softmax_used_only_by_the_loss(tmp_path: Path) -> None:
    fixed, left = fix(tmp_path, SOFTMAX)
    assert "    probs = logits\n" in fixed
    assert not [d for d in left if d.code == "TL101"]


def test_tl101_keeps_a_softmax_used_elsewhere(tmp_path: Path) -> None:
    source = SOFTMAX + "    accuracy = (probs.argmax(1) == y).float().mean()\n"
    fixed, left = fix(tmp_path, source)
    assert fixed == source
    assert [d.fix for d in left if d.code == "TL101"] == [None]


def test_tl102_drops_an_inline_sigmoid(tmp_path: Path) -> None:
    source = "import torch\nimport torch.nn.functional as F\n\nloss = F.binary_cross_entropy_with_logits(torch.sigmoid(model(x)), y)\n"
    fixed, _ = fix(tmp_path, source)
    assert fixed == "import torch\nimport torch.nn.functional as F\n\nloss = F.binary_cross_entropy_with_logits(model(x), y)\n"


PLATEAU = """\
import torch

scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
for epoch in range(10):
    train_one_epoch()
    val_loss = evaluate()
    scheduler.step()
"""


def test_tl304_passes_the_evident_metric(tmp_path: Path) -> None:
    fixed, left = fix(tmp_path, PLATEAU)
    assert "    scheduler.step(val_loss)\n" in fixed
    assert not [d for d in left if d.code == "TL304"]


def test_tl304_without_an_evident_metric_is_not_fixed(tmp_path: Path) -> None:
    source = PLATEAU.replace("val_loss = evaluate()", "evaluate()")
    fixed, left = fix(tmp_path, source)
    assert fixed == source
    assert [d.fix for d in left if d.code == "TL304"] == [None]


def test_noqa_findings_are_not_fixed(tmp_path: Path) -> None:
    source = ADAM.replace("weight_decay=1e-2)", "weight_decay=1e-2)  # noqa: TL402")
    assert fix(tmp_path, source)[0] == source


def test_cli_fix_writes_safe_fixes_and_diff_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("train.py").write_text(AUTOCAST + ADAM)
    runner = CliRunner()
    diff = runner.invoke(main, ["check", "train.py", "--diff", "--no-cache"])
    assert diff.exit_code == 1
    assert "+from torch.amp import autocast  # old API" in diff.output
    assert "AdamW" not in diff.output  # unsafe: needs --unsafe-fixes
    assert Path("train.py").read_text() == AUTOCAST + ADAM
    fixed = runner.invoke(main, ["check", "train.py", "--fix", "--no-cache", "--format", "concise"])
    assert fixed.exit_code == 1  # TL402 (and TL401) remain
    assert Path("train.py").read_text() == AUTOCAST_FIXED + ADAM
    # TL402's fix is unsafe: shown as available with --unsafe-fixes, not marked [*].
    assert "TL505" not in fixed.output and "TL402 Adam" in fixed.output and "TL402 [*]" not in fixed.output
    assert "1 hidden fix can be enabled with the `--unsafe-fixes` option" in fixed.output
    unsafe = runner.invoke(main, ["check", "train.py", "--fix", "--unsafe-fixes", "--no-cache", "--select", "TL402"])
    assert unsafe.exit_code == 0
    assert "AdamW(" in Path("train.py").read_text()


@pytest.mark.parametrize("ending", ["\r\n", "\r"], ids=["crlf", "bare-cr"])
def test_fix_keeps_line_endings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("train.py").write_bytes(AMP.replace("\n", ending).encode())
    CliRunner().invoke(main, ["check", "train.py", "--fix", "--unsafe-fixes", "--no-cache"])
    assert Path("train.py").read_bytes() == AMP_FIXED.replace("\n", ending).encode()


def test_rules_command_shows_fix_safety() -> None:
    output = CliRunner().invoke(main, ["rules"], terminal_width=250).output
    assert re.search(r"TL505 .*safe", output) and re.search(r"TL402 .*unsafe", output)


def test_rule_pages_state_the_fix_safety() -> None:
    for page in pages():
        code = page.name.split("-", 1)[0]
        stated = re.search(r"\*\*Autofix:\*\* (\w+)", page.read_text(encoding="utf-8"))
        assert stated is not None, f"{page.name} has no **Autofix:** line"
        rule = rule_by_code(code)
        assert rule is not None
        assert stated.group(1) == (fix_safety_of(rule) or "none"), page.name


def test_tl207_materialises_only_when_the_first_use_follows(tmp_path: Path) -> None:
    source = """\
import torch

def adjacent(model):
    params = model.parameters()
    optimizer = torch.optim.SGD(params, lr=0.1)
    torch.nn.utils.clip_grad_norm_(params, 1.0)

def apart(model):
    params = model.parameters()
    model.head.requires_grad_(False)
    optimizer = torch.optim.SGD(params, lr=0.1)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
"""
    fixed, left = fix(tmp_path, source, frozenset({FixSafety.SAFE}))
    assert "    params = list(model.parameters())\n    optimizer" in fixed
    assert "    params = model.parameters()\n    model.head" in fixed  # what SGD gets could change
    assert [d.line for d in left if d.code == "TL207"] == [12]


def test_tl210_detaches_tuple_states_and_is_unsafe(tmp_path: Path) -> None:
    source = """\
import torch.nn as nn

lstm = nn.LSTM(8, 16)
h, c = h0, c0
for x, y in loader:
    out, (h, c) = lstm(x, (h, c))
    loss = criterion(out, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""
    assert fix(tmp_path, source, frozenset({FixSafety.SAFE}))[0] == source
    fixed, left = fix(tmp_path, source)
    assert "out, (h, c) = lstm(x, (h.detach(), c.detach()))" in fixed
    assert not [d for d in left if d.code == "TL210"]


def test_tl211_detaches_a_stored_loss_but_not_a_dict_holding_it(tmp_path: Path) -> None:
    source = """\
import torch.nn.functional as F

losses, records = [], []
for x, y in loader:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss * x.size(0))
    record = {"loss": loss}
    records.append(record)
"""
    fixed, left = fix(tmp_path, source)
    assert "losses.append(loss.detach() * x.size(0))" in fixed
    assert "records.append(record)" in fixed
    assert [d.line for d in left if d.code == "TL211"] == [11]


def test_tl803_calls_the_wrapper_instead_of_its_module(tmp_path: Path) -> None:
    source = """\
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

model = DDP(net, device_ids=[0])
for x, y in loader:
    loss = criterion(model.module.forward(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""
    assert fix(tmp_path, source, frozenset({FixSafety.SAFE}))[0] == source
    fixed, left = fix(tmp_path, source)
    assert "loss = criterion(model(x), y)" in fixed
    assert not [d for d in left if d.code == "TL803"]


PLUGIN = '''\
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Report, Rule


class PrintCall(Rule):
    code = "PLG101"
    name = "print-call"
    summary = message = "print() in training code"
    triggers = ("print",)
    fix_safety = FixSafety.{safety}

    def check(self, ctx):
        for call in ctx.model.calls_by_name.get("print", []):
            yield Report(call)

    def fix(self, node, ctx):
        return Fix([Edit(node.func, node.func.with_changes(value="log"))])
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed third-party package whose ``trainlint.rules`` entry point names a rule
    module with a fix; the rule index is kept in a fresh cache folder."""
    site = tmp_path / "site"
    (site / "plg-0.1.dist-info").mkdir(parents=True)
    (site / "plg-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: plg\nVersion: 0.1\n")
    (site / "plg-0.1.dist-info" / "entry_points.txt").write_text("[trainlint.rules]\nplg = plg_rules\n")
    module = site / "plg_rules.py"
    module.write_text(PLUGIN.format(safety="SAFE"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _forget_rules()
    yield module
    _forget_rules()


def _forget_rules() -> None:
    sys.modules.pop("plg_rules", None)
    all_rules.cache_clear()
    rule_index.cache_clear()


def test_a_plugin_rule_ships_its_fix(tmp_path: Path, plugin: Path) -> None:
    fixed, left = fix(tmp_path, "print('step')\n", frozenset({FixSafety.SAFE}))
    assert fixed == "log('step')\n" and not [d for d in left if d.code == "PLG101"]
    assert rule_index()["PLG101"].fix == "safe"


def test_rule_index_follows_a_changed_rule_module(plugin: Path) -> None:
    assert rule_index()["PLG101"].fix == "safe"
    plugin.write_text(PLUGIN.format(safety="UNSAFE"))  # a fix's safety edited in its rule module
    _forget_rules()  # a new process: the index is read back from its snapshot, if still valid
    assert rule_index()["PLG101"].fix == "unsafe"


KEPT = """\
import torch
import torch.nn.functional as F

def train(model, loader, optimizer):
    losses = []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward(retain_graph=True)
        optimizer.step()
        losses.append(loss)
"""


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("    print(torch.stack(losses).mean().item())\n", FixSafety.SAFE),
        ("    return losses\n", FixSafety.UNSAFE),  # to callers the analysis does not see
        ("    torch.stack(losses).sum().backward()\n", None),  # detached, this would raise
    ],
    ids=["logged", "returned", "backpropagated"],
)
def test_tl211_fix_safety_follows_the_containers_uses(tmp_path: Path, tail: str, expected: FixSafety | None) -> None:
    _, left = fix(tmp_path, KEPT + tail, frozenset())
    assert [d.fix for d in left if d.code == "TL211"] == [expected]


@pytest.mark.parametrize(
    ("value", "expected"), [("False", FixSafety.SAFE), ("not args.finetune", FixSafety.SAFE), ("args.freeze", FixSafety.UNSAFE)]
)
def test_tl405_fix_is_safe_only_for_a_bool(tmp_path: Path, value: str, expected: FixSafety) -> None:
    source = f"for p in model.backbone.parameters():\n    p.require_grad = {value}\n"
    _, left = fix(tmp_path, source, frozenset())
    assert [d.fix for d in left if d.code == "TL405"] == [expected]
