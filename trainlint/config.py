"""Settings, found and combined the way ruff does it.

- Each file is checked with the settings of the nearest configuration above it: in each
  directory ``.trainlint.toml``, then ``trainlint.toml`` (top-level keys), then a
  ``pyproject.toml`` with a ``[tool.trainlint]`` table. ``--config PATH`` uses one file
  for every path instead.
- ``extend = "../pyproject.toml"`` reads a base configuration first; the extending file's
  keys win, except ``extend-*`` keys and rule selection, which are layered (base, then
  the file, then the command line).
- Patterns (``exclude``, ``extend-exclude``, ``per-file-ignores``) are gitignore-style,
  matched by pathspec relative to the directory of the file that defines them.
- ``--config KEY=VALUE`` and the CLI selection options override every configuration.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from pathspec import PathSpec

    from trainlint.rule import Rule

CONFIG_FILES = (".trainlint.toml", "trainlint.toml", "pyproject.toml")
# Python versions trainlint checks syntax against; the default is the newest.
TARGET_VERSIONS = ("py37", "py38", "py39", "py310", "py311", "py312", "py313", "py314")
DEFAULT_TARGET = TARGET_VERSIONS[-1]

# Folders never worth linting (virtualenvs, caches, VCS and build output); ``exclude``
# replaces this list, ``extend-exclude`` adds to it (as in ruff).
DEFAULT_EXCLUDES = (
    ".git", ".hg", ".svn", ".venv", "venv", ".env", "env", "__pycache__", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".trainlint_cache", ".tox", ".nox", "build", "dist",
    "site-packages", "node_modules", ".eggs", "*.egg-info", ".ipynb_checkpoints",
)

_LIST_KEYS = ("select", "extend-select", "ignore", "exclude", "extend-exclude")
_TABLE_KEYS = ("per-file-ignores", "extend-per-file-ignores")
KNOWN_KEYS = frozenset({*_LIST_KEYS, *_TABLE_KEYS, "extend", "respect-gitignore", "target-version", "force-exclude"})


class ConfigError(Exception):
    """Invalid configuration or selector; reported as a one-line message, exit code 2."""


@dataclass(frozen=True)
class Selection:
    """One layer of rule selection: ``select`` (replaces what came before, when given),
    then ``extend-select`` (adds), then ``ignore`` (removes)."""

    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class Patterns:
    """Gitignore-style patterns, relative to ``base`` (the folder of the file defining
    them). Paths outside ``base`` are matched by their name only."""

    base: str
    patterns: tuple[str, ...]

    def matches(self, path: Path, is_dir: bool = False) -> bool:
        if not self.patterns:
            return False
        spec = _spec(self.patterns)
        relative = _relative_to(Path(os.path.abspath(path)), Path(self.base))
        candidates = [relative] if relative is not None else []
        candidates.append(path.name)
        suffix = "/" if is_dir else ""
        return any(spec.match_file(candidate + suffix) for candidate in candidates if candidate)


@dataclass(frozen=True)
class Settings:
    """Everything that decides what is checked and how, for the files under ``root``.

    ``select`` / ``extend_select`` / ``ignore`` are the first selection layer (``select``
    ``None`` or empty: the default selection, every rule that is not opt-in); ``layers``
    are applied after it (extending files, the command line).
    """

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None  # the configuration file the settings came from
    extend_select: tuple[str, ...] = ()
    layers: tuple[Selection, ...] = ()
    exclude: Patterns | None = None  # None: DEFAULT_EXCLUDES, relative to root
    extend_exclude: tuple[Patterns, ...] = ()
    per_file_base: Path | None = None  # the folder per-file-ignores are relative to (default: root)
    respect_gitignore: bool = True
    target_version: str = DEFAULT_TARGET
    force_exclude: bool = False

    def validate(self) -> None:
        selectors = [*(self.select or ()), *self.extend_select, *self.ignore]
        for layer in self.layers:
            selectors += [*(layer.select or ()), *layer.extend_select, *layer.ignore]
        selectors += [code for codes in self.per_file_ignores.values() for code in codes]
        validate_selectors(selectors)

    @cached_property
    def enabled_codes(self) -> frozenset[str]:
        from trainlint.catalogue import rule_index

        rules = list(rule_index().values())
        enabled = {rule.code for rule in rules if not rule.opt_in}
        for layer in (Selection(self.select or None, self.extend_select, self.ignore), *self.layers):
            if layer.select:
                enabled = {rule.code for rule in rules if any(matches(rule.code, s) for s in layer.select)}
            enabled |= {rule.code for rule in rules if any(matches(rule.code, s) for s in layer.extend_select)}
            enabled -= {rule.code for rule in rules if any(matches(rule.code, s) for s in layer.ignore)}
        return frozenset(enabled)

    def active_rules(self) -> list[type[Rule]]:
        from trainlint.rule import all_rules

        return [rule for rule in all_rules() if rule.code in self.enabled_codes]

    def enabled(self, code: str) -> bool:
        return code in self.enabled_codes

    @cached_property
    def excludes(self) -> tuple[Patterns, ...]:
        return (self.exclude or Patterns(str(self.root), DEFAULT_EXCLUDES), *self.extend_exclude)

    def ignored_for(self, path: Path) -> tuple[str, ...]:
        """Selectors that ``per-file-ignores`` disables for ``path``."""
        base = str(self.per_file_base or self.root)
        ignored: list[str] = []
        for pattern, codes in self.per_file_ignores.items():
            if Patterns(base, (pattern,)).matches(path):
                ignored.extend(codes)
        return tuple(ignored)

    def is_excluded(self, path: Path, is_dir: bool = False) -> bool:
        return any(patterns.matches(path, is_dir) for patterns in self.excludes)

    def describe(self) -> list[tuple[str, object]]:
        """(key, value) pairs for ``--show-settings``."""
        return [
            ("configuration", str(self.source) if self.source else "(none: defaults)"),
            ("root", str(self.root)),
            ("target-version", self.target_version),
            ("respect-gitignore", self.respect_gitignore),
            ("force-exclude", self.force_exclude),
            ("rules", sorted(self.enabled_codes)),
            ("exclude", [p for group in self.excludes for p in group.patterns]),
            ("per-file-ignores", {k: list(v) for k, v in self.per_file_ignores.items()}),
        ]


def matches(code: str, selector: str) -> bool:
    """Ruff-style selector: a full code, a prefix (``TL1``), ``ALL``, or a rule name."""
    wanted = selector.strip()
    if wanted.upper() == "ALL":
        return True
    return code.startswith(wanted.upper()) or _rule_names().get(wanted) == code


@lru_cache(maxsize=1)
def _rule_names() -> dict[str, str]:
    from trainlint.catalogue import rule_index

    return {rule.name: rule.code for rule in rule_index().values()}


def validate_selectors(selectors: Iterable[str]) -> None:
    from trainlint.catalogue import rule_index

    codes = [*rule_index(), "TL000"]
    for selector in selectors:
        if not any(matches(code, selector) for code in codes):
            raise ConfigError(f"unknown rule selector {selector!r} (see `trainlint rules`)")


# -- finding and reading configuration files -------------------------------------------------


class Configuration:
    """The settings of every path of a run: the nearest configuration file above each one
    (or one fixed file), with the command line's overrides applied on top."""

    def __init__(self, overrides: Mapping[str, Any] | None = None, cli: Selection | None = None) -> None:
        self.fixed: Settings | None = None
        self.overrides = dict(overrides or {})
        self.cli = cli or Selection()
        self._nearest: dict[Path, Path | None] = {}
        self._loaded: dict[Path | None, Settings] = {}

    @classmethod
    def from_file(cls, path: Path, overrides: Mapping[str, Any] | None = None, cli: Selection | None = None) -> Configuration:
        """Every path uses the configuration in ``path`` (``--config PATH``)."""
        configuration = cls(overrides, cli)
        configuration.fixed = configuration._finish(_load_file(path, configuration.overrides))
        return configuration

    @classmethod
    def of(cls, settings: Settings) -> Configuration:
        """One set of settings for every path."""
        configuration = cls()
        configuration.fixed = settings
        return configuration

    def settings_for(self, path: Path) -> Settings:
        """Settings of a file, or of the files inside a directory."""
        if self.fixed is not None:
            return self.fixed
        absolute = _absolute(path)
        return self._settings(self._config_for(absolute if absolute.is_dir() else absolute.parent))

    def default(self) -> Settings:
        """Settings of the current directory (stdin without a file name)."""
        return self.settings_for(Path.cwd())

    def _config_for(self, directory: Path) -> Path | None:
        if directory not in self._nearest:
            own = _config_in(directory)
            if own is None and directory.parent != directory:
                own = self._config_for(directory.parent)
            self._nearest[directory] = own
        return self._nearest[directory]

    def _settings(self, config: Path | None) -> Settings:
        if config not in self._loaded:
            if config is None:
                # No configuration anywhere above: the defaults, rooted at the working
                # directory (where the cache goes), with the overrides.
                settings = _parse_table(dict(self.overrides), None, Path.cwd(), "--config")
            else:
                settings = _load_file(config, self.overrides)
            self._loaded[config] = self._finish(settings)
        return self._loaded[config]

    def _finish(self, settings: Settings) -> Settings:
        if self.cli != Selection():
            settings = replace(settings, layers=(*settings.layers, self.cli))
        settings.validate()
        return settings


