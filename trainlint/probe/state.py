"""Snapshot and bit-exact restore of everything the probe may disturb.

The probe trains the user's own model in place (a second copy on the accelerator could not
fit next to a large model), so it first copies weights and buffers to *host* memory and
puts them back afterwards, together with the module registries (a submodule created inside
``forward`` is removed again), train/eval flags, ``requires_grad`` flags, ``.grad`` tensors
and every global random number generator. Modules and tensors the model reaches without
registering them (a plain list of layers) and tensors only the optimizer holds are saved
too: the probe's backward and optimizer steps touch them as well.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class _Saved:
    """One parameter or buffer: the original object, its storage, and a host copy."""

    tensor: torch.Tensor
    # ``detach()`` shares storage with the original, so it still points at the user's
    # memory after ``module.to()`` has swapped ``param.data`` for a copy on another device.
    alias: torch.Tensor
    host: torch.Tensor
    requires_grad: bool
    grad: torch.Tensor | None


@dataclass
class _ModuleRecord:
    module: nn.Module
    training: bool
    parameters: dict[str, nn.Parameter | None]
    buffers: dict[str, torch.Tensor | None]
    modules: dict[str, nn.Module | None]


class ModelState:
    """Host snapshot of a model; ``reset_values`` between stages, ``restore`` at the end."""

    def __init__(
        self,
        model: nn.Module,
        extra_modules: Iterable[nn.Module] = (),
        extra_tensors: Iterable[torch.Tensor] = (),
    ) -> None:
        modules = {id(m): m for m in _unique_modules(model)}
        for extra in extra_modules:
            modules.update((id(m), m) for m in _unique_modules(extra))
        self._records = [
            _ModuleRecord(m, m.training, dict(m._parameters), dict(m._buffers), dict(m._modules))
            for m in modules.values()
        ]
        self._saved: dict[int, _Saved] = {}
        for record in self._records:
            for tensor in [*record.parameters.values(), *record.buffers.values()]:
                if tensor is not None and id(tensor) not in self._saved:
                    self._saved[id(tensor)] = _save(tensor)
        # Tensors outside every registry: values are reset in place, where they live.
        self._loose = [t for t in extra_tensors if id(t) not in self._saved]
        for tensor in self._loose:
            self._saved[id(tensor)] = _save(tensor)

    def detach_grads(self) -> None:
        """Set every ``.grad`` to None so probe backward passes never add into the user's."""
        for saved in self._saved.values():
            if saved.tensor.grad is not None:
                saved.tensor.grad = None

    def host_copies(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The host snapshot of each named tensor (the values before the probe touched it)."""
        return {
            name: self._saved[id(t)].host for name, t in tensors.items() if id(t) in self._saved
        }

    def reset_values(self) -> None:
        """Between stages: copy the snapshot into the tensors in use now, on their device.

        After ``model.to(device)`` the parameters live on the probe device (buffers are even
        new objects), so values are copied in place rather than the originals swapped back.
        """
        with torch.no_grad():
            for record in self._records:
                for live, saved in _pairs(record.module._parameters, record.parameters):
                    live.copy_(self._saved[id(saved)].host)
                for live, saved in _pairs(record.module._buffers, record.buffers):
                    live.copy_(self._saved[id(saved)].host)
            for tensor in self._loose:
                tensor.detach().copy_(self._saved[id(tensor)].host)

    def restore(self) -> None:
        """Everything, on the original devices: registries, values, grads and flags."""
        for record in self._records:
            _refill(record.module._parameters, record.parameters)
            _refill(record.module._buffers, record.buffers)
            _refill(record.module._modules, record.modules)
        with torch.no_grad():
            for saved in self._saved.values():
                if not _same_storage(saved.tensor, saved.alias):
                    saved.tensor.data = saved.alias
                saved.alias.copy_(saved.host)
        for saved in self._saved.values():
            if saved.tensor.is_leaf:
                saved.tensor.requires_grad_(saved.requires_grad)
            saved.tensor.grad = saved.grad
        for record in self._records:
            record.module.training = record.training


def _pairs(live: dict[str, Any], saved: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tensor in use, original) for every slot that held a tensor at snapshot time."""
    return [
        (live[name], original)
        for name, original in saved.items()
        if original is not None
        and isinstance(live.get(name), torch.Tensor)
        and live[name].shape == original.shape
    ]


def _unique_modules(model: nn.Module) -> list[nn.Module]:
    return [module for _, module in model.named_modules()]


def _save(tensor: torch.Tensor) -> _Saved:
    alias = tensor.detach()
    return _Saved(
        tensor=tensor,
        alias=alias,
        host=alias.to("cpu", copy=True),
        requires_grad=tensor.requires_grad,
        grad=tensor.grad,
    )


def _refill(target: dict[str, Any], saved: dict[str, Any]) -> None:
    # Identity, not ``==``: comparing tensors with ``==`` is elementwise.
    same = list(target) == list(saved) and all(target[k] is v for k, v in saved.items())
    if not same:
        target.clear()
        target.update(saved)


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device == b.device and a.dtype == b.dtype and a.data_ptr() == b.data_ptr()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()``, then every module's own train/eval flag back as it was."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


class RngState:
    """The global RNGs (``random``, numpy when installed, torch CPU and CUDA).

    CUDA generators are saved only when CUDA is already initialised or the probe is about
    to use it: querying them would otherwise create a CUDA context the user never asked for.
    """

    def __init__(self, uses_cuda: bool) -> None:
        self._python = random.getstate()
        self._numpy = _numpy_module()
        self._numpy_state = self._numpy.random.get_state() if self._numpy else None
        self._torch = torch.get_rng_state()
        self._cuda: list[torch.Tensor] | None = None
        if torch.cuda.is_available() and (uses_cuda or torch.cuda.is_initialized()):
            self._cuda = torch.cuda.get_rng_state_all()

    def seed(self, seed: int, device: torch.device) -> None:
        """Seed the generators user code may draw from (dropout, shuffling, augmentation).

        ``torch.manual_seed`` is avoided on purpose: it also queues a seed for CUDA devices
        that are not initialised yet, which would outlive the probe.
        """
        random.seed(seed)
        if self._numpy is not None:
            self._numpy.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)

    def restore(self) -> None:
        random.setstate(self._python)
        if self._numpy is not None:
            self._numpy.random.set_state(self._numpy_state)
        torch.set_rng_state(self._torch)
        if self._cuda is not None:
            torch.cuda.set_rng_state_all(self._cuda)


def _numpy_module() -> Any:
    if importlib.util.find_spec("numpy") is None:
        return None
    import numpy

    return numpy
