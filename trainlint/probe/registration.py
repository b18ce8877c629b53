"""The ``registration`` check: does ``model.parameters()`` hold what forward really uses?

Layers kept in a plain Python list (instead of ``nn.ModuleList``) and tensors created with
``requires_grad=True`` (instead of ``nn.Parameter``) run fine, but ``model.parameters()``,
and so the optimizer, ``state_dict()`` and ``.to()``, never see them. They are found by
walking the modules' plain attributes; the spy then tells which of them forward used.

Models the probe cannot run at all are reported here before anything else: parameters on
the meta device (no data yet) and lazy modules that were never initialised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding
from trainlint.probe.codes import finding
from trainlint.probe.names import collapse, module_of

MAX_DEPTH = 2  # lists of lists of layers, no deeper
_UNINITIALISED = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
MAX_LISTED = 10


@dataclass
class Shadow:
    """Modules and trainable tensors reachable from the model but not registered in it."""

    modules: dict[str, nn.Module] = field(default_factory=dict)
    # id(tensor) -> a readable name such as ``encoder.blocks[0].weight``.
    tensors: dict[int, str] = field(default_factory=dict)
    objects: list[torch.Tensor] = field(default_factory=list)


def scan(model: nn.Module) -> Shadow:
    """Every unregistered layer or trainable leaf tensor in the modules' plain attributes."""
    registered_modules = {id(m) for m in model.modules()}
    registered = {id(t) for t in [*model.parameters(), *model.buffers()]}
    shadow = Shadow()
    for prefix, module in model.named_modules():
        for attribute, value in vars(module).items():
            if attribute.startswith("__") or attribute in ("_parameters", "_buffers", "_modules"):
                continue
            path = f"{prefix}.{attribute}" if prefix else attribute
            for name, found in _reachable(path, value, 0):
                if isinstance(found, nn.Module):
                    if id(found) not in registered_modules and name not in shadow.modules:
                        _add_module(shadow, name, found, registered)
                elif _trainable_leaf(found) and id(found) not in registered:
                    _add_tensor(shadow, name, found)
    return shadow


def _reachable(path: str, value: Any, depth: int) -> Iterator[tuple[str, Any]]:
    if isinstance(value, (nn.Module, torch.Tensor)):
        yield path, value
    elif depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _reachable(f"{path}[{index}]", item, depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, dict):
        for key, item in value.items():
            yield from _reachable(f"{path}[{key!r}]", item, depth + 1)


def _trainable_leaf(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad and value.is_leaf


def _add_module(shadow: Shadow, name: str, module: nn.Module, registered: set[int]) -> None:
    shadow.modules[name] = module
    for param_name, param in module.named_parameters():
        if id(param) not in registered and param.requires_grad:
            _add_tensor(shadow, f"{name}.{param_name}", param)


def _add_tensor(shadow: Shadow, name: str, tensor: torch.Tensor) -> None:
    if id(tensor) not in shadow.tensors:
        shadow.tensors[id(tensor)] = name
        shadow.objects.append(tensor)


def findings(
    shadow: Shadow,
    used: dict[str, str | None],
    optimizer: torch.optim.Optimizer | None,
) -> list[Finding]:
    """P803 for used unregistered tensors nothing trains, P804 for those only the optimizer holds."""
    held = (
        {id(p) for group in optimizer.param_groups for p in group["params"]}
        if optimizer is not None
        else set()
    )
    by_name = {name: tensor_id for tensor_id, name in shadow.tensors.items()}
    trained = [name for name in used if by_name[name] in held]
    untrained = [name for name in used if by_name[name] not in held]
    return [
        *(_unregistered(subject, names, used) for subject, names in _grouped(untrained)),
        *(_optimizer_only(subject, names) for subject, names in _grouped(trained)),
    ]


def _grouped(names: list[str]) -> list[tuple[str, list[str]]]:
    """Group by the plain container that holds them (``encoder.blocks``), else one by one."""
    containers: dict[str, list[str]] = {}
    for name in names:
        containers.setdefault(name.split("[", 1)[0] if "[" in name else "", []).append(name)
    loose = containers.pop("", [])
    return [*containers.items(), *((name, [name]) for name in loose)]


def _unregistered(subject: str, names: list[str], used: dict[str, str | None]) -> Finding:
    module = next((used[n] for n in names if used[n]), None)
    where = f" (used in `{module}`)" if module else ""
    return finding(
        "P803",
        f"`{subject}`: {len(names)} trainable tensor(s) are used in forward{where} but are "
        "not registered in the model: model.parameters() (so the optimizer), state_dict() "
        "and .to() never see them, so they never train and are never saved",
        "Keep layers in nn.ModuleList/nn.ModuleDict (not a Python list or dict) and "
        "trainable tensors in nn.Parameter/nn.ParameterList, then build the optimizer.",
        subject=subject,
        details={"tensors": names[:MAX_LISTED], "count": len(names)},
    )


def _optimizer_only(subject: str, names: list[str]) -> Finding:
    return finding(
        "P804",
        f"`{subject}`: {len(names)} trainable tensor(s) are in the optimizer but not "
        "registered in the model: they train, but state_dict() does not save them and "
        ".to()/DDP do not move or synchronise them",
        "Register them: nn.ModuleList/nn.ModuleDict for layers, nn.Parameter for tensors.",
        subject=subject,
        details={"tensors": names[:MAX_LISTED], "count": len(names)},
    )


def created_in_forward(model: nn.Module, known: set[str]) -> list[Finding]:
    """Submodules that appeared during forward (the probe removes them again afterwards)."""
    new = [name for name, _ in model.named_modules() if name not in known]
    roots = [n for n in new if module_of(n) not in new]
    return [
        finding(
            "P805",
            f"`{name}` ({type(model.get_submodule(name)).__name__}) is created inside forward: "
            "it starts from random weights on every call (or at least after the optimizer "
            "was built), so it never trains",
            "Create layers in __init__ (use nn.LazyLinear and a dry-run forward before "
            "building the optimizer if the input size is only known at run time).",
            subject=name,
        )
        for name in roots
    ]


def preflight(model: nn.Module) -> list[Finding]:
    """Models the probe cannot run: data on the meta device, uninitialised lazy modules."""
    named = [*model.named_parameters(), *model.named_buffers()]
    universe = [name for name, _ in named]
    lazy = [name for name, t in named if isinstance(t, _UNINITIALISED)]
    if lazy:
        return [
            finding(
                "P802",
                f"`{subject}` is a lazy module that was never initialised ({len(names)} "
                "uninitialised tensor(s)): its shapes are only known after a first forward, "
                "and an optimizer built before that holds no usable parameter",
                "Run one dry-run forward on a real batch right after building the model, then "
                "build the optimizer (as the LazyModuleMixin docs require).",
                subject=subject,
                details={"tensors": names[:MAX_LISTED]},
            )
            for subject, names in collapse(lazy, universe).items()
        ]
    meta = [name for name, t in named if t.is_meta]
    return [
        finding(
            "P801",
            f"`{subject}` has {len(names)} parameter(s)/buffer(s) on the meta device: they have "
            "shapes but no data, so nothing can run",
            "Materialise the model first: `model.to_empty(device=...)` then initialise or load "
            "the weights (e.g. `load_state_dict(..., assign=True)`).",
            subject=subject,
            details={"tensors": names[:MAX_LISTED]},
        )
        for subject, names in collapse(meta, universe).items()
    ]
