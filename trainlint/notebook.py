"""Jupyter notebooks as analysable Python text.

Code cells are joined in order, one after the other, so that names defined in one cell are
seen by the next. IPython syntax that is not Python is blanked *line for line* (replaced by
``pass`` at the line's indentation), so every line of the joined text still maps to the
same line of its cell:

- line magics (``%matplotlib inline``, ``%pip install ...``) and shell lines (``!nvidia-smi``),
  including ``files = !ls`` assignments and backslash-continued lines;
- help lines (``model?``, ``??torch.load``);
- automagic package installs without a prefix (``pip install timm``);
- for cell magics, only the ``%%`` line when the body is still Python run by the kernel
  (``%%time``, ``%%timeit``, ``%%capture``, ...); any other cell magic (``%%bash``,
  ``%%writefile``, ``%%html``, ...) blanks the whole cell, whose body is not executed Python.

Markdown and raw cells are skipped but still count when numbering cells, as Jupyter does.

Fixes are written back cell by cell (:func:`with_cells`): only the ``source`` of a changed
cell is replaced in the JSON text, so outputs, metadata, execution counts and the file's
layout stay as they were, and the IPython lines blanked for the analysis come back.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainlint.sources import Source, SourceError

# Cell magics whose body the kernel runs as Python.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit", "mprun", "skip"})

_LINE_MAGIC = re.compile(r"^\s*(?:[\w.,\s\[\]()*]+=\s*)?[%!]")
_HELP = re.compile(r"^\s*(?:\?{1,2}[\w.]+|[\w.\[\]()]+\?{1,2})\s*$")
_AUTOMAGIC_INSTALL = re.compile(r"^\s*(?:pip|conda|mamba)\s+[A-Za-z]")
_CELL_MAGIC = re.compile(r"^\s*%%(?P<name>\w+)")

Cell = tuple[int, list[str]]  # (1-based number among all cells, lines of Python)


def notebook_source(path: Path, data: bytes) -> Source:
    """The Python text of a notebook's code cells; raises :class:`SourceError` when the
    file is not a readable notebook."""
    try:
        document = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"notebook is not valid UTF-8: {exc}") from None
    notebook = _load(document)
    if not _is_python(notebook):
        return Source(path, "", document=document)
    text_lines: list[str] = []
    cells: list[tuple[int, int]] = []
    for number, lines in _code_cells(notebook):
        if lines:
            cells.append((number, len(text_lines) + 1))
            text_lines.extend(lines)
    return Source(path, "".join(f"{line}\n" for line in text_lines), cells, document)


def cell_texts(source: Source) -> dict[int, str]:
    """The Python text of each code cell in ``source.text``, by cell number."""
    offsets = _cell_offsets(source)
    return {number: source.text[start:end] for number, (start, end) in offsets.items()}


def cell_of_change(source: Source, cell: int, changed: str) -> str | None:
    """The new text of ``cell`` in ``changed``, a version of ``source.text`` in which only
    that cell's text differs; ``None`` when text outside the cell changed too."""
    start, end = _cell_offsets(source)[cell]
    tail = len(source.text) - end
    if len(changed) < start + tail or changed[:start] != source.text[:start] or changed[len(changed) - tail :] != source.text[end:]:
        return None
    return changed[start : len(changed) - tail]


def _cell_offsets(source: Source) -> dict[int, tuple[int, int]]:
    """(start, end) character offsets of each code cell's text in ``source.text``."""
    line_starts = [0]
    for match in re.finditer("\n", source.text):
        line_starts.append(match.end())
    bounds = [start for _, start in source.cells] + [len(line_starts)]
    return {
        number: (line_starts[first - 1], line_starts[following - 1])
        for (number, first), following in zip(source.cells, bounds[1:])
    }


def with_cells(source: Source, texts: dict[int, str]) -> str:
    """``source.document`` in which each code cell numbered in ``texts`` holds that Python
    text (as analysed: blanked IPython lines come back from the cell's old text). Nothing
    else in the JSON text changes. A cell whose changed lines include IPython syntax is left
    as it was."""
    document = source.document
    assert document is not None, "not a notebook"
    cells, key = _raw_cells(_load(document))
    try:
        spans = _source_spans(document, key)
    except (ValueError, IndexError):
        return document
    if spans is None or len(spans) != len(cells):
        return document
    for number in sorted(texts, reverse=True):  # from the end: earlier spans stay valid
        span = spans[number - 1]
        old = cells[number - 1].get(key, "")
        restored = _restored(_cell_text(old, number), texts[number])
        if span is None or restored is None:
            continue
        start, end = span
        document = document[:start] + _encoded(restored, document[start:end], isinstance(old, list)) + document[end:]
    return document


def _restored(old: str, new: str) -> str | None:
    """The cell text for the analysed text ``new`` of a cell whose text was ``old``: lines
    unchanged since the analysis keep their old text (IPython syntax included)."""
    old_lines = _lines(old)
    analysed = _python_lines(old)
    new_lines = new.split("\n")[:-1]
    result: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, analysed, new_lines, autojunk=False).get_opcodes():
        if tag == "equal":
            result += old_lines[i1:i2]
        elif old_lines[i1:i2] != analysed[i1:i2]:
            return None  # a fix would rewrite a line of IPython syntax
        else:
            result += new_lines[j1:j2]
    return "\n".join(result) + ("\n" if old.endswith(("\n", "\r")) else "")


