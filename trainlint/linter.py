"""Running the rules over files: prefilter, parse, analyse, suppress, locate."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from trainlint.analysis.flow import Flow
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import NestingError, parse
from trainlint.analysis.project import Project, content_digest
from trainlint.analysis.values import Evaluator
from trainlint.config import Settings, matches
from trainlint.deep import run_deep
from trainlint.diagnostics import Diagnostic, FileError, Severity, Span
from trainlint.files import discover
from trainlint.fixes import Edit, FixSafety, all_fixers, apply_edits
from trainlint.notebook import first_cell_syntax_error
from trainlint.rule import Context, Report, Rule
from trainlint.sources import Source, SourceError, read_source

PARSE_ERROR_CODE = "TL000"
PARSE_ERROR_NAME = "parse-error"

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Za-z0-9_\-]+(?:\s*,\s*[A-Za-z0-9_\-]+)*))?", re.IGNORECASE)
_FILE_NOQA = re.compile(r"^\s*#\s*trainlint:\s*noqa\s*$", re.IGNORECASE | re.MULTILINE)
# Fixing re-checks the fixed code, whose findings may be fixable in turn; like ruff, stop
# after a bounded number of rounds in case two fixes undo each other.
MAX_FIX_ROUNDS = 10


@dataclass(frozen=True)
class FixedFile:
    """A file whose text the fixes changed (written back, or shown as a diff)."""

    path: Path
    display: str
    original: str
    fixed: str
    fixes: int


@dataclass
class LintResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    files: int = 0
    fixed: list[FixedFile] = field(default_factory=list)

    def extend(self, other: LintResult) -> None:
        self.diagnostics.extend(other.diagnostics)
        self.errors.extend(other.errors)
        self.files += other.files
        self.fixed.extend(other.fixed)


@dataclass
class _Checked:
    """One check of one text: its result, and the fixes that apply to its tree."""

    result: LintResult
    tree: cst.Module | None = None
    edits: list[Edit] = field(default_factory=list)
    fixable: int = 0  # findings the edits fix


class Linter:
    """Lints files with one shared project model, so files can see each other."""

    def __init__(self, settings: Settings, fixes: frozenset[FixSafety] = frozenset()) -> None:
        """``fixes``: the safeties of the fixes to apply (none: only report them)."""
        self.settings = settings
        self.fixes = fixes
        self.rules: list[Rule] = [rule() for rule in settings.active_rules()]
        self.project = Project()
        self.evaluator = Evaluator(self.project)
        self.flow = Flow(self.evaluator)
        self.parse_errors_enabled = settings.enabled(PARSE_ERROR_CODE)

    def lint_paths(self, paths: Iterable[Path]) -> LintResult:
        result = LintResult()
        for file in discover(paths, self.settings):
            result.extend(self.lint_file_safely(file))
        result.diagnostics.sort(key=Diagnostic.sort_key)
        return result

    def lint_file_safely(self, path: Path, data: bytes | None = None) -> LintResult:
        """:meth:`lint_file` on a deep stack (valid code can nest thousands of levels),
        turning a crash of the analyser into a per-file result."""
        display = display_path(path)
        try:
            return run_deep(lambda: self.lint_file(path, data))
        except RecursionError:
            diagnostics = self._parse_error(display, "the file is nested too deeply to analyse", 1, 1)
        except MemoryError:
            diagnostics = self._parse_error(display, "the file is too large to analyse (out of memory)", 1, 1)
        except Exception as exc:  # noqa: BLE001 - one broken file must not stop the run
            message = f"internal error ({type(exc).__name__}: {exc}); please report it"
            return LintResult(errors=[FileError(display, message)], files=1)
        return LintResult(diagnostics, files=1)

    def lint_file(self, path: Path, data: bytes | None = None) -> LintResult:
        """Lint ``path``, whose bytes are ``data`` when the caller has read them already."""
        display = display_path(path)
        try:
            data = path.read_bytes() if data is None else data
            source = read_source(path, data)
        except OSError as exc:
            return LintResult(self._parse_error(display, f"cannot read file: {exc.strerror or exc}", 1, 1), files=1)
        except SourceError as exc:
            return LintResult(self._parse_error(display, str(exc), exc.line, exc.column), files=1)
        checked = self._check(path, display, source, content_digest(data))
        if not checked.edits:
            return checked.result
        return self._fix(path, display, source, checked)

    def _fix(self, path: Path, display: str, source: Source, checked: _Checked) -> LintResult:
        """Apply fixes and re-check until nothing is left to fix; the findings reported are
        those of the fixed text."""
        text, count = source.text, 0
        for _ in range(MAX_FIX_ROUNDS):
            if checked.tree is None or not checked.edits:
                break
            fixed = apply_edits(checked.tree, checked.edits)
            if fixed == text:
                break
            text, count = fixed, count + checked.fixable
            checked = self._check(path, display, Source(path, text), content_digest(text.encode("utf-8", "surrogatepass")))
        result = checked.result
        if text != source.text:
            result.fixed.append(FixedFile(path, display, source.text, text, count))
        return result

    def _check(self, path: Path, display: str, source: Source, digest: str) -> _Checked:
        """Lint ``source``, from bytes with hash ``digest`` (the project may hold the tree
        of those bytes already)."""
        result = LintResult(files=1)
        if _FILE_NOQA.search(source.text):
            return _Checked(result)
        rules = [rule for rule in self.rules if rule.applies_to(source.text) and self._allowed(rule.code, path)]
        if not rules:
            # No rule can fire: CPython's own parser still reports syntax errors, at a
            # fraction of libcst's cost.
            result.diagnostics.extend(self._syntax_check(display, source))
            return _Checked(result)
        # The project parses each file once, and shares trees of recently parsed files
        # between chunks (a file imported by an earlier chunk is not parsed again).
        known = self.project.load(path) if not source.cells else None
        if known is not None and known.digest == digest:
            return self._analyse(known, rules, display, source, result)
        try:
            parsed = parse(source.text)
        except NestingError as exc:
            result.diagnostics.extend(self._parse_error(display, str(exc), exc.line, exc.column, source))
            return _Checked(result)
        except cst.ParserSyntaxError as exc:
            # CPython's parser pinpoints the mistake better than libcst's; libcst's message
            # is kept for code CPython accepts but libcst cannot parse.
            where = (f"syntax error (libcst): {exc.message}", exc.raw_line, exc.raw_column + 1)
            precise = self._syntax_check(display, source)
            result.diagnostics.extend(precise or self._syntax_error(display, source, where))
            return _Checked(result)
        return self._analyse(self.project.add(path, parsed, digest), rules, display, source, result)

    def _analyse(
        self, model: ModuleModel, rules: list[Rule], display: str, source: Source, result: LintResult
    ) -> _Checked:
        reports = self._run_rules(rules, model, display, source, result)
        checked = _Checked(result, model.tree)
        for diagnostic, edits in self._locate(reports, model, source, display):
            result.diagnostics.append(diagnostic)
            if diagnostic.fix in self.fixes:
                checked.edits.extend(edits)
                checked.fixable += 1
        return checked

    def _edits(self, code: str, report: Report, model: ModuleModel, source: Source) -> Sequence[Edit]:
        fixer = all_fixers().get(code)
        # Notebook cells are joined into one text; writing a fix back into the JSON is not
        # supported, so notebook findings carry no fix.
        if fixer is None or source.cells or source.path.suffix == ".ipynb":
            return ()
        return fixer.edits(report.node, model, self.evaluator)

    def _syntax_check(self, display: str, source: Source) -> list[Diagnostic]:
        try:
            compile(source.text, display, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        except SyntaxError as exc:
            return self._syntax_error(display, source, (f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1))
        except ValueError as exc:
            return self._parse_error(display, f"cannot parse: {exc}", 1, 1, source)
        except (RecursionError, MemoryError):
            # CPython's parser gives up on deep nesting (a 3,000-call method chain).
            return self._parse_error(display, "the file is nested too deeply for Python's parser", 1, 1, source)
        return []

    def _syntax_error(self, display: str, source: Source, where: tuple[str, int, int]) -> list[Diagnostic]:
        """A parse error at ``where`` (message, line, column) of the joined text; in a
        notebook, the first cell that fails on its own is blamed instead, because an error
        in the joined text can surface only in a later cell."""
        located = first_cell_syntax_error(source) if source.cells else None
        message, line, column = located or where
        return self._parse_error(display, message, line, column, source)

    def _allowed(self, code: str, path: Path) -> bool:
        ignored = self.settings.ignored_for(path)
        return not any(matches(code, selector) for selector in ignored)

    def _run_rules(
        self, rules: list[Rule], model: ModuleModel, display: str, source: Source, result: LintResult
    ) -> list[tuple[Rule, Report]]:
        ctx = Context(model.path, display, source.text, model, self.project, self.evaluator, self.flow)
        reports: list[tuple[Rule, Report]] = []
        for rule in rules:
            try:
                reports.extend((rule, report) for report in rule.check(ctx))
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the run
                result.errors.append(FileError(display, f"internal error in {rule.code} ({type(exc).__name__}: {exc}); please report it"))
        return reports

    def _locate(
        self, reports: list[tuple[Rule, Report]], model: ModuleModel, source: Source, display: str
    ) -> Iterator[tuple[Diagnostic, Sequence[Edit]]]:
        if not reports:
            return
        lines = source.text.splitlines()
        seen: set[tuple[str, int, int]] = set()
        for rule, report in reports:
            where = model.span_of(report.node)
            if where is None:
                continue
            start, end = where.start, where.end
            if (rule.code, start.line, start.column) in seen or _suppressed(lines, start.line, rule):
                continue
            seen.add((rule.code, start.line, start.column))
            cell, line = source.locate(start.line)
            _, end_line = source.locate(end.line)
            edits = self._edits(rule.code, report, model, source)
            diagnostic = Diagnostic(
                code=rule.code,
                name=rule.name,
                severity=report.severity or rule.severity,
                message=report.message or rule.message,
                hint=report.hint or rule.hint,
                path=display,
                span=Span(line, start.column + 1, end_line, end.column + 1),
                cell=cell,
                fix=all_fixers()[rule.code].safety if edits else report.fix,
            )
            yield diagnostic, edits

    def _parse_error(
        self, display: str, message: str, line: int, column: int, source: Source | None = None
    ) -> list[Diagnostic]:
        if not self.parse_errors_enabled:
            return []
        cell, local = source.locate(line) if source is not None else (None, line)
        return [
            Diagnostic(
                code=PARSE_ERROR_CODE,
                name=PARSE_ERROR_NAME,
                severity=Severity.ERROR,
                message=message,
                hint="Fix the file so Python can parse it; trainlint skipped it.",
                path=display,
                span=Span(local, column, local, column),
                cell=cell,
            )
        ]


def _suppressed(lines: list[str], line: int, rule: type[Rule] | Rule) -> bool:
    if not 0 < line <= len(lines):
        return False
    match = _NOQA.search(lines[line - 1])
    if match is None:
        return False
    codes = match.group("codes")
    if not codes:
        return True
    return any(matches(rule.code, code) for code in re.split(r"\s*,\s*", codes))


def display_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()
