"""Running the rules over files: prefilter, parse, analyse, suppress, locate."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import libcst as cst

from trainlint.analysis.engine import Engine
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import NestingError, parse
from trainlint.analysis.project import Project
from trainlint.analysis.values import Evaluator
from trainlint.catalogue import rule_index
from trainlint.config import Settings, matches
from trainlint.deep import run_deep
from trainlint.diagnostics import Diagnostic, FileError, FixedFile, LintResult, Severity, Span
from trainlint.files import discover
from trainlint.fixing import Edit, FixSafety, apply_edits, combined
from trainlint.noqa import TRAINLINT_CODE, Directive, directives, file_exemption, replace_lines, without_codes
from trainlint.notebook import cell_of_change, cell_texts, first_cell_syntax_error, notebook_source, with_cells
from trainlint.rule import Context, Report, Rule
from trainlint.sources import (
    NotARegularFile,
    Source,
    SourceError,
    content_digest,
    display_path,
    read_regular,
    source_from_bytes,
    split_lines,
    text_digest,
)
from trainlint.syntax import SyntaxProblem, check_text, check_tree, combine, cpython_error

PARSE_ERROR_CODE = "TL000"
PARSE_ERROR_NAME = "parse-error"
UNUSED_NOQA_CODE = "TL901"
UNKNOWN_NOQA_CODE = "TL902"
# Fixing re-checks the fixed code, whose findings may be fixable in turn; like ruff, stop
# after a bounded number of rounds in case two fixes undo each other.
MAX_FIX_ROUNDS = 10


@dataclass
class _Checked:
    """One check of one text: its result, and the fixes that apply to its tree."""

    result: LintResult
    model: ModuleModel | None = None
    edits: list[Edit] = field(default_factory=list)
    fixable: int = 0  # findings the edits fix
    # Fixes that rewrite whole lines (``# noqa`` clean-up), applied when no edit is left.
    line_edits: dict[int, str] = field(default_factory=dict)
    # Every fixable finding with its own fix, whether or not this run applies it.
    by_diagnostic: list[tuple[Diagnostic, Sequence[Edit] | dict[int, str]]] = field(default_factory=list)
    # Per line, the ``# noqa`` codes that silenced a finding.
    used_noqa: dict[int, set[str]] = field(default_factory=dict)


class Linter:
    """Lints files with one shared project model, so files can see each other."""

    def __init__(self, settings: Settings, fixes: frozenset[FixSafety] = frozenset()) -> None:
        """``fixes``: the safeties of the fixes to apply (none: only report them)."""
        self.settings = settings
        self.fixes = fixes
        self.rules: list[Rule] = [rule() for rule in settings.active_rules()]
        self.project = Project()
        self.evaluator = Evaluator(self.project)
        self.engine = Engine(self.evaluator)
        self.parse_errors_enabled = settings.enabled(PARSE_ERROR_CODE)
        self.noqa_checks = {code for code in (UNUSED_NOQA_CODE, UNKNOWN_NOQA_CODE) if settings.enabled(code)}

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
            data = read_regular(path) if data is None else data
        except NotARegularFile:
            message = "not a regular file (a FIFO, socket or device); use `trainlint check -` to read standard input"
            return LintResult(self._parse_error(display, message, 1, 1), files=1)
        except OSError as exc:
            return LintResult(self._parse_error(display, _unreadable(path, exc), 1, 1), files=1)
        return self.lint_bytes(path, data, display, reuse=True)

    def lint_bytes(self, path: Path, data: bytes, display: str | None = None, reuse: bool = False) -> LintResult:
        """Lint ``data`` as the content of ``path`` (stdin, an editor's buffer): settings
        and per-file ignores apply by that path, and the file on disk is never read.
        ``reuse``: the project may hold the tree of these bytes already (parsed from disk)."""
        display = display or display_path(path)
        try:
            source = source_from_bytes(path, data)
        except SourceError as exc:
            return LintResult(self._parse_error(display, str(exc), exc.line, exc.column), files=1)
        return self._lint(source, display, content_digest(data) if reuse else None)

    def lint_source(self, source: Source, display: str, reuse: bool = False) -> LintResult:
        """Lint text; ``reuse``: the project may hold its tree already (an adopted buffer)."""
        return self._lint(source, display, text_digest(source.text) if reuse else None)

    def _lint(self, source: Source, display: str, digest: str | None) -> LintResult:
        checked = self._check(source.path, display, source, digest)
        if not checked.edits and not checked.line_edits:
            return checked.result
        return self._fix(source.path, display, source, checked)

    def fix_candidates(self, source: Source, display: str) -> list[tuple[Diagnostic, str]]:
        """Each fixable finding with the text after applying its fix alone (for an
        editor's quick fixes, on Python files); needs a linter built with the fix
        safeties wanted."""
        checked = self._check(source.path, display, source, None)
        fixed = []
        for diagnostic, edits in checked.by_diagnostic if source.document is None else ():
            if isinstance(edits, dict):
                fixed.append((diagnostic, replace_lines(source.text, edits)))
            elif checked.model is not None:
                fixed.append((diagnostic, apply_edits(checked.model.tree, edits)))
        return fixed

    def _fix(self, path: Path, display: str, source: Source, checked: _Checked) -> LintResult:
        """Apply fixes and re-check until nothing is left to fix; the findings reported are
        those of the fixed text."""
        current, count = source, 0
        for _ in range(MAX_FIX_ROUNDS):
            fixed = _fixed(current, checked)
            if fixed is None or fixed.text == current.text:
                break
            current, count = fixed, count + checked.fixable
            checked = self._check(path, display, current, None)
        result = checked.result
        if current.text != source.text:
            if source.document is not None and current.document is not None:
                result.fixed.append(FixedFile(path, display, source.document, current.document, count))
            else:
                result.fixed.append(FixedFile(path, display, source.text, current.text, count))
        return result

    def _check(self, path: Path, display: str, source: Source, digest: str | None) -> _Checked:
        """Lint ``source``, whose bytes hash to ``digest`` (``None``: never reuse a tree the
        project holds, which may be of other bytes)."""
        result = LintResult(files=1)
        exemption = file_exemption(source.text)
        if exemption.whole_file:
            return _Checked(result)
        exempt = (*self.settings.ignored_for(path), *exemption.codes)
        allowed = [rule for rule in self.rules if not any(matches(rule.code, code) for code in exempt)]
        rules = [rule for rule in allowed if rule.applies_to(source.text)]
        checked = _Checked(result)
        target = self.settings.target_version
        if not rules:
            # No rule can fire: only syntax is checked, by CPython's parser where it can
            # tell, at a fraction of libcst's cost.
            problem = check_text(source.text, target)
            if problem is not None:
                result.diagnostics.extend(self._syntax_error(display, source, problem))
                return checked
        else:
            # The project parses each file once, and shares trees of recently parsed files
            # between chunks (a file imported by an earlier chunk is not parsed again).
            model = self.project.load(path) if digest is not None and not source.cells else None
            if model is None or model.digest != digest:
                try:
                    parsed = parse(source.text)
                except NestingError as exc:
                    result.diagnostics.extend(self._parse_error(display, str(exc), exc.line, exc.column, source))
                    return checked
                except cst.ParserSyntaxError as exc:
                    problem = combine(cpython_error(source.text, target), exc)
                    result.diagnostics.extend(self._syntax_error(display, source, problem))
                    return checked
                model = self.project.add(path, parsed, digest or text_digest(source.text))
            problem = check_tree(model.tree, target)
            if problem is not None:
                result.diagnostics.extend(self._syntax_error(display, source, problem))
            checked = self._analyse(model, rules, display, source, result)
        enabled = {rule.code for rule in allowed}
        if self.noqa_checks & enabled:
            for diagnostic, line_edits in self._noqa_hygiene(source, display, checked.used_noqa, enabled):
                self._add(checked, diagnostic, line_edits)
        return checked

    def _analyse(
        self, model: ModuleModel, rules: list[Rule], display: str, source: Source, result: LintResult
    ) -> _Checked:
        ctx = Context(model.path, display, source.text, model, self.project, self.evaluator, self.engine)
        reports = self._run_rules(rules, ctx, result)
        checked = _Checked(result, model)
        for diagnostic, edits in self._locate(reports, ctx, source, result, checked.used_noqa):
            self._add(checked, diagnostic, edits)
        return checked

    def _add(self, checked: _Checked, diagnostic: Diagnostic, edits: Sequence[Edit] | dict[int, str]) -> None:
        checked.result.diagnostics.append(diagnostic)
        if diagnostic.fix is None or not edits:
            return
        checked.by_diagnostic.append((diagnostic, edits))
        if diagnostic.fix in self.fixes:
            if isinstance(edits, dict):
                checked.line_edits.update(edits)
            else:
                checked.edits.extend(edits)
            checked.fixable += 1

    def _noqa_hygiene(
        self, source: Source, display: str, used: dict[int, set[str]], enabled: set[str]
    ) -> Iterator[tuple[Diagnostic, dict[int, str]]]:
        """TL901 for trainlint codes of a ``# noqa`` that silenced nothing, TL902 for codes
        shaped like trainlint's that name no rule. Codes of other tools are left alone, and
        so is a bare ``# noqa``. As in ruff, codes of rules that did not run on the file are
        reported as "non-enabled"; the fix removes only the codes whose rule ran (another
        run, with other rules selected, may need the others)."""
        found = directives(source.text)
        if not found:
            return
        lines = split_lines(source.text)
        known = {*rule_index(), *(rule.name for rule in rule_index().values())}
        for line, directive in sorted(found.items()):
            ours = [code for code in directive.codes if TRAINLINT_CODE.match(code) or code in known]
            if any(matches(UNUSED_NOQA_CODE, code) for code in ours):
                continue  # the directive silences the hygiene check itself
            unknown = [code for code in ours if not any(matches(k, code) for k in known)]
            judged = [code for code in ours if code not in unknown and code not in used.get(line, set())]
            unused = [code for code in judged if any(matches(rule, code) for rule in enabled)]
            disabled = [code for code in judged if code not in unused]
            if unknown and UNKNOWN_NOQA_CODE in enabled:
                message = f"unknown rule code{'s' * (len(unknown) > 1)} {', '.join(unknown)} in `noqa` directive"
                yield self._noqa_diagnostic(UNKNOWN_NOQA_CODE, message, display, source, directive, None), {}
            if (unused or disabled) and UNUSED_NOQA_CODE in enabled and 0 < line <= len(lines):
                parts = [f"unused: {', '.join(unused)}"] if unused else []
                parts += [f"non-enabled: {', '.join(disabled)}"] if disabled else []
                message = f"unused `noqa` directive ({'; '.join(parts)})"
                edit = {line: without_codes(lines[line - 1], directive, set(unused))} if unused else {}
                safety = FixSafety.SAFE if edit else None
                yield self._noqa_diagnostic(UNUSED_NOQA_CODE, message, display, source, directive, safety), edit

    def _noqa_diagnostic(
        self, code: str, message: str, display: str, source: Source, directive: Directive, fix: FixSafety | None
    ) -> Diagnostic:
        rule = next(rule for rule in self.rules if rule.code == code)
        cell, line = source.locate(directive.line)
        return Diagnostic(
            code=code,
            name=rule.name,
            severity=rule.severity,
            message=message,
            hint=rule.hint,
            path=display,
            span=Span(line, directive.start + 1, line, directive.end + 1),
            cell=cell,
            fix=fix,
        )

    def _fix_of(
        self, rule: Rule, report: Report, ctx: Context, source: Source, result: LintResult
    ) -> tuple[Sequence[Edit], FixSafety | None]:
        """The edits that fix ``report`` and their safety (no edits: no fix)."""
        if rule.fix_safety is None:
            return (), None
        try:
            fix = rule.fix(report.node, ctx)
        except Exception as exc:  # noqa: BLE001 - a broken fix must not stop the run
            message = f"internal error in the fix of {rule.code} ({type(exc).__name__}: {exc}); please report it"
            result.errors.append(FileError(ctx.display_path, message))
            return (), None
        if fix is None or not fix.edits or (source.cells and _crosses_cells(fix.edits, ctx.model, source)):
            return (), None
        return fix.edits, combined(rule.fix_safety, fix)

    def _syntax_error(self, display: str, source: Source, where: SyntaxProblem) -> list[Diagnostic]:
        """A parse error at ``where`` (message, line, column) of the joined text; in a
        notebook, the first cell that fails on its own is blamed instead, because an error
        in the joined text can surface only in a later cell."""
        located = first_cell_syntax_error(source) if source.cells else None
        message, line, column = located or where
        return self._parse_error(display, message, line, column, source)

    def _run_rules(self, rules: list[Rule], ctx: Context, result: LintResult) -> list[tuple[Rule, Report]]:
        reports: list[tuple[Rule, Report]] = []
        for rule in rules:
            try:
                reports.extend((rule, report) for report in rule.check(ctx))
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the run
                result.errors.append(FileError(ctx.display_path, f"internal error in {rule.code} ({type(exc).__name__}: {exc}); please report it"))
        return reports

    def _locate(
        self, reports: list[tuple[Rule, Report]], ctx: Context, source: Source, result: LintResult, used_noqa: dict[int, set[str]]
    ) -> Iterator[tuple[Diagnostic, Sequence[Edit]]]:
        """Diagnostics of the reports with their fixes, less those a ``# noqa`` silences
        (``used_noqa`` collects, per line, the directive codes that silenced something)."""
        if not reports:
            return
        model = ctx.model
        noqa = directives(source.text)
        seen: set[tuple[str, int, int]] = set()
        for rule, report in reports:
            where = model.span_of(report.node)
            if where is None:
                continue
            start, end = where.start, where.end
            if (rule.code, start.line, start.column) in seen or _suppressed(noqa.get(start.line), rule.code, used_noqa):
                continue
            seen.add((rule.code, start.line, start.column))
            cell, line = source.locate(start.line)
            _, end_line = source.locate(end.line)
            edits, safety = self._fix_of(rule, report, ctx, source, result)
            diagnostic = Diagnostic(
                code=rule.code,
                name=rule.name,
                severity=report.severity or rule.severity,
                message=report.message or rule.message,
                hint=report.hint or rule.hint,
                path=ctx.display_path,
                span=Span(line, start.column + 1, end_line, end.column + 1),
                cell=cell,
                fix=safety,
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


def _suppressed(directive: Directive | None, code: str, used: dict[int, set[str]]) -> bool:
    if directive is None:
        return False
    if not directive.codes:
        return True
    silencing = {selector for selector in directive.codes if matches(code, selector)}
    used.setdefault(directive.line, set()).update(silencing)
    return bool(silencing)


def _fixed(source: Source, checked: _Checked) -> Source | None:
    """``source`` after one round of the fixes ``checked`` found: its edits, else its line
    edits (``# noqa`` clean-up); ``None`` when there are none."""
    if checked.edits and checked.model is not None:
        if source.document is not None:
            return _fixed_notebook(source, checked.model, checked.edits)
        return Source(source.path, apply_edits(checked.model.tree, checked.edits))
    if not checked.line_edits:
        return None
    text = replace_lines(source.text, checked.line_edits)
    if source.document is None:
        return Source(source.path, text)
    # Whole lines are replaced: every cell keeps its lines.
    old, new = cell_texts(source), cell_texts(replace(source, text=text))
    return _notebook_with(source, {cell: new[cell] for cell in old if new[cell] != old[cell]})


def _fixed_notebook(source: Source, model: ModuleModel, edits: list[Edit]) -> Source:
    """A notebook fixed cell by cell: each cell's edits are applied on their own, and only
    that cell's text is taken from the result (an edit never spans cells)."""
    by_cell: dict[int, list[Edit]] = {}
    for edit in edits:
        where = model.span_of(edit.node)
        cell = source.locate(where.start.line)[0] if where is not None else None
        if cell is not None:
            by_cell.setdefault(cell, []).append(edit)
    texts = {cell: cell_of_change(source, cell, apply_edits(model.tree, cell_edits)) for cell, cell_edits in by_cell.items()}
    return _notebook_with(source, {cell: text for cell, text in texts.items() if text is not None})


def _notebook_with(source: Source, texts: dict[int, str]) -> Source:
    """The notebook of ``source`` with those cells' new texts, read back as a source."""
    document = with_cells(source, texts)
    return notebook_source(source.path, document.encode("utf-8")) if document != source.document else source


def _crosses_cells(edits: Sequence[Edit], model: ModuleModel, source: Source) -> bool:
    """An edit replaces a node that starts in one notebook cell and ends in another: the
    fixed text could not be split back into the cells."""
    for edit in edits:
        where = model.span_of(edit.node)
        if where is None or source.locate(where.start.line)[0] != source.locate(where.end.line)[0]:
            return True
    return False


def _unreadable(path: Path, exc: OSError) -> str:
    if os.path.islink(path) and exc.errno == errno.ELOOP:
        return "cannot read file: symbolic link loop"
    if os.path.islink(path) and exc.errno == errno.ENOENT:
        return f"cannot read file: broken symbolic link (to {os.readlink(path)}, which does not exist)"
    return f"cannot read file: {exc.strerror or exc}"


__all__ = ["FixedFile", "LintResult", "Linter", "display_path"]
