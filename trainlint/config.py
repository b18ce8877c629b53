"""Settings: ``[tool.trainlint]`` in the nearest pyproject.toml, overridden by CLI options."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from trainlint.rule import Rule, all_rules

KNOWN_KEYS = frozenset({"select", "ignore", "exclude", "per-file-ignores"})

# Folders never worth linting (virtualenvs, caches, VCS and build output).
DEFAULT_EXCLUDES = (
    ".git", ".hg", ".svn", ".venv", "venv", ".env", "env", "__pycache__", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".trainlint_cache", ".tox", ".nox", "build", "dist",
    "site-packages", "node_modules", ".eggs", "*.egg-info", ".ipynb_checkpoints",
)


class ConfigError(Exception):
    """Invalid configuration or selector; reported as a one-line message, exit code 2."""


@dataclass(frozen=True)
class Settings:
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None  # the pyproject.toml the settings came from

    def with_cli(self, select: Iterable[str] | None, ignore: Iterable[str] | None) -> Settings:
        """CLI ``--select`` replaces the configured selection; ``--ignore`` adds to it."""
        updated = self
        if select:
            updated = replace(updated, select=tuple(select))
        if ignore:
            updated = replace(updated, ignore=(*updated.ignore, *ignore))
        validate_selectors((*updated.select, *updated.ignore))
        return updated

    def active_rules(self) -> list[type[Rule]]:
        return [rule for rule in all_rules() if self.enabled(rule.code)]

    def ignored_for(self, path: Path) -> tuple[str, ...]:
        """Selectors that ``per-file-ignores`` disables for ``path``."""
        relative = _relative(path, self.root)
        ignored: list[str] = []
        for pattern, codes in self.per_file_ignores.items():
            if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(path.name, pattern):
                ignored.extend(codes)
        return tuple(ignored)

    def is_excluded(self, path: Path) -> bool:
        relative = _relative(path, self.root)
        for pattern in (*DEFAULT_EXCLUDES, *self.exclude):
            if fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(relative, pattern):
                return True
            if fnmatch.fnmatch(relative, pattern.rstrip("/") + "/*"):
                return True
        return False

    def enabled(self, code: str) -> bool:
        chosen = not self.select or any(matches(code, s) for s in self.select)
        return chosen and not any(matches(code, s) for s in self.ignore)


def matches(code: str, selector: str) -> bool:
    """Ruff-style selector: a full code, a prefix (``TL1``), ``ALL``, or a rule name."""
    wanted = selector.strip()
    if wanted.upper() == "ALL":
        return True
    rule_names = {rule.name: rule.code for rule in all_rules()}
    return code.startswith(wanted.upper()) or rule_names.get(wanted) == code


def validate_selectors(selectors: Iterable[str]) -> None:
    codes = [rule.code for rule in all_rules()] + ["TL000"]
    for selector in selectors:
        if not any(matches(code, selector) for code in codes):
            raise ConfigError(f"unknown rule selector {selector!r} (see `trainlint rules`)")


def load_settings(start: Path, explicit: Path | None = None) -> Settings:
    """Settings from ``explicit`` or the nearest pyproject.toml above ``start``."""
    path = explicit or _find_pyproject(start)
    if path is None:
        return Settings(root=start.resolve() if start.is_dir() else start.resolve().parent)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("trainlint", {})
    return _parse_table(table, path)


def _parse_table(table: object, path: Path) -> Settings:
    where = f"{path} [tool.trainlint]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(KNOWN_KEYS))}")
    per_file = table.get("per-file-ignores", {})
    if not isinstance(per_file, dict):
        raise ConfigError(f"{where}: per-file-ignores must be a table of pattern = [codes]")
    settings = Settings(
        select=_string_list(table, "select", where),
        ignore=_string_list(table, "ignore", where),
        exclude=_string_list(table, "exclude", where),
        per_file_ignores={
            pattern: _string_list(per_file, pattern, f"{where} per-file-ignores") for pattern in per_file
        },
        root=path.parent.resolve(),
        source=path,
    )
    validate_selectors((*settings.select, *settings.ignore, *(c for cs in settings.per_file_ignores.values() for c in cs)))
    return settings


def _string_list(table: dict[str, object], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _find_pyproject(start: Path) -> Path | None:
    base = start.resolve()
    if not base.is_dir():
        base = base.parent
    for directory in (base, *base.parents):
        candidate = directory / "pyproject.toml"
        # Like ruff, only a pyproject.toml that configures this tool counts.
        if candidate.is_file() and "tool.trainlint" in _read(candidate):
            return candidate
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
