"""Configuration files a training script reads, without running it: Hydra's YAML configs.

YAML is read with PyYAML's ``safe_load`` (plain data only: no tags that build Python
objects), from regular files under a size bound; numbers written without a dot
(``1e-4``), which YAML 1.1 leaves as strings and OmegaConf reads as floats, are read as
floats. Every file read becomes a dependency of the file being checked, so a cached result
is recomputed when a config changes.

What a config expression means is answered here:

- ``cfg.optimizer`` where ``cfg`` is the parameter of a ``@hydra.main`` function (also
  handed down through parameters of helpers): the node at ``optimizer`` of the composed
  config;
- ``self.hparams.optimizer`` in a class that Hydra builds from a node whose ``_target_``
  names the class (the Lightning + Hydra template): that node's ``optimizer``.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libcst as cst

from trainlint.analysis.brains import hydra as H
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.project import Project, find_project_root
from trainlint.analysis.values import ClassRef, Evaluator, call_arg, literal_value
from trainlint.sources import read_regular

MAX_BYTES = 1 << 20
MAX_NODES = 20_000
# Where scripts with ``@hydra.main`` live, relative to the project root, and how many
# files are looked at: a class built by Hydra is found from the configs of those scripts.
SCRIPT_GLOBS = ("*.py", "*/*.py", "*/*/*.py")
MAX_SCRIPTS = 400
SKIPPED = frozenset({"venv", "env", "site-packages", "node_modules", "build", "dist", "__pycache__"})
MAX_HANDOFFS = 3
FLOAT = re.compile(r"^[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)$|^[-+]?(\.inf|\.nan)$", re.IGNORECASE)


@dataclass(frozen=True)
class ConfigNode:
    """A mapping of a composed config: ``values``, at ``path``, in ``composed``."""

    values: dict[str, Any]
    path: H.Key
    composed: H.Composed

    def get(self, key: str) -> Any:
        return self.composed.resolve(self.values.get(key))

    def origin(self, key: str) -> Path | None:
        return self.composed.origins.get((*self.path, key))

    def child(self, key: str) -> ConfigNode | None:
        value = self.get(key)
        return ConfigNode(value, (*self.path, key), self.composed) if isinstance(value, dict) else None


class Configs:
    """The configs of one project. Files are read again only when they change (a language
    server keeps one project for a whole session)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._files: dict[Path, tuple[object, tuple[H.Config | None, str | None]]] = {}
        self._composed: dict[tuple[Path, str], tuple[H.Composed, dict[Path, object]]] = {}
        self._scripts: dict[Path, list[Path]] = {}
        self._reading: dict[Path, object] | None = None

    # -- reading ------------------------------------------------------------------------

    def read(self, path: Path) -> tuple[H.Config | None, str | None]:
        """A YAML file's mapping and its ``# @package`` header; ``(None, None)`` when
        absent, unreadable, too large or not a mapping."""
        resolved = path.resolve()
        stamp = _stamp(resolved)
        cached = self._files.get(resolved)
        if cached is None or cached[0] != stamp:
            cached = self._files[resolved] = (stamp, _read_yaml(resolved))
        self.project.track(resolved)
        if self._reading is not None:
            self._reading[resolved] = stamp
        return cached[1]

    def composed(self, directory: Path, name: str) -> H.Composed:
        key = (directory.resolve(), name)
        cached = self._composed.get(key)
        if cached is not None and all(_stamp(path) == stamp for path, stamp in cached[1].items()):
            for path in cached[1]:
                self.project.track(path)  # a reused composition still depends on its files
            return cached[0]
        self._reading = {}
        try:
            composed = H.compose(key[0], name, self.read)
            self._composed[key] = (composed, self._reading)
        finally:
            self._reading = None
        return composed

    # -- @hydra.main ----------------------------------------------------------------------

    def main_config(self, function: cst.FunctionDef, module: ModuleModel, ev: Evaluator) -> H.Composed | None:
        """The composed config of a ``@hydra.main(config_path=..., config_name=...)`` function."""
        for decorator in function.decorators:
            call = decorator.decorator
            if not isinstance(call, cst.Call) or not ev.callee(call, module) & H.MAIN:
                continue
            path = call_arg(call, H.MAIN_CONFIG_PATH[1], H.MAIN_CONFIG_PATH[0])
            name = call_arg(call, H.MAIN_CONFIG_NAME[1], H.MAIN_CONFIG_NAME[0])
            directory = literal_value(path) if path is not None else None
            config = literal_value(name) if name is not None else None
            if not isinstance(directory, str) or not isinstance(config, str) or directory.startswith("pkg:"):
                return None
            return self.composed(module.path.parent / directory, config)
        return None

    def mains(self, module: ModuleModel, ev: Evaluator) -> list[tuple[cst.FunctionDef, ModuleModel]]:
        """``@hydra.main`` functions of the project ``module`` belongs to: in loaded modules,
        and in scripts near the project root that mention ``hydra.main``."""
        root = find_project_root(module.path)
        if root not in self._scripts:
            self._scripts[root] = self._find_scripts(root)
        candidates = {m.path: m for m in self.project.loaded()}
        for path in self._scripts[root]:
            loaded = self.project.load(path)
            if loaded is not None:
                candidates[loaded.path] = loaded
        return [
            (function, candidate)
            for candidate in candidates.values()
            for function in candidate.functions
            if function.decorators and self.main_config(function, candidate, ev) is not None
        ]

    def _find_scripts(self, root: Path) -> list[Path]:
        found = []
        paths = [
            p for pattern in SCRIPT_GLOBS for p in sorted(root.glob(pattern))
            if not any(part.startswith(".") or part in SKIPPED for part in p.relative_to(root).parts[:-1])
        ][:MAX_SCRIPTS]
        for path in paths:
            try:
                text = read_regular(path)
            except (OSError, RuntimeError):
                continue
            if b"hydra.main" in text or b"@main(" in text:
                found.append(path)
        return found

    # -- what an expression is ------------------------------------------------------------

    def node_of(self, expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> ConfigNode | None:
        """The config node an expression denotes: ``cfg`` the config of a Hydra main (its
        first parameter), ``cfg.a.b`` / ``cfg["a"]`` a node under it, also through local
        names and parameters every visible caller passes the same node to."""
        if depth > MAX_HANDOFFS * 3:
            return None
        if isinstance(expr, cst.Attribute):
            parent = self.node_of(expr.value, module, ev, depth + 1)
            return parent.child(expr.attr.value) if parent is not None else None
        if isinstance(expr, cst.Subscript):
            index = expr.slice[0].slice if len(expr.slice) == 1 else None
            key = literal_value(index.value) if isinstance(index, cst.Index) else None
            parent = self.node_of(expr.value, module, ev, depth + 1) if isinstance(key, str) else None
            return parent.child(key) if parent is not None and isinstance(key, str) else None
        if not isinstance(expr, cst.Name):
            return None
        bindings = ev.reaching(expr, module)
        if len(bindings) != 1:
            return None
        binding = bindings[0]
        if binding.kind == "assign" and binding.value is not None and not binding.path:
            return self.node_of(binding.value, module, ev, depth + 1)
        if binding.kind != "param" or not isinstance(binding.scope_node, cst.FunctionDef):
            return None
        return self._passed(binding.scope_node, expr.value, module, ev, depth)

    def _passed(self, function: cst.FunctionDef, name: str, module: ModuleModel, ev: Evaluator, depth: int) -> ConfigNode | None:
        """The node a parameter holds: the whole config for a Hydra main's first parameter,
        else what every visible caller passes (one node)."""
        params = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
        own = self.main_config(function, module, ev)
        if own is not None:
            return ConfigNode(own.values, (), own) if params[:1] == [name] else None
        if module.method_class(function) is not None:
            params = params[1:]
        position = params.index(name) if name in params else None
        found: list[ConfigNode] = []
        for call, caller in ev.call_sites(function, module):
            argument = call_arg(call, position, name)
            node = self.node_of(argument, caller, ev, depth + 1) if argument is not None else None
            if node is None:
                return None
            found.append(node)
        return found[0] if found and all(n.values is found[0].values for n in found) else None

    def built_from(self, cls: ClassRef, ev: Evaluator) -> list[ConfigNode]:
        """Config nodes whose ``_target_`` is ``cls``, in the configs of the project's mains."""
        nodes: list[ConfigNode] = []
        for function, module in self.mains(cls.module, ev):
            composed = self.main_config(function, module, ev)
            if composed is not None:
                nodes.extend(_targets(composed.values, (), composed, cls))
        return nodes


def _targets(values: dict[str, Any], path: H.Key, composed: H.Composed, cls: ClassRef) -> list[ConfigNode]:
    found = [ConfigNode(values, path, composed)] if _names_class(values.get(H.TARGET), cls) else []
    for key, value in values.items():
        if isinstance(value, dict) and len(path) < 8:
            found.extend(_targets(value, (*path, key), composed, cls))
    return found


def _names_class(target: Any, cls: ClassRef) -> bool:
    """``src.models.mnist_module.MNISTLitModule`` names the class defined in
    ``.../src/models/mnist_module.py``."""
    if not isinstance(target, str) or "." not in target:
        return False
    module_path, name = target.rsplit(".", 1)
    if name != cls.node.name.value:
        return False
    parts = module_path.split(".")
    file = cls.module.path.with_suffix("")
    tail = file.parts[-len(parts) :] if file.name != "__init__" else file.parent.parts[-len(parts) :]
    return list(tail) == parts


def library_target(value: Any) -> str | None:
    """The ``_target_`` of a node as a library qualified name (``torch.optim.AdamW``)."""
    return value if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w.]*", value) else None


