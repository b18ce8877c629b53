"""Command-line interface: argument parsing and exit codes only; the work lives elsewhere.

Heavy modules (libcst through the rules, rich, the process pool) are imported inside the
commands that need them, so that ``trainlint check`` on one small file starts fast.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from trainlint import __version__
from trainlint.config import TARGET_VERSIONS, Configuration, ConfigError, Selection, parse_override
from trainlint.files import MissingPathError
from trainlint.reporters import formats
from trainlint.sources import Source, SourceError, source_from_bytes

if TYPE_CHECKING:
    from trainlint.fixing import FixSafety
    from trainlint.linter import LintResult
    from trainlint.reporters import ReportOptions

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> None:
    click.echo(f"trainlint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


class _Group(click.Group):
    """Loads heavy subcommands only when they are invoked, and reports usage errors in one
    line (``trainlint: error: ...``) instead of click's usage blurb."""

    lazy = {
        "probe": ("trainlint.probe.command", "probe_command"),
        "server": ("trainlint.server", "server_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attribute = self.lazy[name]
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                reason = f"`trainlint {name}` is unavailable: {exc}"
                return click.Command(name, help=reason, callback=lambda: _fail(reason))
            command: click.Command = getattr(module, attribute)
            return command
        return super().get_command(ctx, name)

    def main(self, args: Sequence[str] | None = None, *rest: Any, **extra: Any) -> Any:
        if extra.get("standalone_mode", True) is False:
            return super().main(args, *rest, **extra)
        extra["standalone_mode"] = False
        try:
            code = super().main(args, *rest, **extra)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            _fail(f"{exc.format_message()}{where}")
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_FINDINGS)
        sys.exit(code if isinstance(code, int) else EXIT_CLEAN)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainlint")
def main() -> None:
    """Catch the PyTorch training bugs that fail silently."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--select", multiple=True, help="Rule codes or prefixes to enable, replacing the configured selection (e.g. TL1,TL301).")
@click.option("--extend-select", multiple=True, help="Rule codes or prefixes to enable in addition to the selection.")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(sorted(formats())), help="Output format.")
@click.option("--config", "config_options", multiple=True, metavar="PATH|KEY=VALUE",
              help="A configuration file to use for every path, or a `key = value` setting overriding every configuration.")
@click.option("--target-version", type=click.Choice(TARGET_VERSIONS),
              help="The Python version whose syntax is valid (default: the configured one, else the newest).")
@click.option("--stdin-filename", type=click.Path(path_type=Path, dir_okay=False),
              help="With `-` (or no path): the file name the code on standard input belongs to.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings.")
@click.option("--output-file", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the report to this file instead of stdout.")
@click.option("--statistics", is_flag=True, help="Show the number of findings per rule instead of each finding.")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place (with stdin: print the fixed code).")
@click.option("--unsafe-fixes", is_flag=True, help="With --fix or --diff, also apply fixes that may change behaviour.")
@click.option("--diff", is_flag=True, help="Print the fixes as a unified diff instead of writing them (exit 1 if any).")
@click.option("--add-noqa", is_flag=True, help="Add `# noqa: CODE` to every line with findings, then exit.")
@click.option("--show-settings", is_flag=True, help="Show the settings used for the first path, then exit.")
@click.option("--show-files", is_flag=True, help="List the files that would be checked, then exit.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes (default: every core).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write .trainlint_cache/.")
@click.option("--force-exclude", is_flag=True, help="Apply excludes to files named explicitly too (for pre-commit).")
def check(
    paths: tuple[Path, ...],
    select: tuple[str, ...],
    extend_select: tuple[str, ...],
    ignore: tuple[str, ...],
    output_format: str,
    config_options: tuple[str, ...],
    target_version: str | None,
    stdin_filename: Path | None,
    exit_zero: bool,
    output_file: Path | None,
    statistics: bool,
    fix: bool,
    unsafe_fixes: bool,
    diff: bool,
    add_noqa: bool,
    show_settings: bool,
    show_files: bool,
    jobs: int | None,
    no_cache: bool,
    force_exclude: bool,
) -> None:
    """Lint PATHS (files or directories; default: the current directory; `-`: stdin)."""
    stdin = paths == (Path("-"),) or (not paths and stdin_filename is not None)
    if Path("-") in paths and not stdin:
        _fail("`-` (standard input) cannot be combined with other paths")
    targets = list(paths) or [Path(".")]
    try:
        configuration = _configuration(config_options, target_version, select, extend_select, ignore)
        if show_settings:
            _show_settings(configuration, stdin_filename if stdin else targets[0])
            return
        if stdin:
            _check_stdin(configuration, stdin_filename, fix, unsafe_fixes, diff, force_exclude, output_format, output_file, exit_zero)
            return
        if show_files:
            from trainlint.files import discover

            for file in discover(targets, configuration, force_exclude):
                click.echo(os.fsdecode(file))
            return
        if add_noqa:
            _add_noqa(targets, configuration, jobs, force_exclude)
            return
        with _output(output_file) as stream:
            result = _run(targets, configuration, jobs, not no_cache, _fix_safeties(fix or diff, unsafe_fixes), force_exclude)
            if fix and not diff:
                _write_fixes(result)
            _report(result, stream, output_format, statistics, diff, _report_options(stream, unsafe_fixes))
    except (ConfigError, MissingPathError) as exc:
        _fail(str(exc))
    _exit(result.fixed if diff else result.diagnostics, bool(result.errors), exit_zero)


def _configuration(
    config_options: tuple[str, ...],
    target_version: str | None,
    select: tuple[str, ...],
    extend_select: tuple[str, ...],
    ignore: tuple[str, ...],
) -> Configuration:
    """``--config`` is a file (one at most) or ``key = value`` overrides, as in ruff."""
    files = [value for value in config_options if "=" not in value or Path(value).is_file()]
    overrides: dict[str, Any] = {}
    for value in config_options:
        if value not in files:
            overrides.update(parse_override(value))
    if target_version:
        overrides["target-version"] = target_version
    if len(files) > 1:
        raise ConfigError(f"--config: one configuration file at most, got {', '.join(files)}")
    cli = Selection(tuple(_split(select)) or None, tuple(_split(extend_select)), tuple(_split(ignore)))
    if files:
        path = Path(os.path.expanduser(files[0]))
        if not path.is_file():
            raise ConfigError(f"--config {files[0]}: no such file")
        return Configuration.from_file(path, overrides, cli)
    return Configuration(overrides, cli)


def _run(
    targets: list[Path], configuration: Configuration, jobs: int | None, cache: bool,
    fixes: frozenset[FixSafety], force_exclude: bool,
) -> LintResult:
    from trainlint.runner import RunOptions, run

    options = RunOptions(jobs=jobs, cache=cache, fixes=fixes, progress=sys.stderr.isatty(), force_exclude=force_exclude)
    with _internal_errors():
        return run(targets, configuration, options)


@contextmanager
def _internal_errors() -> Iterator[None]:
    try:
        yield
    except (ConfigError, MissingPathError):
        raise
    except Exception as exc:  # noqa: BLE001 - users get a message, not a traceback
        if os.environ.get("TRAINLINT_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with TRAINLINT_DEBUG=1 and report it")


def _write_fixes(result: LintResult) -> None:
    from trainlint.runner import write_fixes

    # Before rendering: reports that quote source lines must read the fixed files.
    failures = write_fixes(result.fixed)
    written = [file for file in result.fixed if file.path not in {path for path, _ in failures}]
    click.echo(f"Fixed {sum(f.fixes for f in written)} finding(s) in {len(written)} file(s).", err=True)
    for path, reason in failures:
        click.echo(f"trainlint: error: cannot write the fixes of {os.fsdecode(path)}: {reason}", err=True)
    if failures:
        sys.exit(EXIT_ERROR)


def _report(
    result: LintResult, stream: TextIO, output_format: str, statistics: bool, diff: bool, options: ReportOptions
) -> None:
    if diff:
        from trainlint.runner import render_diff

        render_diff(result.fixed, stream)
    elif statistics:
        from trainlint.reporters.statistics import render_statistics

        render_statistics(result, stream, output_format, options)
    else:
        formats()[output_format].render(result, stream, options)


def _exit(failing: Sequence[object], errors: bool, exit_zero: bool) -> None:
    if errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if failing and not exit_zero else EXIT_CLEAN)


def _fix_safeties(fixing: bool, unsafe: bool) -> frozenset[FixSafety]:
    if not fixing:
        return frozenset()  # without importing the fixes (libcst): a cached run needs neither
    from trainlint.fixing import FixSafety

    return frozenset(FixSafety) if unsafe else frozenset({FixSafety.SAFE})


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """The report's stream. Paths that are not valid UTF-8 are written with backslash
    escapes rather than failing; a missing folder is created, as ruff does."""
    if path is None:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="backslashreplace")
        yield sys.stdout
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("w", encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        _fail(f"cannot write the report to {os.fsdecode(path)}: {exc.strerror or exc}")
    with stream:
        yield stream


def _report_options(stream: TextIO, unsafe_fixes: bool, sources: dict[str, Source] | None = None) -> ReportOptions:
    from trainlint.reporters import ReportOptions

    return ReportOptions(unsafe_fixes=unsafe_fixes, width=_width(stream), sources=sources or {})


def _width(stream: TextIO) -> int | None:
    """Wrap at the terminal's width; a file or a pipe gets long lines unless COLUMNS is set."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    return shutil.get_terminal_size().columns if isatty is not None and isatty() else None


# -- stdin -------------------------------------------------------------------------------------


def _check_stdin(
    configuration: Configuration, filename: Path | None, fix: bool, unsafe_fixes: bool, diff: bool,
    force_exclude: bool, output_format: str, output_file: Path | None, exit_zero: bool,
) -> None:
    """``trainlint check - --stdin-filename train.py``: settings and per-file ignores apply
    by that name; with ``--fix`` the fixed code goes to stdout and the report to stderr."""
    settings = configuration.settings_for(filename) if filename is not None else configuration.default()
    data = sys.stdin.buffer.read()
    if filename is not None and (force_exclude or settings.force_exclude) and settings.is_excluded(filename):
        if fix and not diff:
            sys.stdout.buffer.write(data)
        sys.exit(EXIT_CLEAN)
    from trainlint.linter import Linter, display_path

    path = filename or Path("-")
    display = display_path(filename) if filename is not None else "-"
    with _internal_errors():
        result = Linter(settings, _fix_safeties(fix or diff, unsafe_fixes)).lint_bytes(path, data, display)
    fixed = result.fixed[0].fixed if result.fixed else None
    sources = _stdin_source(path, display, data, fixed)
    if fix and not diff:
        sys.stdout.buffer.write(fixed.encode(_encoding(data)) if fixed is not None else data)
        sys.stdout.flush()
        report_to: Path | None = output_file
        with _output(report_to) if report_to is not None else _stderr() as stream:
            _report(result, stream, output_format, False, False, _report_options(stream, unsafe_fixes, sources))
        _exit(result.diagnostics, bool(result.errors), exit_zero)
    with _output(output_file) as stream:
        _report(result, stream, output_format, False, diff, _report_options(stream, unsafe_fixes, sources))
    _exit(result.fixed if diff else result.diagnostics, bool(result.errors), exit_zero)


@contextmanager
def _stderr() -> Iterator[TextIO]:
    yield sys.stderr


def _encoding(data: bytes) -> str:
    import io
    import tokenize

    try:
        return tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError:
        return "utf-8"


def _stdin_source(path: Path, display: str, data: bytes, fixed: str | None) -> dict[str, Source]:
    """Reports quote source lines from stdin's (fixed) text, never from a file on disk."""
    try:
        return {display: source_from_bytes(path, fixed.encode(_encoding(data)) if fixed is not None else data)}
    except SourceError:
        return {}


# -- --show-settings and --add-noqa -----------------------------------------------------------------


def _show_settings(configuration: Configuration, path: Path | None) -> None:
    settings = configuration.settings_for(path) if path is not None else configuration.default()
    click.echo(f"Settings for {os.fsdecode(path) if path is not None else '.'}:")
    for key, value in settings.describe():
        if isinstance(value, list):
            click.echo(f"{key} = [")
            for item in value:
                click.echo(f"    {item},")
            click.echo("]")
        else:
            click.echo(f"{key} = {value}")


def _add_noqa(targets: list[Path], configuration: Configuration, jobs: int | None, force_exclude: bool) -> None:
    from trainlint.noqa import add_noqa

    result = _run(targets, configuration, jobs, False, frozenset(), force_exclude)
    added, skipped = add_noqa(result.diagnostics)
    click.echo(f"Added {added} noqa directive{'s' * (added != 1)}.", err=True)
    for where in skipped:
        click.echo(f"trainlint: warning: {where}: no `# noqa` added (the line ends inside a string or continues)", err=True)
    if result.errors:
        sys.exit(EXIT_ERROR)


# -- rules ----------------------------------------------------------------------------------------


@main.command(name="rules")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_rules(output_format: str) -> None:
    """List every rule with its code, name, severity and fix."""
    from trainlint.catalogue import fix_safety_of, page_for
    from trainlint.rule import all_rules

    rows = [
        {
            "code": rule.code,
            "name": rule.name,
            "severity": rule.severity.value,
            "fix": fix_safety_of(rule),
            "default": not rule.opt_in,
            "summary": rule.summary,
            "page": page.name if (page := page_for(rule.code)) is not None else None,
        }
        for rule in all_rules()
    ]
    if output_format == "json":
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trainlint rules")
    for column in ("Code", "Name", "Severity", "Fix"):
        table.add_column(column, no_wrap=True)
    table.add_column("Summary")
    for row in rows:
        table.add_row(str(row["code"]), str(row["name"]), str(row["severity"]), str(row["fix"] or ""), str(row["summary"]))
    Console().print(table)


@main.command(name="rule")
@click.argument("code")
def show_rule(code: str) -> None:
    """Show the documentation page of a rule (by code or name)."""
    from trainlint.catalogue import page_for
    from trainlint.rule import rule_by_code

    rule = rule_by_code(code)
    if rule is None:
        _fail(f"unknown rule {code!r} (see `trainlint rules`)")
        return
    page = page_for(rule.code)
    if page is None:
        _fail(f"no documentation page for {rule.code}")
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(page.read_text(encoding="utf-8")))
