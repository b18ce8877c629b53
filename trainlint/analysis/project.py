"""The set of files being analysed and the local modules they import.

Files are parsed on demand and at most once: a file that another file imports is indexed
the first time an analysis follows that import, whether or not it was named on the
command line.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import libcst as cst

from trainlint.analysis.brains import KNOWN_LIBRARIES
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import root_name, terminal_name
from trainlint.analysis.parsing import parse_module
from trainlint.sources import read_regular

# Parsed trees of imported files kept per process (bounded: memory stays flat).
TREE_CACHE_SIZE = 128
# Sibling files scanned for call sites; bounded so huge flat folders stay cheap.
MAX_SIBLINGS = 64
_ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


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
        self._symbols: dict[tuple[Path, str], tuple[ModuleModel, str] | None] = {}
        self._accessed: set[Path] = set()
        self._imports: dict[Path, set[Path]] = {}  # importer -> local modules it resolved to

    def start_tracking(self) -> set[Path]:
        """A fresh set that collects every other module the analysis looks at from now on:
        a cached result of a file stays valid only while those modules are unchanged."""
        self._accessed = set()
        return self._accessed

    def dependencies(self, accessed: set[Path]) -> set[Path]:
        """``accessed`` and the local modules they import, transitively: an evaluation that
        an earlier file left memoized reads those without resolving the import again."""
        found, pending = set(accessed), list(accessed)
        while pending:
            for imported in self._imports.get(pending.pop(), ()):
                if imported not in found:
                    found.add(imported)
                    pending.append(imported)
        return found

    def track(self, path: Path) -> None:
        """Record another file the analysis read (a config file): a cached result of the
        file being checked stays valid only while it is unchanged (or still absent)."""
        self._accessed.add(path)

    def add(self, path: Path, tree: cst.Module) -> ModuleModel:
        """Register a module the caller already parsed."""
        resolved = path.resolve()
        model = ModuleModel(resolved, tree, resolved.stem)
        self._register(resolved, model)
        return model

    def adopt(self, model: ModuleModel) -> None:
        """Register a module indexed elsewhere (an editor's unsaved buffer, kept indexed
        between edits by the language server): it stands for the file on disk."""
        self._register(model.path, model)

    def _register(self, path: Path, model: ModuleModel | None) -> None:
        self._models[path] = model
        if model is not None:
            self._defined.update(f.name.value for f in model.functions)
            self._defined.update(model.classes)

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
        """Loaded modules plus sibling files of ``near`` that mention ``function(``.

        Call sites in sibling scripts matter (``engine.py`` defines ``train_one_epoch``,
        ``train.py`` calls it), whichever file the run happens to analyse first.
        """
        needle = f"{function}("
        importer_hint = near.path.stem
        for sibling, text in self._siblings(near.path.parent):
            # Only files that call the function *and* can import its module qualify;
            # parsing every file that mentions ``forward(`` would cost a parse per file.
            if sibling not in self._models and needle in text and importer_hint in text:
                self.load(sibling)
        return self.loaded()

    def _siblings(self, directory: Path) -> list[tuple[Path, str]]:
        cached = self._directory_texts.get(directory)
        if cached is None:
            cached = []
            for file in sorted(directory.glob("*.py"))[:MAX_SIBLINGS]:
                try:
                    # Regular files only: reading a FIFO named x.py would block forever.
                    text = read_regular(file).decode("utf-8", errors="replace")
                    cached.append((file.resolve(), text))
                except (OSError, RuntimeError):  # unreadable, not regular, a link loop
                    continue
            self._directory_texts[directory] = cached
        return cached

    def load(self, path: Path) -> ModuleModel | None:
        """The index of a local file, parsing it on first use (``None`` if unparsable)."""
        resolved = path.resolve()
        if resolved not in self._models:
            self._register(resolved, self._parse(resolved))
        return self._models[resolved]

    @staticmethod
    def _parse(path: Path) -> ModuleModel | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        tree = _parse_file(path, stat.st_mtime_ns, stat.st_size)
        return ModuleModel(path, tree, path.stem) if tree is not None else None

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


@lru_cache(maxsize=TREE_CACHE_SIZE)
def _parse_file(path: Path, mtime_ns: int, size: int) -> cst.Module | None:
    """Parsed tree of an imported file, shared by the projects of one process: each chunk
    of a large run gets a fresh project, but the modules they import are largely the same.
    Trees are immutable; the stat stamp in the key invalidates edited files."""
    try:
        return parse_module(read_regular(path))
    except (OSError, cst.ParserSyntaxError, UnicodeDecodeError, ValueError):
        return None