def _encoded(text: str, old: str, as_list: bool) -> str:
    """``text`` as the JSON value of a cell's source, in the style of ``old``, the value it
    replaces: a list of lines or one string, with the same separators and escaping."""
    ensure_ascii = old.isascii() and "\\u" in old
    if not as_list:
        return json.dumps(text, ensure_ascii=ensure_ascii)
    lines = re.findall("[^\n]*\n|[^\n]+$", text)
    items = list(_items(old, 0))
    if not lines:
        return "[]"
    if items:
        opening, closing = old[1 : items[0][0]], old[items[-1][1] : -1]
        separator = old[items[0][1] : items[1][0]] if len(items) > 1 else "," + opening
    else:
        opening, closing, separator = "", "", ", "
    return "[" + opening + separator.join(json.dumps(line, ensure_ascii=ensure_ascii) for line in lines) + closing + "]"


# -- positions of values in the JSON text -------------------------------------------------

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"[^,\]}\s]*")


def _source_spans(document: str, key: str) -> list[tuple[int, int] | None] | None:
    """Where each cell's ``key`` value lies in ``document``, in the order of
    :func:`_raw_cells` (``None`` for a cell without one); ``None`` if the layout is not
    the one :func:`_raw_cells` read."""
    top = _skip(document, 0)
    if document[top : top + 1] != "{":
        return None
    members = _members(document, top)
    if "cells" in members:
        lists = [members["cells"][0]]
    elif "worksheets" in members:
        sheets = [start for start, _ in _items(document, members["worksheets"][0]) if document[start] == "{"]
        lists = [found[0] for found in (_members(document, sheet).get("cells") for sheet in sheets) if found is not None]
    else:
        return None
    spans: list[tuple[int, int] | None] = []
    for start in lists:
        if document[start] != "[":
            return None
        for cell, _ in _items(document, start):
            spans.append(_members(document, cell).get(key) if document[cell] == "{" else None)
    return spans


def _skip(text: str, index: int) -> int:
    return _match(_SPACE, text, index).end()


def _match(pattern: re.Pattern[str], text: str, index: int) -> re.Match[str]:
    match = pattern.match(text, index)
    if match is None:
        raise ValueError(f"unexpected JSON at offset {index}")
    return match


def _value_end(text: str, index: int) -> int:
    """The end of the JSON value that starts at ``index`` (scanned without recursion: a
    notebook's outputs may nest deeply)."""
    if text[index] == '"':
        return _match(_STRING, text, index).end()
    if text[index] not in "[{":
        return _match(_SCALAR, text, index).end()
    depth = 0
    for token in _TOKEN.finditer(text, index):
        if token.group() in ("[", "{"):
            depth += 1
        elif token.group() in ("]", "}"):
            depth -= 1
            if depth == 0:
                return token.end()
    raise ValueError("unterminated JSON value")


def _members(text: str, index: int) -> dict[str, tuple[int, int]]:
    """The (start, end) of each member's value of the JSON object at ``index``, by key (the
    last of duplicate keys wins, as in :func:`json.loads`)."""
    members: dict[str, tuple[int, int]] = {}
    index = _skip(text, index + 1)
    while text[index] != "}":
        key = _match(_STRING, text, index)
        start = _skip(text, _skip(text, key.end()) + 1)  # past the colon
        end = _value_end(text, start)
        members[json.loads(key.group())] = (start, end)
        index = _skip(text, end)
        if text[index] == ",":
            index = _skip(text, index + 1)
    return members


def _items(text: str, index: int) -> Iterator[tuple[int, int]]:
    """The (start, end) of each item of the JSON array at ``index``."""
    index = _skip(text, index + 1)
    while text[index] != "]":
        end = _value_end(text, index)
        yield index, end
        index = _skip(text, end)
        if text[index] == ",":
            index = _skip(text, index + 1)


def first_cell_syntax_error(source: Source) -> tuple[str, int, int] | None:
    """(message, line of the joined text, column) of the first code cell that CPython
    cannot parse on its own, or ``None``.

    Parsing the joined text can blame the wrong cell (an unclosed bracket at the end of one
    cell fails in the next); parsing each cell alone always blames the right one.
    """
    lines = [f"{line}\n" for line in source.text.split("\n")[:-1]]
    starts = [start for _, start in source.cells]
    for start, end in zip(starts, [*starts[1:], len(lines) + 1]):
        chunk = "".join(lines[start - 1 : end - 1])
        try:
            ast.parse(chunk)
        except SyntaxError as exc:
            return f"syntax error: {exc.msg}", start + (exc.lineno or 1) - 1, exc.offset or 1
        except (ValueError, RecursionError, MemoryError):
            continue
    return None


