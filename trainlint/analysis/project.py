"""The set of files being analysed and the local modules they import.

Files are parsed on demand and at most once: a file that another file imports is indexed
the first time an analysis follows that import, whether or not it was named on the
command line.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import libcst as cst

from trainlint.analysis.brains import KNOWN_LIBRARIES
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import root_name, terminal_name
from trainlint.analysis.parsing import ParsedModule, parse
from trainlint.sources import SourceError, content_digest, decode_python, read_regular

# Parsed trees of imported files kept per process (bounded: memory stays flat).
TREE_CACHE_SIZE = 128
# Sibling files scanned for call sites; bounded so huge flat folders stay cheap.
MAX_SIBLINGS = 64
# Project files searched for callers of a function; bounded so huge trees stay cheap.
MAX_PROJECT_FILES = 2000
MAX_PROJECT_FILE_BYTES = 1_000_000
_ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
_CALLED = re.compile(r"(\w+)\(")
_WORD = re.compile(r"\w+")


def find_project_root(start: Path) -> Path:
    """The nearest ancestor holding a project marker, else ``start`` itself."""
    start = start.resolve()
    base = start if start.is_dir() else start.parent
    for candidate in (base, *base.parents):
        if any((candidate / marker).exists() for marker in _ROOT_MARKERS):
            return candidate
    return base


class Project:
    """Parses and indexes modules lazily; resolves ``import`` statements to local files."""

    def __init__(self) -> None:
        self._models: dict[Path, ModuleModel | None] = {}
        self._roots: dict[Path, Path] = {}
        self._defined: set[str] = set()  # names of functions and classes in loaded modules
        self._directory_texts: dict[Path, list[tuple[Path, str]]] = {}
        # Per sibling file: every ending of every name written just before a "(", so that
        # "does it mention f(" costs a set lookup, not a scan of the text per function.
        self._called: dict[Path, set[str]] = {}
        self._mentions: dict[tuple[Path, str], bool] = {}
        self._candidates: dict[tuple[str, Path], tuple[Path, ...]] = {}
        self._symbols: dict[tuple[Path, str], tuple[ModuleModel, str] | None] = {}
        self._accessed: set[Path] = set()
        self._imports: dict[Path, set[Path]] = {}  # importer -> local modules it resolved to
        # Content hash of every file read, as read; a file read twice with different
        # contents (edited during the run) is marked unstable.
        self._digests: dict[Path, str | None] = {}
        self._unstable: set[Path] = set()

    def start_tracking(self) -> set[Path]:
        """A fresh set that collects every other file the analysis looks at from now on:
        a cached result of a file stays valid only while those files are unchanged."""
        self._accessed = set()
        return self._accessed

    def dependencies(self, accessed: set[Path]) -> dict[Path, str | None] | None:
        """``accessed`` and the local modules they import, transitively (an evaluation that
        an earlier file left memoized reads those without resolving the import again), each
        with the content hash of the bytes the analysis read; ``None`` when one of them
        changed while the analysis read it."""
        found, pending = set(accessed), list(accessed)
        while pending:
            for imported in self._imports.get(pending.pop(), ()):
                if imported not in found:
                    found.add(imported)
                    pending.append(imported)
        if found & self._unstable:
            return None
        return {path: self._digests[path] for path in found if path in self._digests}

    def track(self, path: Path) -> None:
        """Record another file the analysis read (a config file): a cached result of the
        file being checked stays valid only while it is unchanged (or still absent)."""
        if path not in self._digests:
            try:
                self._record(path, content_digest(read_regular(path)))
            except OSError:
                self._record(path, None)
        self._accessed.add(path)

    def add(self, path: Path, parsed: ParsedModule, digest: str) -> ModuleModel:
        """Register a module the caller already parsed, from bytes with hash ``digest``."""
        resolved = path.resolve()
        model = ModuleModel(resolved, parsed, resolved.stem, digest)
        self._register(resolved, model)
        return model

    def adopt(self, model: ModuleModel) -> None:
        """Register a module indexed elsewhere (an editor's unsaved buffer, kept indexed
        between edits by the language server): it stands for the file on disk."""
        self._register(model.path, model)

    def _register(self, path: Path, model: ModuleModel | None) -> None:
        self._models[path] = model
        if model is not None:
            self._record(path, model.digest)
            self._defined.update(f.name.value for f in model.functions)
            self._defined.update(model.classes)

    def _record(self, path: Path, digest: str | None) -> None:
        if self._digests.setdefault(path, digest) != digest:
            self._unstable.add(path)

    def may_be_user_callable(self, func: cst.BaseExpression, module: ModuleModel) -> bool:
        """Cheap syntactic test: could this call enter a function defined in the project?
        True for names defined in a loaded module and for names imported from a module
        that is not a known library (it may be a local file not loaded yet)."""
        name = terminal_name(func)
        if name is None:
            return False
        if name in self._defined:
            return True
        root = root_name(func)
        for binding in module.module_scope.bindings.get(root or "", []):
            if binding.kind == "import" and (binding.qualname or "").lstrip(".").split(".")[0] not in KNOWN_LIBRARIES:
                return True
        return False

    def loaded(self) -> list[ModuleModel]:
        models = [model for model in self._models.values() if model is not None]
        self._accessed.update(model.path for model in models)
        return models

    def callers_of(self, function: str, near: ModuleModel) -> list[ModuleModel]:
        """``near`` and the files of its project that may call ``function``: they mention
        ``function(`` and a name of ``near``'s module (its file or package name).

        Call sites in other scripts matter (``engine.py`` defines ``train_one_epoch``,
        ``tools/train.py`` calls it), and the answer must not depend on which files a run
        happened to load before: only the files' texts decide.
        """
        found = [near]
        siblings = self._siblings(near.path.parent)
        # A sibling's text decides whether it is loaded, so it is a dependency either way;
        # the rest of the project counts only when it holds a caller.
        self._accessed.update(path for path, _ in siblings)
        key = (function, near.path)
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates[key] = self._calling(function, near, siblings)
        for path in candidates:
            model = self.load(path)
            if model is not None and model not in found:
                found.append(model)
        self._accessed.update(model.path for model in found)
        return found

    def _calling(self, function: str, near: ModuleModel, siblings: list[tuple[Path, str]]) -> tuple[Path, ...]:
        """The files whose text calls ``function`` and names ``near``'s module, in search
        order (the texts of a project do not change during a run: searched once per name)."""
        hints = (near.path.stem, near.path.parent.name)
        return tuple(
            path
            for path, text in (*siblings, *_project_texts(self._root_for(near.path.parent)))
            # Parsing every file that mentions ``forward(`` would cost a parse per file.
            if path != near.path and self._calls(path, text, function) and any(self._mentions_name(path, text, hint) for hint in hints)
        )

    def _calls(self, path: Path, text: str, function: str) -> bool:
        """``f"{function}(" in text``, without scanning the text for every function."""
        if not _WORD.fullmatch(function):
            return f"{function}(" in text
        endings = self._called.get(path)
        if endings is None:
            endings = {name[i:] for name in set(_CALLED.findall(text)) for i in range(len(name))}
            self._called[path] = endings
        return function in endings

    def _mentions_name(self, path: Path, text: str, name: str) -> bool:
        key = (path, name)
        found = self._mentions.get(key)
        if found is None:
            found = self._mentions[key] = name in text
        return found

    def _siblings(self, directory: Path) -> list[tuple[Path, str]]:
        cached = self._directory_texts.get(directory)
        if cached is None:
            cached = []
            for file in sorted(directory.glob("*.py"))[:MAX_SIBLINGS]:
                try:
                    # Regular files only: reading a FIFO named x.py would block forever.
                    data = read_regular(file)
                except (OSError, RuntimeError):  # unreadable, not regular, a link loop
                    continue
                resolved = file.resolve()
                self._record(resolved, content_digest(data))
                cached.append((resolved, data.decode("utf-8", errors="replace")))
            self._directory_texts[directory] = cached
        return cached

    def load(self, path: Path) -> ModuleModel | None:
        """The index of a local file, parsing it on first use (``None`` if unparsable)."""
        # Modules are keyed by resolved path: a key needs no resolving (a syscall per part).
        resolved = path if path in self._models else path.resolve()
        if resolved not in self._models:
            self._register(resolved, self._parse(resolved))
        model = self._models[resolved]
        if model is None and resolved in self._digests:
            self._accessed.add(resolved)  # unparsable now: results change once it parses
        return model

    def _parse(self, path: Path) -> ModuleModel | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        parsed, digest = _parse_file(path, stat.st_mtime_ns, stat.st_size)
        if digest:
            self._record(path, digest)
        return ModuleModel(path, parsed, path.stem, digest) if parsed is not None else None

    def _root_for(self, directory: Path) -> Path:
        root = self._roots.get(directory)
        if root is None:
            root = find_project_root(directory)
            self._roots[directory] = root
        return root

    def resolve_symbol(self, importer: ModuleModel, qualname: str) -> tuple[ModuleModel, str] | None:
        """Find ``pkg.mod.Name`` (or ``.mod.Name``) among local files near ``importer``.

        Returns the module defining the symbol and the symbol's name in it, or ``None`` when
        the import is not a local file (a library such as ``torch``).
        """
        key = (importer.path.parent, qualname)
        if key not in self._symbols:
            self._symbols[key] = self._resolve_symbol(importer, qualname)
        found = self._symbols[key]
        if found is not None:
            self._accessed.add(found[0].path)
            self._imports.setdefault(importer.path, set()).add(found[0].path)
        return found

    def _resolve_symbol(
        self, importer: ModuleModel, qualname: str
    ) -> tuple[ModuleModel, str] | None:
        level = len(qualname) - len(qualname.lstrip("."))
        parts = qualname.lstrip(".").split(".")
        if len(parts) < 2 and level == 0:
            return None
        directory = importer.path.parent
        if level:
            for _ in range(level - 1):
                directory = directory.parent
            bases = [directory]
        else:
            root = self._root_for(directory)
            bases = [directory, *[p for p in directory.parents if root in (p, *p.parents)]]
        for base in bases:
            found = self._find_in(base, parts)
            if found is not None:
                return found
        return None

    def _find_in(self, base: Path, parts: list[str]) -> tuple[ModuleModel, str] | None:
        module_parts, symbol = parts[:-1], parts[-1]
        for candidate in _module_files(base, module_parts):
            if candidate.is_file():
                model = self.load(candidate)
                if model is not None:
                    return model, symbol
        return None


def _module_files(base: Path, parts: list[str]) -> list[Path]:
    if not parts:
        return [base / "__init__.py"]
    stem = base.joinpath(*parts)
    return [stem.with_suffix(".py"), stem / "__init__.py"]


# Folders whose files are never a project's callers.
_SKIPPED_DIRS = frozenset({".git", ".hg", ".venv", "venv", "env", "node_modules", "site-packages", "build", "dist", "__pycache__", ".tox", ".eggs"})


@lru_cache(maxsize=8)
def _project_texts(root: Path) -> tuple[tuple[Path, str], ...]:
    """The Python files of a project (bounded, largest files skipped), read once per process."""
    found: list[tuple[Path, str]] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py") or len(found) >= MAX_PROJECT_FILES:
                continue
            path = Path(directory, name)
            try:
                data = read_regular(path)
            except (OSError, RuntimeError):
                continue
            if len(data) <= MAX_PROJECT_FILE_BYTES:
                found.append((path.resolve(), data.decode("utf-8", errors="replace")))
    return tuple(found)


@lru_cache(maxsize=TREE_CACHE_SIZE)
def _parse_file(path: Path, mtime_ns: int, size: int) -> tuple[ParsedModule | None, str]:
    """Parsed text of an imported file (``None`` if it does not parse) and the hash of the
    bytes read (empty if unreadable), shared by the projects of one process: each chunk of a
    large run gets a fresh project, but the modules they import are largely the same. Trees
    are immutable; the stat stamp in the key invalidates edited files (and the hash says
    what was really read)."""
    try:
        data = read_regular(path)
    except (OSError, RuntimeError):
        return None, ""
    try:
        return parse(decode_python(data)), content_digest(data)
    except (cst.ParserSyntaxError, SourceError, ValueError):
        return None, content_digest(data)
