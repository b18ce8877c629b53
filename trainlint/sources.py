"""Reading files into analysable Python text (``.py`` files; notebooks in notebook.py)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

# Python's (and libcst's) line terminators. str.splitlines also splits on form feeds,
# vertical tabs, U+2028 and other characters that the parser keeps inside a line, which
# shifts every later line number.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SourceError(Exception):
    """The file cannot be turned into Python text; the message says why."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Source:
    """Python text to analyse. For notebooks, ``cells[i]`` is the (cell number, first line
    of the cell in ``text``) of each code cell, used to map lines back to cells, and
    ``document`` is the notebook's JSON text, into which fixes are written back."""

    path: Path
    text: str
    cells: list[tuple[int, int]] = field(default_factory=list)
    document: str | None = None

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


class NotARegularFile(OSError):
    """A FIFO, socket or device: reading it could block forever, so it is never read."""


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as Python numbers them (without their line endings)."""
    lines = LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file; raises :class:`NotARegularFile` for
    anything else without blocking (a FIFO is opened non-blocking, then refused)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotARegularFile(f"{path}: not a regular file")
        return stream.read()


def content_digest(data: bytes) -> str:
    """The hash that identifies file contents (cache keys, dependency records)."""
    return hashlib.sha256(data).hexdigest()


def text_digest(text: str) -> str:
    """:func:`content_digest` of a text held in memory (an editor's buffer)."""
    return content_digest(text.encode("utf-8", "surrogatepass"))


def read_source(path: Path) -> Source:
    return source_from_bytes(path, read_regular(path))


def source_from_bytes(path: Path, data: bytes) -> Source:
    """The analysable text of ``data``, read from ``path`` (or given for it on stdin)."""
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


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path``'s content through a temporary file in its folder, keeping its mode:
    a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".trainlint-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, path.stat().st_mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def display_path(path: Path) -> str:
    """``path`` relative to the working directory. Symbolic links are not resolved: a
    finding names the link the user has, never its target."""
    absolute = os.path.abspath(path)
    try:
        return Path(absolute).relative_to(os.getcwd()).as_posix()
    except (ValueError, OSError):
        return path.as_posix()
