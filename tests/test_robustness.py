"""Nothing lost: input too deep to parse is a TL000, valid deep code is analysed, a worker
crash costs only its file, the cache never keeps a result computed from content that has
changed, and fixes keep bare-CR line endings (the reproducers of issue 14)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from trainlint.analysis import project as project_module
from trainlint.analysis.parsing import MAX_BRACKET_DEPTH, MAX_EXPRESSION_DEPTH, NestingError, parse
from trainlint.config import Settings
from trainlint.fixing import FixSafety
from trainlint.linter import Linter, LintResult
from trainlint.runner import RunOptions, run

# A training loop with findings (TL101, TL201), so that every rule runs on what follows.
LOOP = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss = F.cross_entropy(F.softmax(model(x), dim=1), y)
    loss.backward()
    opt.step()
"""
DEEP_PARENS = LOOP + "x = " + "(" * 1300 + "1" + ")" * 1300 + "\n"
LONG_SUM = LOOP + "x = " + " + ".join(["loss"] * 10_000) + "\n"
ELIFS = LOOP + "if x == 0:\n    pass\n" + "".join(f"elif x == {i}:\n    y = {i}\n" for i in range(1, 1000))
METHOD_CHAIN = "t" + ".f()" * 3000 + "\n"


def findings(result: LintResult) -> list[tuple[str, str]]:
    return sorted((d.path, d.code) for d in result.diagnostics)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(LOOP)
    return tmp_path


@pytest.mark.parametrize("jobs", [1, 2])
def test_input_too_deep_to_parse_is_a_tl000_and_the_run_goes_on(folder: Path, jobs: int) -> None:
    """Both segfaulted the parser, and in a folder the whole run was lost."""
    (folder / "parens.py").write_text(DEEP_PARENS)
    (folder / "long_sum.py").write_text(LONG_SUM)
    result = run([folder], Settings(root=folder), RunOptions(jobs=jobs, cache=False))
    assert not result.errors
    assert findings(result) == [
        ("long_sum.py", "TL000"), ("parens.py", "TL000"),
        ("train.py", "TL101"), ("train.py", "TL201"),
    ]
    messages = {d.path: (d.message, d.line) for d in result.diagnostics if d.code == "TL000"}
    assert messages["parens.py"] == (f"too many nested parentheses (more than {MAX_BRACKET_DEPTH} levels)", 11)
    assert messages["long_sum.py"][0].startswith("expression nested too deeply to analyse")


def test_valid_code_with_an_if_and_999_elifs_is_analysed(folder: Path) -> None:
    (folder / "train.py").write_text(ELIFS)
    result = Linter(Settings(root=folder)).lint_file_safely(folder / "train.py")
    assert not result.errors
    assert findings(result) == [("train.py", "TL101"), ("train.py", "TL201")]


def test_a_method_chain_cpython_cannot_parse(folder: Path) -> None:
    """Analysed: refused by the pre-scan. Not analysed (no rule applies): checked for
    syntax errors by CPython, whose parser gives up or (on a deep stack) succeeds."""
    (folder / "train.py").write_text(LOOP + "x = " + METHOD_CHAIN)
    (folder / "plain.py").write_text("x = " + METHOD_CHAIN)
    linter = Linter(Settings(root=folder))
    analysed = linter.lint_file_safely(folder / "train.py")
    assert not analysed.errors
    assert [d.message for d in analysed.diagnostics if d.code == "TL000"][0].startswith("expression nested too deeply")
    plain = linter.lint_file_safely(folder / "plain.py")
    assert not plain.errors and all(d.code == "TL000" for d in plain.diagnostics)