def _config_in(directory: Path) -> Path | None:
    for name in CONFIG_FILES:
        candidate = directory / name
        if candidate.is_file() and (name != "pyproject.toml" or _configures_trainlint(candidate)):
            return candidate
    return None


def parse_override(text: str) -> dict[str, Any]:
    """``--config KEY=VALUE``: one TOML assignment (``select=["TL1"]``, ``target-version="py39"``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {text!r} is neither a file nor a valid TOML `key = value` ({exc})") from None
    unknown = sorted(set(data) - KNOWN_KEYS - {"extend"})
    if unknown:
        raise ConfigError(f"--config {text!r}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(KNOWN_KEYS))}")
    return data


def _configures_trainlint(path: Path) -> bool:
    """Like ruff, only a pyproject.toml with a trainlint table counts (``[tool.trainlint]``
    or ``[tool]`` holding ``trainlint = {...}``); an unreadable one counts, so that the
    error is reported rather than the file skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True
    if "trainlint" not in text:
        return False
    try:
        tool = tomllib.loads(text).get("tool")
    except tomllib.TOMLDecodeError:
        return True
    return isinstance(tool, dict) and "trainlint" in tool


def _read_table(path: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(trainlint table, where it is, whole document) of a configuration file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if path.name != "pyproject.toml":
        return data, str(path), data
    tool = data.get("tool", {})
    table = tool.get("trainlint", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path} [tool.trainlint] must be a table")
    return table, f"{path} [tool.trainlint]", data


def _load_file(path: Path, overrides: Mapping[str, Any], seen: tuple[Path, ...] = ()) -> Settings:
    path = _absolute(path)
    if path in seen:
        raise ConfigError(f"{path}: `extend` forms a cycle ({' -> '.join(str(p) for p in (*seen, path))})")
    table, where, document = _read_table(path)
    table = {**table, **overrides} if not seen else table
    base: Settings | None = None
    extend = table.get("extend")
    if extend is not None:
        if not isinstance(extend, str):
            raise ConfigError(f"{where}: extend must be a path, got {extend!r}")
        target = path.parent / os.path.expanduser(extend)
        if not target.is_file():
            raise ConfigError(f"{where}: extend: {target} does not exist")
        base = _load_file(target, {}, (*seen, path))
    settings = _parse_table(table, base, path.parent, where, requires_python=_requires_python(document))
    return replace(settings, source=path)


def _parse_table(
    table: dict[str, Any], base: Settings | None, directory: Path, where: str, requires_python: str | None = None
) -> Settings:
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(KNOWN_KEYS))}")
    lists = {key: _string_list(table, key, where) for key in _LIST_KEYS if key in table}
    tables = {key: _pattern_table(table[key], key, where) for key in _TABLE_KEYS if key in table}
    layer = Selection(lists.get("select"), lists.get("extend-select", ()), lists.get("ignore", ()))
    directory = directory.resolve()
    if base is None:
        settings = Settings(select=layer.select, extend_select=layer.extend_select, ignore=layer.ignore, root=directory)
    else:
        # The extending file's folder is the project root; patterns keep the folder of
        # the file that defines them.
        settings = replace(
            base,
            layers=(*base.layers, layer),
            root=directory,
            exclude=base.exclude or Patterns(str(base.root), DEFAULT_EXCLUDES),
            per_file_base=base.per_file_base or base.root,
        )
    if "exclude" in lists:
        settings = replace(settings, exclude=Patterns(str(directory), lists["exclude"]))
    if "extend-exclude" in lists:
        extra = Patterns(str(directory), lists["extend-exclude"])
        settings = replace(settings, extend_exclude=(*settings.extend_exclude, extra))
    if "per-file-ignores" in tables:
        settings = replace(settings, per_file_ignores=tables["per-file-ignores"], per_file_base=directory)
    if "extend-per-file-ignores" in tables:
        merged = dict(settings.per_file_ignores)
        for pattern, codes in tables["extend-per-file-ignores"].items():
            merged[pattern] = (*merged.get(pattern, ()), *codes)
        settings = replace(settings, per_file_ignores=merged)
    for key, attribute in (("respect-gitignore", "respect_gitignore"), ("force-exclude", "force_exclude")):
        if key in table:
            if not isinstance(table[key], bool):
                raise ConfigError(f"{where}: {key} must be true or false, got {table[key]!r}")
            settings = replace(settings, **{attribute: table[key]})
    if "target-version" in table:
        settings = replace(settings, target_version=_target_version(table["target-version"], where))
    elif base is None and requires_python:
        settings = replace(settings, target_version=_inferred_target(requires_python))
    return settings


def _target_version(value: object, where: str) -> str:
    if value not in TARGET_VERSIONS:
        raise ConfigError(f"{where}: target-version must be one of {', '.join(TARGET_VERSIONS)}, got {value!r}")
    return str(value)


def _requires_python(document: dict[str, Any]) -> str | None:
    project = document.get("project")
    value = project.get("requires-python") if isinstance(project, dict) else None
    return value if isinstance(value, str) else None


def _inferred_target(requires_python: str) -> str:
    """Like ruff: without ``target-version``, the lower bound of ``requires-python``."""
    match = re.search(r">=?\s*3\.(\d+)", requires_python)
    candidate = f"py3{match.group(1)}" if match else DEFAULT_TARGET
    return candidate if candidate in TARGET_VERSIONS else DEFAULT_TARGET


def _string_list(table: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _pattern_table(value: object, key: str, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table of pattern = [codes]")
    return {pattern: _string_list(value, pattern, f"{where} {key}") for pattern in value}


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> PathSpec:
    # Imported here: only runs that match patterns pay for pathspec.
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(patterns)


def _absolute(path: Path) -> Path:
    """Absolute, with symbolic links resolved, without failing on a link loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _relative_to(path: Path, base: Path) -> str | None:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return None
