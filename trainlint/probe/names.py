"""Naming groups of parameters by the module that owns all of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ROOT = "model"


def collapse(names: Iterable[str], universe: Sequence[str]) -> dict[str, list[str]]:
    """Group ``names`` under the shallowest module whose ``universe`` members are all in it.

    ``{"branch.0.weight", "branch.0.bias", "branch.2.weight", "branch.2.bias"}`` becomes
    ``{"branch": [...]}`` when ``branch`` owns nothing else, so one finding names the
    unused branch instead of four parameters. A fully affected model is ``"model"``.
    """
    selected = set(names)
    groups: dict[str, list[str]] = {}
    for name in (n for n in universe if n in selected):
        groups.setdefault(_owner(name, selected, universe), []).append(name)
    return groups


def _owner(name: str, selected: set[str], universe: Sequence[str]) -> str:
    parts = name.split(".")
    for depth in range(len(parts)):
        prefix = ".".join(parts[:depth])
        members = [u for u in universe if not prefix or u == prefix or u.startswith(prefix + ".")]
        if members and all(m in selected for m in members):
            return prefix or ROOT
    return name


def module_of(parameter_name: str) -> str:
    """``encoder.layers.0.linear1.weight`` -> ``encoder.layers.0.linear1`` (root: "")."""
    return parameter_name.rpartition(".")[0]
