"""Linting Jupyter notebooks: cell mapping, IPython syntax, malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.config import Settings
from trainlint.diagnostics import Diagnostic
from trainlint.fixing import FixSafety
from trainlint.linter import Linter
from trainlint.notebook import notebook_source
from trainlint.sources import SourceError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "notebooks"


def _lint(path: Path, select: tuple[str, ...] = ()) -> list[Diagnostic]:
    result = Linter(Settings(select=select, root=path.parent)).lint_paths([path])
    assert not result.errors, result.errors
    return result.diagnostics


def _notebook(tmp_path: Path, *cells: dict[str, object]) -> Path:
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def _code(source: str | list[str]) -> dict[str, object]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "source": source}


def _markdown(text: str) -> dict[str, object]:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def test_training_notebook_findings_carry_cell_and_line() -> None:
    found = [(d.code, d.cell, d.line) for d in _lint(FIXTURES / "train_mnist.ipynb")]
    assert found == [("TL101", 7, 8), ("TL801", 9, 2)]


def test_malformed_notebook_is_a_parse_error() -> None:
    [diagnostic] = _lint(FIXTURES / "malformed.ipynb")
    assert diagnostic.code == "TL000" and "not valid JSON" in diagnostic.message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"metadata": {}}', "no 'cells'"),
        ('{"cells": {}}', "not a list"),
        ('{"cells": [{"source": "x"}]}', "cell 1"),
        ('{"cells": [{"cell_type": "code", "source": 3}]}', "neither a string nor a list"),
        ('{"cells": 5}', "not a list"),
        ('{"worksheets": [{"cells": 5}]}', "not a list"),
        ('{"cells": [], "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"cells": [], "metadata": {"n": ' + "9" * 5000 + "}}", "not valid JSON"),
        ('{"cells": [{"cell_type": "code", "source": "x = \'\\ud800\'"}]}', "not valid Unicode"),
    ],
)
def test_wrong_structure_is_reported_not_raised(content: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        notebook_source(Path("x.ipynb"), content.encode())


def test_ipython_syntax_keeps_line_numbers(tmp_path: Path) -> None:
    lines = [
        "%load_ext autoreload\n",
        "!pip install \\\n",
        "    timm\n",
        "files = !ls\n",
        "torch.load?\n",
        "pip install timm\n",
        "for epoch in range(3):\n",
        "    %time step()\n",
        "import torch\n",
        "torch.load('x.pt', weights_only=False)\n",
    ]
    path = _notebook(tmp_path, _markdown("# title"), _code(lines))
    found = [(d.code, d.cell, d.line) for d in _lint(path)]
    assert found == [("TL801", 2, 10)]


def test_percent_and_bang_inside_open_brackets_and_strings_are_python(tmp_path: Path) -> None:
    # 3-min-pytorch: a `%` formatting operator starting a continuation line is no magic.
    lines = [
        'print("train: %d, test: %d"\n',
        "      % (len(trainset), len(testset)))\n",
        'usage = """\n',
        "!not a shell line\n",
        '"""\n',
        "total = 7 \\\n",
        "    % 4\n",
        "%matplotlib inline\n",
        "import torch\n",
        "torch.load('x.pt', weights_only=False)\n",
    ]
    path = _notebook(tmp_path, _code(lines))
    assert [(d.code, d.cell, d.line) for d in _lint(path)] == [("TL801", 1, 10)]


def test_cell_magics(tmp_path: Path) -> None:
    bash = _code("%%bash\necho $((1 + (2))\n")
    timed = _code("%%time\nimport torch\nstate = torch.load('x.pt', weights_only=False)\n")
    path = _notebook(tmp_path, bash, timed)
    assert [(d.cell, d.line) for d in _lint(path)] == [(2, 3)]


def test_syntax_error_blames_its_cell(tmp_path: Path) -> None:
    path = _notebook(tmp_path, _code("import torch\nx = (1,\n"), _markdown("text"), _code("y = 2\nz = 3\n"))
    for select in ((), ("TL801",)):  # without and with a rule that needs the libcst parse
        [error] = _lint(path, select + ("TL000",) if select else ())
        assert (error.code, error.cell, error.line) == ("TL000", 1, 2)


def test_empty_cells_and_other_languages(tmp_path: Path) -> None:
    path = _notebook(tmp_path, _code(""), _code(["import torch\n", "torch.load('a', weights_only=False)"]))
    assert [(d.cell, d.line) for d in _lint(path)] == [(2, 2)]
    r_notebook = {"cells": [_code("library(torch)\n")], "metadata": {"kernelspec": {"language": "R"}}}
    assert notebook_source(Path("r.ipynb"), json.dumps(r_notebook).encode()).text == ""


