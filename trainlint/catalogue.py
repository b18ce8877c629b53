"""The rule catalogue: one markdown page per rule (``rules/TL101-<name>.md``), and an index
of every registered rule's metadata that does not need the rules imported.

In a source checkout the pages live in ``rules/`` at the repository root; wheels ship them
as ``trainlint/_catalogue``.

Why an index: importing the rules imports libcst, which costs more than everything else a
small run does. Selecting rules, validating selectors and keying the result cache only need
each rule's code, name and flags, so those are kept in a snapshot file in the user's cache
folder, valid while the rule modules it was built from (each rule's check and fix), and
the installed packages (which may add rules through entry points), are unchanged. A run whose files are
all cached then never imports libcst.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from trainlint import __version__

if TYPE_CHECKING:
    from trainlint.rule import Rule

_PACKAGE = Path(__file__).resolve().parent


def catalogue_dir() -> Path:
    bundled = _PACKAGE / "_catalogue"
    return bundled if bundled.is_dir() else _PACKAGE.parent / "rules"


def page_for(code: str) -> Path | None:
    matches = sorted(catalogue_dir().glob(f"{code}-*.md"))
    return matches[0] if matches else None


def pages() -> list[Path]:
    return sorted(catalogue_dir().glob("TL*.md"))


def fix_safety_of(rule: type[Rule]) -> str | None:
    """"safe", "unsafe" or ``None``: the safety of the rule's autofix (a plugin may spell
    it as a plain string)."""
    from trainlint.fixing import FixSafety

    return FixSafety(rule.fix_safety).value if rule.fix_safety is not None else None


@dataclass(frozen=True)
class RuleInfo:
    """What selection and caching need to know about a rule, without importing it."""

    code: str
    name: str
    opt_in: bool
    fix: str | None  # "safe", "unsafe" or None
    module: str


@lru_cache(maxsize=1)
def rule_index() -> dict[str, RuleInfo]:
    """Every registered rule by code, from the snapshot when it is still valid."""
    snapshot = _snapshot_path()
    try:
        data = json.loads(snapshot.read_text(encoding="utf-8"))
        if data["key"] == _fingerprint(data["files"]):
            return {row["code"]: RuleInfo(**row) for row in data["rules"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    index, files = _build()
    _write(snapshot, {"key": _fingerprint(files), "files": files, "rules": [asdict(info) for info in index.values()]})
    return index


def _build() -> tuple[dict[str, RuleInfo], list[str]]:
    """The index from the imported rules, and the module files it depends on."""
    from trainlint.rule import all_rules

    index = {rule.code: RuleInfo(rule.code, rule.name, rule.opt_in, fix_safety_of(rule), rule.__module__) for rule in all_rules()}
    # The folder too: a module added to it changes its mtime.
    files = {str(_PACKAGE / "rules")}
    for rule in all_rules():
        module = sys.modules.get(rule.__module__)
        if module is not None and getattr(module, "__file__", None):
            files.add(str(module.__file__))
    return index, sorted(files)


def _fingerprint(files: list[str]) -> str:
    """Changes when a rule module, or the set of installed packages, changes."""
    stamps: list[object] = [__version__, sys.version, *files]
    # Installed packages (their entry points may add rules) live in site-packages folders,
    # whose mtime changes on every install; other sys.path entries (the working folder)
    # change all the time and hold no entry points.
    package_folders = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    for path in [*files, *package_folders]:
        try:
            stat = os.stat(path)
            stamps += [stat.st_mtime_ns, stat.st_size]
        except OSError:
            stamps.append(None)
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()


def _snapshot_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(str(_PACKAGE).encode()).hexdigest()[:12]
    return Path(base) / "trainlint" / f"rules-{__version__}-{digest}.json"


def _write(path: Path, data: object) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".rules-")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(temporary, path)
    except OSError:
        pass  # no writable cache folder: the index is rebuilt by each run
