"""``trainlint probe path/to/script.py:make``: the probe as a click command.

This module must stay importable without torch (the linter's CLI imports it to register
the command), so torch and the probe itself load inside the command. Loading the script
runs user code on purpose: that is what a runtime probe is for.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import click

USAGE_ERROR = 2
_FACTORY_KEYS = ("model", "loader", "loss_fn", "optimizer")
_OPTIONAL_KEYS = ("step_fn", "amp_dtype", "device", "checks", "max_steps", "seed")


class ProbeUsageError(click.ClickException):
    """A problem with the command line or the factory (exit status 2, no usage blurb)."""

    exit_code = USAGE_ERROR


@click.command("probe")
@click.argument("target", metavar="SCRIPT.py[:FACTORY]")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Report format.",
)
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=None, help="Overfitting steps (default 200)."
)
@click.option(
    "--device", default=None, help="Device to probe on, e.g. cpu or cuda:0 (default: the model's)."
)
@click.option("--check", "checks", multiple=True, help="Run only this check (repeatable).")
@click.option(
    "--seed", type=int, default=None, help="Seed for everything random in the probe (default 0)."
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write a self-contained HTML report with charts to this file.",
)
@click.option(
    "--amp-dtype",
    type=click.Choice(["float16", "bfloat16"]),
    default=None,
    help="The AMP dtype you train with.",
)
def probe_command(
    target: str,
    output_format: str,
    max_steps: int | None,
    device: str | None,
    checks: tuple[str, ...],
    seed: int | None,
    html_path: str | None,
    amp_dtype: str | None,
) -> None:
    """Run the runtime probe on the pipeline a factory in SCRIPT.py builds.

    FACTORY (default ``make``) takes no arguments and returns ``(model, loader, loss_fn,
    optimizer)`` or a dict with those keys (plus optional ``step_fn``, ``amp_dtype``...).
    Exit status: 0 when no finding is an error, 1 otherwise, 2 for usage errors.
    """
    path, factory_name = _split_target(target)
    try:
        from trainlint.probe.api import probe
    except ImportError as exc:
        raise ProbeUsageError(
            f"the probe needs torch: pip install 'trainlint[probe]' ({exc})"
        ) from None
    kwargs = _call_factory(_load_script(path), factory_name, path)
    _apply_options(kwargs, max_steps, device, checks, seed, amp_dtype)
    try:
        report = probe(**kwargs)
    except (TypeError, ValueError) as exc:  # misuse of probe(): wrong factory values
        raise ProbeUsageError(f"{path}:{factory_name}: {exc}") from None
    if output_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(str(report))
    if html_path is not None:
        try:
            report.save_html(html_path)
        except OSError as exc:
            raise ProbeUsageError(f"cannot write {html_path}: {exc.strerror or exc}") from None
    click.get_current_context().exit(0 if report.ok else 1)


def _split_target(target: str) -> tuple[Path, str]:
    # rpartition keeps Windows drive letters ("C:\\x\\s.py:make") in the path.
    script, sep, factory = target.rpartition(":")
    if not sep or not factory.isidentifier():
        script, factory = target, "make"
    path = Path(script)
    if path.suffix != ".py" or not path.is_file():
        raise ProbeUsageError(f"no such Python script: {script}")
    return path, factory


def _load_script(path: Path) -> ModuleType:
    """Import the script under a unique name, with its folder importable for its siblings."""
    name = f"_trainlint_probe_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProbeUsageError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - user code
        raise ProbeUsageError(f"importing {path} raised {_describe(exc)}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _call_factory(module: ModuleType, factory_name: str, path: Path) -> dict[str, Any]:
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ProbeUsageError(f"{path} has no callable `{factory_name}`")
    try:
        built = factory()
    except Exception as exc:  # noqa: BLE001 - user code
        raise ProbeUsageError(f"{path}:{factory_name}() raised {_describe(exc)}") from None
    return _as_kwargs(built, f"{path}:{factory_name}")


def _as_kwargs(built: Any, where: str) -> dict[str, Any]:
    if isinstance(built, Mapping):
        unknown = set(built) - set(_FACTORY_KEYS) - set(_OPTIONAL_KEYS)
        if unknown or "model" not in built or "loader" not in built:
            raise ProbeUsageError(
                f"{where} returned a dict with keys {sorted(built)}; it needs model and loader, "
                f"and may have {', '.join(_FACTORY_KEYS[2:] + _OPTIONAL_KEYS)}"
            )
        return dict(built)
    if isinstance(built, (tuple, list)) and 2 <= len(built) <= 4:
        return dict(zip(_FACTORY_KEYS, built))
    raise ProbeUsageError(
        f"{where} must return (model, loader, loss_fn, optimizer) or a dict, got {type(built).__name__}"
    )


def _apply_options(
    kwargs: dict[str, Any],
    max_steps: int | None,
    device: str | None,
    checks: tuple[str, ...],
    seed: int | None,
    amp_dtype: str | None,
) -> None:
    """Command-line options override what the factory returned."""
    import torch

    overrides: dict[str, Any] = {
        "max_steps": max_steps,
        "device": device,
        "checks": list(checks) or None,
        "seed": seed,
        "amp_dtype": getattr(torch, amp_dtype) if amp_dtype else None,
    }
    kwargs.update({key: value for key, value in overrides.items() if value is not None})


def _describe(exc: BaseException) -> str:
    from trainlint.probe.errors import describe, user_frame

    where = user_frame(exc)
    return describe(exc) + (f" at {where}" if where else "")
