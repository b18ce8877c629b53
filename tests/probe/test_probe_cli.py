"""The ``trainlint probe`` click command, run through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.probe.command import probe_command

SCRIPT = Path(__file__).resolve().parents[2] / "fixtures" / "probe_models" / "cli_script.py"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(probe_command, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_text_report_for_a_healthy_factory() -> None:
    code, output = invoke(f"{SCRIPT}:make", "--max-steps", "60")
    assert code == 0
    assert (
        "trainlint probe OK" in output
        and "overfit_batch" in output
        and "Gradient norm per layer" in output
    )


def test_default_factory_is_make() -> None:
    code, output = invoke(str(SCRIPT), "--check", "data", "--check", "optimizer")
    assert code == 0 and "initial_loss" not in output


def test_json_report_and_error_exit_status() -> None:
    code, output = invoke(f"{SCRIPT}:make_buggy", "--format", "json", "--max-steps", "30")
    assert code == 1
    data = json.loads(output)
    assert data["ok"] is False
    assert {"check": "outputs", "code": "P201", "subject": "outputs"}.items() <= data["findings"][
        0
    ].items()


def test_dict_factory() -> None:
    code, output = invoke(f"{SCRIPT}:make_dict", "--format", "json")
    assert code == 0 and len(json.loads(output)["overfit_curve"]) <= 50


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing_script.py:make", "no such Python script"),
        (f"{SCRIPT}:nope", "has no callable `nope`"),
        (f"{SCRIPT}:make_raises", "RuntimeError: cannot build the pipeline"),
        (f"{SCRIPT}:make_wrong", "must return (model, loader, loss_fn, optimizer)"),
    ],
)
def test_usage_errors_exit_2(target: str, message: str) -> None:
    code, output = invoke(target)
    assert code == 2 and message in output


def test_unknown_check_is_a_usage_error() -> None:
    code, output = invoke(f"{SCRIPT}:make", "--check", "overfit")
    assert code == 2 and "unknown checks" in output