def _load(document: str) -> dict[str, Any]:
    try:
        notebook = json.loads(document)
    except json.JSONDecodeError as exc:
        raise SourceError(f"notebook is not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise SourceError("notebook is not valid JSON: nested too deeply to read") from None
    except ValueError as exc:  # an integer too long to convert
        raise SourceError(f"notebook is not valid JSON: {exc}") from None
    if not isinstance(notebook, dict):
        raise SourceError("notebook is not a JSON object")
    return notebook


def _is_python(notebook: dict[str, Any]) -> bool:
    """False only for notebooks that declare another kernel language (R, Julia, ...)."""
    metadata = notebook.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    language_info, kernelspec = metadata.get("language_info"), metadata.get("kernelspec")
    language = (language_info.get("name") if isinstance(language_info, dict) else None) or (
        kernelspec.get("language") if isinstance(kernelspec, dict) else None
    )
    return not isinstance(language, str) or language.lower() in ("python", "ipython", "python3")


def _raw_cells(notebook: dict[str, Any]) -> tuple[list[Any], str]:
    """The cell list and the key holding a cell's text: ``source`` (nbformat 4) or
    ``input`` (nbformat 3, cells inside ``worksheets``)."""
    if "cells" in notebook:
        cells, key = notebook["cells"], "source"
    elif isinstance(notebook.get("worksheets"), list):
        sheets = [sheet.get("cells", []) for sheet in notebook["worksheets"] if isinstance(sheet, dict)]
        if not all(isinstance(sheet, list) for sheet in sheets):
            raise SourceError("notebook worksheet 'cells' is not a list")
        cells, key = [cell for sheet in sheets for cell in sheet], "input"
    else:
        raise SourceError("notebook has no 'cells' list")
    if not isinstance(cells, list):
        raise SourceError("notebook 'cells' is not a list")
    return cells, key


def _code_cells(notebook: dict[str, Any]) -> Iterator[Cell]:
    cells, key = _raw_cells(notebook)
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise SourceError(f"cell {number} is not a notebook cell (no 'cell_type')")
        if cell["cell_type"] == "code":
            yield number, _python_lines(_cell_text(cell.get(key, ""), number))


def _cell_text(source: Any, number: int) -> str:
    """A cell's text: stored as one string or as a list of lines (each ending with ``\\n``)."""
    if isinstance(source, list) and all(isinstance(part, str) for part in source):
        source = "".join(source)
    if not isinstance(source, str):
        raise SourceError(f"cell {number} has a 'source' that is neither a string nor a list of strings")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON can spell lone surrogates (``"\\ud800"``)
        raise SourceError(f"cell {number} is not valid Unicode text: {exc.reason}") from None
    return source


def _python_lines(code: str) -> list[str]:
    """The cell's lines with IPython-only lines blanked, line count unchanged."""
    lines = _lines(code)
    magic = _CELL_MAGIC.match(lines[0]) if lines else None
    if magic is None:
        return list(_blank_ipython(lines))
    if magic.group("name") not in PYTHON_CELL_MAGICS:
        return ["" for _ in lines]
    return ["", *_blank_ipython(lines[1:])]


def _lines(code: str) -> list[str]:
    """A cell's lines. Only real newlines separate lines: str.splitlines would also split on
    form feeds and other characters that the Python parser keeps inside a line."""
    lines = code.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _blank_ipython(lines: list[str]) -> Iterator[str]:
    continued = False
    inside = _Open()  # brackets and strings a Python line left open
    for line in lines:
        if continued:
            # A line swallowed by a continued shell line (``!pip install \``).
            yield ""
        elif not inside.any() and _is_ipython_line(line):
            # ``pass`` at the same indentation keeps an enclosing block non-empty. Inside an
            # open bracket or string a leading ``%`` or ``!`` is Python (``"..."\n % args``).
            yield f"{line[: len(line) - len(line.lstrip())]}pass"
        else:
            inside.scan(line)
            yield line
            continue
        continued = line.rstrip().endswith("\\")


class _Open:
    """What a run of Python lines leaves open: brackets, a string, a backslash continuation."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote = ""  # the delimiter of an open (triple-quoted) string
        self.backslash = False

    def any(self) -> bool:
        return self.depth > 0 or bool(self.quote) or self.backslash

    def scan(self, line: str) -> None:
        i = 0
        while i < len(line):
            char = line[i]
            if self.quote:
                if char == "\\":
                    i += 2
                    continue
                if line.startswith(self.quote, i):
                    i += len(self.quote)
                    self.quote = ""
                    continue
            elif char == "#":
                break
            elif char in "\"'":
                self.quote = line[i : i + 3] if line[i : i + 3] in ('"""', "'''") else char
                i += len(self.quote)
                continue
            elif char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(0, self.depth - 1)
            i += 1
        if len(self.quote) == 1:
            self.quote = ""  # a one-quote string cannot span lines
        self.backslash = line.rstrip().endswith("\\") and not self.quote


def _is_ipython_line(line: str) -> bool:
    return bool(_LINE_MAGIC.match(line) or _HELP.match(line) or _AUTOMAGIC_INSTALL.match(line))