def test_json_output_has_cell_only_for_notebooks(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import torch\ntorch.load('a', weights_only=False)\n")
    notebook = _notebook(tmp_path, _code("import torch\ntorch.load('a', weights_only=False)\n"))
    [from_script] = _lint(script)
    [from_notebook] = _lint(notebook)
    assert "cell" not in from_script.to_dict()
    assert from_notebook.to_dict()["cell"] == 1


# -- fixes, cell by cell ----------------------------------------------------------------------

IMPORT_CELL = ["import torch\n", "from torch.cuda.amp import GradScaler, autocast\n"]
TRAIN_CELL = [
    "%matplotlib inline\n",
    "scaler = GradScaler(enabled=True)\n",
    "with autocast():\n",
    "    out = model(x)",
]


def _training_notebook() -> dict[str, object]:
    output = {"name": "stdout", "output_type": "stream", "text": ["lr 1.0e-05, café\n"]}
    cells = [
        _markdown("# Entraînement"),
        {**_code(IMPORT_CELL), "execution_count": 1, "metadata": {"tags": ["setup"]}},
        {**_code(["print(torch.__version__)"]), "execution_count": 2, "outputs": [output]},
        {**_code(TRAIN_CELL), "execution_count": None},
    ]
    return {"cells": cells, "metadata": {"kernelspec": {"language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}


def test_fix_rewrites_only_the_changed_cells_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Written as nbformat does (sorted keys, one-space indent, raw UTF-8); a JSON round trip
    # would change bytes elsewhere (1.0e-05 stays as written only when left alone).
    original = json.dumps(_training_notebook(), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    original = original.replace("1.0e-05", "1.0e-5")
    monkeypatch.chdir(tmp_path)
    Path("train.ipynb").write_text(original, encoding="utf-8")
    options = ["--no-cache", "--unsafe-fixes", "--select", "TL505"]
    diff = CliRunner().invoke(main, ["check", "train.ipynb", "--diff", *options])
    assert diff.exit_code == 1 and '+    "from torch.amp import GradScaler, autocast\\n"' in diff.output
    assert Path("train.ipynb").read_text(encoding="utf-8") == original
    fixed = CliRunner().invoke(main, ["check", "train.ipynb", "--fix", *options])
    assert fixed.exit_code == 0, fixed.output
    expected = (
        original.replace('"from torch.cuda.amp import GradScaler, autocast\\n"', '"from torch.amp import GradScaler, autocast\\n"')
        .replace('"scaler = GradScaler(enabled=True)\\n"', '"scaler = GradScaler(\\"cuda\\", enabled=True)\\n"')
        .replace('"with autocast():\\n"', '"with autocast(\\"cuda\\"):\\n"')
    )
    assert Path("train.ipynb").read_text(encoding="utf-8") == expected


def test_fix_keeps_a_string_source_and_the_files_layout(tmp_path: Path) -> None:
    notebook = {"cells": [_code("".join(IMPORT_CELL) + "".join(TRAIN_CELL))], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    original = json.dumps(notebook, indent=2)
    path.write_text(original)
    result = Linter(Settings(select=("TL505",), root=tmp_path), frozenset(FixSafety)).lint_paths([path])
    [fixed] = result.fixed
    assert fixed.original == original
    assert fixed.fixed == original.replace("torch.cuda.amp import", "torch.amp import").replace(
        "GradScaler(enabled", 'GradScaler(\\"cuda\\", enabled').replace("autocast():", 'autocast(\\"cuda\\"):')
    assert not result.diagnostics


def test_a_fix_spanning_two_cells_is_not_applied(tmp_path: Path) -> None:
    # Each cell alone is not valid Python, but the joined text is: the call starts in one
    # cell and ends in the next, so its rewrite could not be split back into them.
    path = _notebook(tmp_path, _code("import torch\nscaler = torch.cuda.amp.GradScaler(\n"), _code("    65536.0)\n"))
    original = path.read_text()
    result = Linter(Settings(select=("TL505",), root=tmp_path), frozenset({FixSafety.SAFE})).lint_paths([path])
    assert [(d.code, d.cell, d.fix) for d in result.diagnostics] == [("TL505", 1, None)]
    assert not result.fixed and path.read_text() == original


def test_unused_noqa_is_removed_in_its_cell(tmp_path: Path) -> None:
    path = _notebook(tmp_path, _markdown("m"), _code(["%time x = 1\n", "y = 2  # noqa: TL101\n"]))
    result = Linter(Settings(extend_select=("TL901",), root=tmp_path), frozenset({FixSafety.SAFE})).lint_paths([path])
    [fixed] = result.fixed
    assert json.loads(fixed.fixed)["cells"][1]["source"] == ["%time x = 1\n", "y = 2\n"]


def test_stdin_fix_prints_the_fixed_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    original = json.dumps(_training_notebook(), indent=1)
    result = CliRunner().invoke(main, ["check", "-", "--stdin-filename", "nb.ipynb", "--fix", "--unsafe-fixes", "--select", "TL505"], input=original)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["cells"][1]["source"][1] == "from torch.amp import GradScaler, autocast\n"