_PROJECTS: weakref.WeakKeyDictionary[Project, Configs] = weakref.WeakKeyDictionary()


def configs_of(project: Project) -> Configs:
    found = _PROJECTS.get(project)
    if found is None:
        found = _PROJECTS[project] = Configs(project)
    return found


def is_instantiate(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    return bool(ev.callee(call, module) & H.INSTANTIATE)


def _stamp(path: Path) -> object:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _read_yaml(path: Path) -> tuple[H.Config | None, str | None]:
    if path.suffix not in H.SUFFIXES:
        return None, None
    try:
        data = read_regular(path)
    except (OSError, RuntimeError):
        return None, None
    if len(data) > MAX_BYTES:
        return None, None
    import yaml  # only projects with Hydra configs pay for the import

    text = data.decode("utf-8", errors="replace")
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, None
    if not isinstance(content, dict):
        return ({} if content is None else None), None
    budget = [MAX_NODES]
    plain = _plain(content, budget)
    header = H.PACKAGE_HEADER.search(text)
    return (plain if budget[0] >= 0 and isinstance(plain, dict) else None), (header.group(1) if header else None)


def _plain(value: Any, budget: list[int]) -> Any:
    """A copy with string keys and float-looking strings as floats, bounded in size (YAML
    aliases can make a small file a huge tree)."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, budget) for v in value]
    if isinstance(value, str) and FLOAT.match(value.strip()):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value