def test_the_pre_scan_refuses_exactly_past_its_limits() -> None:
    parse("x = " + "(" * MAX_BRACKET_DEPTH + ")" * MAX_BRACKET_DEPTH + "\n")
    with pytest.raises(NestingError, match="parentheses"):
        parse("x = " + "(" * (MAX_BRACKET_DEPTH + 1) + ")" * (MAX_BRACKET_DEPTH + 1) + "\n")
    parse("x = " + "+".join(["a"] * MAX_EXPRESSION_DEPTH) + "\n")
    with pytest.raises(NestingError, match="expression"):
        parse("x = " + "+".join(["a"] * (MAX_EXPRESSION_DEPTH + 2)) + "\n")
    with pytest.raises(NestingError, match="expression"):  # calls cost more than operators
        parse("x = t" + ".f()" * (MAX_EXPRESSION_DEPTH // 4 + 1) + "\n")
    # Nesting inside f-string replacement fields counts too.
    with pytest.raises(NestingError, match="parentheses"):
        parse('x = f"{' + "(" * 300 + ")" * 300 + '}"\n')
    with pytest.raises(NestingError, match="expression"):
        parse('x = f"{' + "+".join(["a"] * 3000) + '}"\n')


@pytest.mark.parametrize(
    "text",
    [
        "x = [" + ", ".join(["-1.5e-3"] * 2000) + "]\n",  # a long table: flat, not deep
        "x = {" + ", ".join(f"'k{i}': a.b.c + 1" for i in range(500)) + "}\n",
        "x = '" + "(" * 5000 + "'  # (((\n",  # brackets in strings and comments
        'x = f"' + "-" * 3000 + '{a}"\n',  # the literal part of an f-string
        "x = (" + " ".join(["'piece'"] * 2500) + ")\n",  # adjacent strings (pydoc's topics.py)
    ],
)
def test_the_pre_scan_accepts_long_flat_code(text: str) -> None:
    parse(text)


# Run in a fresh interpreter: what earlier tests left in this process (signal handlers
# installed by the libraries they imported) must not decide how a worker dies.
CRASHING_RUN = """\
import ctypes, json, os, signal, sys
from pathlib import Path
from trainlint.config import Settings
from trainlint.linter import Linter
from trainlint.runner import RunOptions, run

original = Linter.lint_file

def lint_file(linter, path, data=None):
    if path.name == "segfault.py":
        ctypes.string_at(0)
    if path.name == "killed.py":
        os.kill(os.getpid(), signal.SIGKILL)
    return original(linter, path, data)

Linter.lint_file = lint_file
folder = Path(sys.argv[1])
result = run([folder], Settings(root=folder), RunOptions(jobs=int(sys.argv[2]), cache=False))
print(json.dumps({
    "files": result.files,
    "findings": sorted({d.path for d in result.diagnostics}),
    "errors": {e.path: e.message for e in result.errors},
}))
"""


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="workers must inherit the patch")
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_worker_crash_costs_only_its_file(folder: Path, jobs: int) -> None:
    """A native crash (a segfault) and a killed worker: each other file keeps its findings,
    with --jobs 1 too (the main process never runs the parser)."""
    for name in ("a.py", "segfault.py", "killed.py", "z.py"):
        (folder / name).write_text(LOOP)
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(folder), str(jobs)], capture_output=True, text=True, timeout=120, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["files"] == 5
    assert result["findings"] == ["a.py", "train.py", "z.py"]
    errors = result["errors"]
    assert errors.keys() == {"segfault.py", "killed.py"}
    assert "Segmentation fault" in errors["segfault.py"] and "killed" in errors["killed.py"]


MODEL = """\
import torch.nn as nn
import torch.nn.functional as F

class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=1)
"""
TRAIN = """\
import torch.nn as nn
from models import Classifier

model = Classifier()
criterion = nn.CrossEntropyLoss()
for images, labels in loader:
    loss = criterion(model(images), labels)
"""


def test_an_import_edited_during_the_run_leaves_no_stale_entry(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """models.py is fixed right after the analysis of train.py read it: the entry must
    record the hash of what was read, so the next run analyses train.py again."""
    (folder / "models.py").write_text(MODEL)
    (folder / "train.py").write_text(TRAIN)
    settings = Settings(root=folder, select=("TL101",))
    original = project_module._parse_file

    def parse_then_edit(path: Path, mtime_ns: int, size: int) -> tuple[object, str]:
        parsed = original(path, mtime_ns, size)
        if path.name == "models.py":
            path.write_text(MODEL.replace("F.softmax(self.fc(x), dim=1)", "self.fc(x)"))
        return parsed

    monkeypatch.setattr(project_module, "_parse_file", parse_then_edit)
    options = RunOptions(jobs=1, isolated=False)
    during = run([Path("train.py")], settings, options)
    assert findings(during) == [("train.py", "TL101")]  # computed from the old models.py
    monkeypatch.setattr(project_module, "_parse_file", original)
    after = run([Path("train.py")], settings, options)
    assert findings(after) == findings(run([Path("train.py")], settings, RunOptions(jobs=1, cache=False))) == []


def test_fixes_keep_a_final_bare_cr(folder: Path) -> None:
    text = "import torch.nn as nn\rimport torch.nn.functional as F\rcrit = nn.CrossEntropyLoss()\rloss = crit(F.softmax(x, dim=1), y)\r"
    (folder / "train.py").write_bytes(text.encode())
    result = run([Path("train.py")], Settings(root=folder), RunOptions(jobs=1, cache=False, fixes=frozenset(FixSafety)))
    [fixed] = result.fixed
    assert fixed.fixed == text.replace("F.softmax(x, dim=1)", "x")
