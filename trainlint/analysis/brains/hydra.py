"""What trainlint knows about Hydra: ``@hydra.main(config_path, config_name)`` names the
primary config, whose defaults list composes config groups (``- optimizer: adamw`` reads
``<config_path>/optimizer/adamw.yaml`` into the key ``optimizer``), and
``hydra.utils.instantiate(node)`` calls the node's ``_target_`` with its other keys (a
``functools.partial`` of it when ``_partial_: true``).

:func:`compose` rebuilds the configuration a plain run sees (no command-line overrides),
from files given by a loader: it never runs user code. What it does not model (structured
configs registered in a ConfigStore, search paths, resolvers other than plain
``${a.b}`` references) is absent from the result, and absent means unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOTS = frozenset({"hydra", "omegaconf"})

MAIN = frozenset({"hydra.main"})
# hydra.main(config_path, config_name, version_base)
MAIN_CONFIG_PATH = ("config_path", 0)
MAIN_CONFIG_NAME = ("config_name", 1)
INSTANTIATE = frozenset({"hydra.utils.instantiate", "hydra.utils.instantiate.instantiate"})
TARGET = "_target_"
PARTIAL = "_partial_"
DEFAULTS = "defaults"
SELF = "_self_"
GLOBAL = "_global_"
SUFFIXES = (".yaml", ".yml")
# A config's first lines may set where its content goes: ``# @package _global_``.
PACKAGE_HEADER = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)
# ``${model.lr}``: a reference to another value of the composed config.
REFERENCE = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")
MAX_FILES = 64
MAX_REFERENCES = 8

Config = dict[str, Any]
# path -> (content, package header), or (None, None) when unreadable or absent.
Loader = Callable[[Path], tuple[Config | None, str | None]]
Key = tuple[str, ...]


@dataclass
class Composed:
    """A composed configuration and, for every value set from a file, that file."""

    values: Config = field(default_factory=dict)
    origins: dict[Key, Path] = field(default_factory=dict)

    def node(self, path: Key) -> Config | None:
        current: Any = self.values
        for part in path:
            if not isinstance(current, dict) or part not in current:
                return None
            current = self.resolve(current[part])
        return current if isinstance(current, dict) else None

    def resolve(self, value: Any) -> Any:
        """``${a.b}`` replaced by the value it refers to (unknown: ``None``)."""
        for _ in range(MAX_REFERENCES):
            match = REFERENCE.match(value) if isinstance(value, str) else None
            if match is None:
                return None if isinstance(value, str) and "${" in value else value
            current: Any = self.values
            for part in match.group(1).split("."):
                current = current.get(part) if isinstance(current, dict) else None
            value = current
        return None


@dataclass(frozen=True)
class _Entry:
    """One item of a defaults list: ``_self_``, ``group: option`` (``override``,
    ``optional``, ``/absolute``, ``@package``), or a sibling config by name."""

    group: str | None
    options: tuple[str, ...]
    package: str | None = None
    absolute: bool = False
    override: bool = False


def compose(directory: Path, name: str, load: Loader) -> Composed:
    """The configuration of ``@hydra.main(config_path=directory, config_name=name)``."""
    composer = _Composer(directory, load)
    composer.config("", name, ())
    return composer.result


class _Composer:
    def __init__(self, directory: Path, load: Loader) -> None:
        self.directory = directory
        self.load = load
        self.result = Composed()
        self.overrides: dict[str, str | None] = {}
        self.files = 0

    def config(self, group: str, option: str, package: Key) -> None:
        self.files += 1
        if self.files > MAX_FILES:
            return
        path = self._file(group, option)
        content, header = self.load(path)
        if content is None:
            return
        package = _package(header, group, package)
        entries = _entries(content.get(DEFAULTS))
        own = {k: v for k, v in content.items() if k != DEFAULTS}
        for entry in entries:
            if entry.override and entry.group is not None:
                self.overrides[_group_path(group, entry)] = entry.options[0] if entry.options else None
        if not any(e.group == SELF for e in entries):
            entries.append(_Entry(SELF, ()))  # Hydra >= 1.1: a config's own values come last
        for entry in entries:
            if entry.group == SELF:
                self._merge(package, own, path)
            elif entry.override:
                continue
            elif entry.group is None:
                for sibling in entry.options:
                    self.config(group, sibling, package)
            else:
                where = _group_path(group, entry)
                chosen = (self.overrides[where],) if where in self.overrides else entry.options
                for choice in chosen:
                    if choice is not None:
                        self.config(where, choice, _entry_package(entry, where))

    def _file(self, group: str, option: str) -> Path:
        base = self.directory / group if group else self.directory
        return base / (option if option.endswith(SUFFIXES) else f"{option}.yaml")

    def _merge(self, package: Key, content: Config, origin: Path) -> None:
        target = self.result.values
        for part in package:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        _deep_merge(target, content, package, origin, self.result.origins)


def _deep_merge(target: Config, content: Config, path: Key, origin: Path, origins: dict[Key, Path]) -> None:
    for key, value in content.items():
        key = str(key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value, (*path, key), origin, origins)
        else:
            target[key] = _copy(value)
            _record(target[key], (*path, key), origin, origins)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _record(value: Any, path: Key, origin: Path, origins: dict[Key, Path]) -> None:
    origins[path] = origin
    if isinstance(value, dict):
        for key, inner in value.items():
            _record(inner, (*path, key), origin, origins)


def _package(header: str | None, group: str, inherited: Key) -> Key:
    """Where a config's content goes: its header's package, else its group's path."""
    if header is None:
        return inherited
    if header == GLOBAL:
        return ()
    header = header.replace("_group_", group.replace("/", "."))
    return tuple(p for p in header.removeprefix(f"{GLOBAL}.").split(".") if p)


def _group_path(parent: str, entry: _Entry) -> str:
    """``model/encoder`` for ``- encoder: x`` inside group ``model``; ``encoder`` for ``/encoder``."""
    assert entry.group is not None
    if entry.absolute or not parent:
        return entry.group
    return f"{parent}/{entry.group}"


def _entry_package(entry: _Entry, group: str) -> Key:
    if entry.package is not None:
        return _package(entry.package, group, ())
    return tuple(group.split("/"))


def _entries(raw: Any) -> list[_Entry]:
    if not isinstance(raw, list):
        return []
    found: list[_Entry] = []
    for item in raw:
        if item == SELF:
            found.append(_Entry(SELF, ()))
        elif isinstance(item, str):
            found.append(_Entry(None, (item,)))
        elif isinstance(item, dict) and len(item) == 1:
            key, value = next(iter(item.items()))
            entry = _group_entry(str(key), value)
            if entry is not None:
                found.append(entry)
    return found


def _group_entry(key: str, value: Any) -> _Entry | None:
    words = key.split()
    override = "override" in words[:-1]
    group = words[-1] if words else ""
    package = None
    if "@" in group:
        group, package = group.split("@", 1)
    absolute = group.startswith("/")
    group = group.strip("/")
    if isinstance(value, list):
        options = tuple(str(v) for v in value if isinstance(v, str))
    elif value is None:
        options = ()
    elif isinstance(value, str):
        options = (value,)
    else:
        return None
    return _Entry(group, options, package, absolute, override) if group else None
