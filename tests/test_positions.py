"""Positions computed statement by statement are exactly libcst's PositionProvider's."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import parse

SAMPLES = {
    "plain": "import torch\n\nx = torch.zeros(3)\ny = x + 1\n",
    "tabs": "class A:\n\tdef f(self):\n\t\tif x:\n\t\t\treturn 1\n\t\treturn 2\n",
    "tab then spaces": "if a:\n\tif b:\n\t    x = 1\n\ty = 2\nz = 3\n",
    "unicode": "naïve = '日本語 😀'\nπ = naïve + 'é'  # ünïcode\nfor 名前 in [π]:\n    print(名前, 'ß')\n",
    "crlf": "import torch\r\n\r\ndef f(x):\r\n    return x + 1\r\n\r\ny = f(2)\r\n",
    "bare cr": "import torch\rdef f(x):\r    return x\ry = f(1)\r",
    "continuation": "x = 1 + \\\n    2 + \\\n    3\nif x and \\\n        x:\n    y = [1,\n         2]\n",
    "f-strings": 'name = "a"\nx = f"{name!r:>{10}} {f\'{name}\'} {{literal}}"\ny = rf"\\d{name}"\n',
    "decorators": "@property\n# between\n@torch.no_grad()\n\n@deco(\n    1,\n)\ndef f():\n    pass\n\n\n@dataclass\nclass C:\n    x: int = 1\n",
    "comments": "# header\n\n# before a\na = 1  # trailing\n    # indented comment\n\ndef f():\n    x = 1\n        # deeper\n    # same\n\n  # odd\ny = 2\n# footer\n",
    "form feed": "x = 1\n\x0c\ndef f():\n    return x\n\x0c\ny = 2\n",
    # libcst drops a form feed that starts a statement's line: its positions differ from
    # the text's, and only rendering the whole module reproduces them.
    "form feed before a statement": "x = 1\n\x0cy = 2\n",
    "semicolons": "a = 1; b = 2; c = a + b\nif a: x = 1; y = 2\nelse: z = 3\n",
    "compound": (
        "async def f():\n    async with a as b, c:\n        async for x in y:\n            await x\n"
        "try:\n    pass\nexcept* ValueError:\n    pass\n"
        "try:\n    x = 1\nexcept (A, B) as e:\n    raise\nelse:\n    pass\nfinally:\n    del x\n"
        "while x:\n    break\nelse:\n    continue\n"
        "with (open(a) as f,\n      open(b) as g):\n    pass\n"
    ),
    "match": (
        "match command.split():\n    case [action]:\n        x = 1\n    case [action, obj] if obj:\n        y = 2\n"
        "    case Point(x=0, y=0) | {'k': _}:\n        pass\n    case _:\n        pass\n"
        "case = 1\nmatch = case\n"
    ),
    "no final newline": "def f():\n    return 1\nx = f()",
    "comment at end without newline": "x = 1\n# end",
    "elif chain": "if a:\n    x = 1\nelif b:\n    x = 2\nelif c:  # c\n    x = 3\nelse:\n    x = 4\n",
    "lambda walrus global": "f = lambda a, *b, c=1, **d: (a, b)\nif (n := len(f)) > 1:\n    global g\n    g = n\n",
    "docstrings": '"""Module."""\n\n\nclass A:\n    """Class.\n\n    Long.\n    """\n\n    def f(self):\n        \'\'\'Method.\'\'\'\n        return """x\ny"""\n',
    "empty": "",
    "only comments": "# a\n# b\n",
    "strings with hashes and quotes": "x = '#' + \"'\" + '\"' + '''a\n# not a comment\n'''\ny = \"\\\"\" # c\n",
}


def nodes_of(tree: cst.Module) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []

    class Collect(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            found.append(node)
            return True

    tree.visit(Collect())
    return found


def assert_same_positions(text: str) -> ModuleModel:
    parsed = parse(text)
    model = ModuleModel(Path("sample.py"), parsed, "sample", "")
    expected = MetadataWrapper(parsed.tree, unsafe_skip_copy=True).resolve(PositionProvider)
    # The nodes a rule can report: those the index knows (tokens and whitespace have no parent).
    reportable = [node for node in nodes_of(parsed.tree) if model.parent_of(node) is not None]
    for node in reportable:
        assert model.span_of(node) == expected[node], (type(node).__name__, text)
    return model


@pytest.mark.parametrize("name", SAMPLES)
def test_positions_match_position_provider(name: str) -> None:
    model = assert_same_positions(SAMPLES[name])
    # ... and they came from rendering single statements, not the whole module.
    assert (model._positions._whole is None) == (name != "form feed before a statement")


def test_a_scan_that_disagrees_with_the_tree_falls_back_to_the_whole_module() -> None:
    parsed = parse("x = 1\ny = 2\n")
    parsed.statements.pop()  # as if the scan had missed a statement
    model = ModuleModel(Path("sample.py"), parsed, "sample", "")
    expected = MetadataWrapper(parsed.tree, unsafe_skip_copy=True).resolve(PositionProvider)
    for node in nodes_of(parsed.tree):
        if model.parent_of(node) is not None:
            assert model.span_of(node) == expected[node]
    assert model._positions._whole is not None
