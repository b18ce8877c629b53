"""Reading files into analysable Python text (``.py`` files; notebooks in notebook.py)."""

from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path


class SourceError(Exception):
    """The file cannot be turned into Python text; the message says why."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Source:
    """Python text to analyse. For notebooks, ``cells[i]`` is the (cell number, first line
    of the cell in ``text``) of each code cell, used to map lines back to cells."""

    path: Path
    text: str
    cells: list[tuple[int, int]] = field(default_factory=list)

    def locate(self, line: int) -> tuple[int | None, int]:
        """(cell, line within it) for a line of ``text``; ``cell`` is ``None`` for .py files."""
        if not self.cells:
            return None, line
        cell, first = self.cells[0]
        for number, start in self.cells:
            if start > line:
                break
            cell, first = number, start
        return cell, line - first + 1


def read_source(path: Path, data: bytes | None = None) -> Source:
    """The analysable text of ``path``, whose bytes are ``data`` if the caller read them."""
    data = path.read_bytes() if data is None else data
    if path.suffix == ".ipynb":
        from trainlint.notebook import notebook_source

        return notebook_source(path, data)
    return Source(path, decode_python(data))


def decode_python(data: bytes) -> str:
    """Decode per PEP 263 (coding cookie or BOM, UTF-8 by default)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        # detect_encoding also fails on undecodable bytes in the first two lines; the UTF-8
        # decoding error below is then the more useful message.
        encoding = "utf-8"
        reason = str(exc)
    else:
        reason = ""
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        line = data[: getattr(exc, "start", 0)].count(b"\n") + 1
        raise SourceError(f"file is not valid {encoding}: {exc}", line=line) from None
    if reason:
        raise SourceError(f"cannot determine the file's encoding: {reason}")
    if "\x00" in text:
        raise SourceError("file contains null bytes (binary file?)")
    return text.removeprefix("\ufeff")
