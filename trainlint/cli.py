"""Command-line interface: argument parsing and exit codes only; the work lives elsewhere."""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.table import Table

from trainlint import __version__
from trainlint.catalogue import page_for
from trainlint.config import ConfigError, load_settings
from trainlint.files import MissingPathError
from trainlint.fixes import FixSafety, fix_safety
from trainlint.reporters import formats
from trainlint.reporters.statistics import render_statistics
from trainlint.rule import all_rules, rule_by_code
from trainlint.runner import RunOptions, render_diff, run, write_fixes

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> None:
    click.echo(f"trainlint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


class _LazyGroup(click.Group):
    """Loads heavy subcommands (the torch-based probe) only when they are invoked."""

    lazy = {"probe": ("trainlint.probe.command", "probe_command")}

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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainlint")
def main() -> None:
    """Catch the PyTorch training bugs that fail silently."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--select", multiple=True, help="Rule codes or prefixes to enable (e.g. TL1,TL301).")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(sorted(formats())), help="Output format.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Read settings from this pyproject.toml instead of the nearest one.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings.")
@click.option("--output-file", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the report to this file instead of stdout.")
@click.option("--statistics", is_flag=True, help="Show the number of findings per rule instead of each finding.")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place.")
@click.option("--unsafe-fixes", is_flag=True, help="With --fix or --diff, also apply fixes that may change behaviour.")
@click.option("--diff", is_flag=True, help="Print the fixes as a unified diff instead of writing them (exit 1 if any).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes (default: every core).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write .trainlint_cache/.")
@click.option("--force-exclude", is_flag=True, help="Apply excludes to files named explicitly too (for pre-commit).")
def check(
    paths: tuple[Path, ...],
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    output_format: str,
    config_path: Path | None,
    exit_zero: bool,
    output_file: Path | None,
    statistics: bool,
    fix: bool,
    unsafe_fixes: bool,
    diff: bool,
    jobs: int | None,
    no_cache: bool,
    force_exclude: bool,
) -> None:
    """Lint PATHS (files or directories; default: the current directory)."""
    targets = list(paths) or [Path(".")]
    fixes = _fix_safeties(fix or diff, unsafe_fixes)
    options = RunOptions(
        jobs=jobs, cache=not no_cache, fixes=fixes, progress=sys.stderr.isatty(), force_exclude=force_exclude
    )
    try:
        settings = load_settings(targets[0], config_path).with_cli(_split(select), _split(ignore))
        result = run(targets, settings, options)
    except (ConfigError, MissingPathError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - users get a message, not a traceback
        if os.environ.get("TRAINLINT_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with TRAINLINT_DEBUG=1 and report it")
    if fix and not diff:
        # Before rendering: reports that quote source lines must read the fixed files.
        write_fixes(result.fixed)
        click.echo(f"Fixed {sum(f.fixes for f in result.fixed)} finding(s) in {len(result.fixed)} file(s).", err=True)
    with _output(output_file) as stream:
        if diff:
            render_diff(result.fixed, stream)
        elif statistics:
            render_statistics(result, stream, output_format)
        else:
            formats()[output_format].render(result, stream)
    if result.errors:
        sys.exit(EXIT_ERROR)
    failing = result.fixed if diff else result.diagnostics
    sys.exit(EXIT_FINDINGS if failing and not exit_zero else EXIT_CLEAN)


def _fix_safeties(fixing: bool, unsafe: bool) -> frozenset[FixSafety]:
    if not fixing:
        return frozenset()
    return frozenset(FixSafety) if unsafe else frozenset({FixSafety.SAFE})


def _output(path: Path | None) -> AbstractContextManager[TextIO]:
    return path.open("w", encoding="utf-8") if path is not None else nullcontext(sys.stdout)


@main.command(name="rules")
def list_rules() -> None:
    """List every rule with its code, name and severity."""
    table = Table(title="trainlint rules")
    for column in ("Code", "Name", "Severity", "Fix"):
        table.add_column(column, no_wrap=True)
    table.add_column("Summary")
    for rule in all_rules():
        safety = fix_safety(rule.code)
        table.add_row(rule.code, rule.name, rule.severity.value, safety.value if safety else rule.fix_safety or "", rule.summary)
    Console().print(table)


@main.command(name="rule")
@click.argument("code")
def show_rule(code: str) -> None:
    """Show the documentation page of a rule (by code or name)."""
    rule = rule_by_code(code)
    if rule is None:
        _fail(f"unknown rule {code!r} (see `trainlint rules`)")
        return
    page = page_for(rule.code)
    if page is None:
        _fail(f"no documentation page for {rule.code}")
        return
    # Imported here: markdown-it costs every `check` run (a pre-commit hook) ~35 ms.
    from rich.markdown import Markdown

    Console().print(Markdown(page.read_text(encoding="utf-8")))

