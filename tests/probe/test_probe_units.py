"""Unit tests: task inference, naming, codes, the report object and the package surface."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import run_probe
from probe_models.healthy import mlp_adam
from torch import nn

import trainlint.probe as probe_package
from trainlint.diagnostics import Finding, Severity
from trainlint.probe import ProbeReport, probe
from trainlint.probe.codes import CHECKS, CODES, OPT_IN, PREFIXES, markdown_table
from trainlint.probe.names import collapse
from trainlint.probe.report import ProbeFailure
from trainlint.probe.task import Kind, class_axis, infer_task

REPO = Path(__file__).resolve().parents[2]
CRITERION = nn.CrossEntropyLoss(ignore_index=3)


def _wrapped(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return CRITERION(out.flatten(0, 1), y.flatten())


@pytest.mark.parametrize(
    ("loss_fn", "kind", "direct", "ignore"),
    [
        (nn.CrossEntropyLoss(), Kind.MULTICLASS, True, -100),
        (F.cross_entropy, Kind.MULTICLASS, True, -100),
        (functools.partial(F.cross_entropy, ignore_index=0), Kind.MULTICLASS, True, 0),
        (nn.NLLLoss(), Kind.LOG_PROBS, True, -100),
        (nn.BCEWithLogitsLoss(), Kind.BINARY_LOGITS, True, None),
        (F.binary_cross_entropy, Kind.BINARY_PROBS, True, None),
        (nn.MSELoss(), Kind.REGRESSION, True, None),
        (lambda o, y: F.mse_loss(o.squeeze(-1), y), Kind.REGRESSION, False, None),
        (_wrapped, Kind.MULTICLASS, False, 3),
        (lambda o, y: F.mse_loss(o, y) + F.cross_entropy(o, y), Kind.UNKNOWN, True, None),
        (nn.HuberLoss(), Kind.UNKNOWN, True, None),
        (None, Kind.UNKNOWN, True, None),
    ],
)
def test_infer_task(loss_fn: object, kind: Kind, direct: bool, ignore: int | None) -> None:
    task = infer_task(loss_fn)
    assert task.kind is kind
    if kind is not Kind.UNKNOWN:
        assert task.direct is direct and task.ignore_index == ignore


def test_class_axis_follows_the_targets_shape() -> None:
    task = infer_task(nn.CrossEntropyLoss())
    logits = torch.zeros(4, 7, 10)
    assert class_axis(task, torch.zeros(4, 10), torch.zeros(4, dtype=torch.long)) == 1
    assert class_axis(task, logits, torch.zeros(4, 10, dtype=torch.long)) == 1
    assert class_axis(task, logits, torch.zeros(4, 7, dtype=torch.long)) == 2
    assert class_axis(task, logits, torch.zeros(28, dtype=torch.long)) == 2
    assert class_axis(task, logits, torch.zeros(5, dtype=torch.long)) is None


def test_minimum_loss_of_soft_and_smoothed_targets() -> None:
    from trainlint.probe.initial_loss import minimum_loss

    logits = torch.zeros(4, 3)
    hard = torch.tensor([0, 1, 2, 0])
    assert minimum_loss(infer_task(nn.CrossEntropyLoss()), logits, hard) == 0.0
    uniform = torch.full((4, 3), 1 / 3)
    assert minimum_loss(infer_task(nn.CrossEntropyLoss()), logits, uniform) == pytest.approx(
        math.log(3)
    )
    smoothed = minimum_loss(infer_task(nn.CrossEntropyLoss(label_smoothing=0.3)), logits, hard)
    top, rest = 0.8, 0.1
    assert smoothed == pytest.approx(-(top * math.log(top) + 2 * rest * math.log(rest)))
    half = torch.full((4, 2), 0.5)
    assert minimum_loss(infer_task(nn.BCEWithLogitsLoss()), half, half) == pytest.approx(
        math.log(2)
    )
    assert minimum_loss(infer_task(nn.MSELoss()), half, half) == 0.0


@pytest.mark.parametrize(
    ("train", "eval_", "std", "expected"),
    [
        (2.2, 1.0, 2.3, []),  # EfficientNet: BatchNorm batch statistics only
        (5.2, 1.0, 7.7, [("P302", Severity.INFO)]),  # MNASNet
        (9.1, 1.0, 12.0, [("P302", Severity.WARNING)]),  # EfficientNet, N(0, 1) head
        (2.2, 2.0, 2.3, [("P302", Severity.WARNING)]),  # the weights' own scale
        (9.0, 3.5, 12.0, [("P301", Severity.ERROR)]),
        (2.2, None, 2.3, [("P302", Severity.WARNING)]),  # the eval path failed: train decides
    ],
)
def test_initial_loss_excess_is_confirmed_in_eval_mode(
    train: float, eval_: float | None, std: float, expected: list[tuple[str, Severity]]
) -> None:
    from trainlint.probe.initial_loss import judge, measure

    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    logits, targets = logits / logits.std() * std, torch.arange(16) % 10
    measured = measure(train * math.log(10), infer_task(nn.CrossEntropyLoss()), logits, targets)
    assert measured.excess
    found, summary = judge(measured, None if eval_ is None else eval_ * math.log(10))
    assert [(f.code, f.severity) for f in found] == expected
    if not found:
        assert "in eval mode (batch statistics or dropout" in summary


def test_collapse_groups_by_the_owning_module() -> None:
    universe = ["a.0.weight", "a.0.bias", "a.1.weight", "b.weight", "b.bias", "c"]
    assert collapse(["a.0.weight", "a.0.bias", "a.1.weight"], universe) == {
        "a": ["a.0.weight", "a.0.bias", "a.1.weight"]
    }
    assert collapse(["a.0.bias", "b.weight", "b.bias"], universe) == {
        "a.0.bias": ["a.0.bias"],
        "b": ["b.weight", "b.bias"],
    }
    assert collapse(universe, universe) == {"model": universe}


def test_codes_are_grouped_per_check_and_documented() -> None:
    for code in CODES.values():
        assert code.check in CHECKS
        owners = [c for c, prefix in PREFIXES.items() if code.code.startswith(prefix)]
        # The longest matching prefix names the check (P80x registration, not P8).
        assert max(owners, key=lambda c: len(PREFIXES[c])) == code.check, code
    assert set(PREFIXES) == set(CHECKS)
    section = (REPO / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in section


def test_report_json_render_and_raise() -> None:
    report = run_probe(mlp_adam(), max_steps=15).report
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["version"] == 1 and data["ok"] is True
    assert [c["check"] for c in data["checks"]] == [c for c in CHECKS if c not in OPT_IN]
    assert data["grad_norms"] and data["overfit_curve"]
    text = str(report)
    assert "Checks" in text and "Gradient norm per layer" in text and "█" in text
    assert "\x1b[" not in text  # plain text when stdout is not a terminal
    report.raise_for_findings()  # healthy: nothing at error level
    with pytest.raises(ProbeFailure, match="P406"):
        report.raise_for_findings(min_severity="info")


def test_report_ok_and_nonfinite_json() -> None:
    bad = Finding(
        "initial_loss", "P304", Severity.ERROR, "nan", "fix", "loss", {"loss": float("nan")}
    )
    report = ProbeReport([bad], [], "cpu", "unknown", 0, loss_curve=[float("inf")])
    assert not report.ok
    data = report.to_dict()
    assert data["findings"][0]["details"]["loss"] == "nan" and data["overfit_curve"] == ["inf"]
    with pytest.raises(AssertionError, match="P304"):
        report.raise_for_findings()


def test_checks_argument_limits_the_run() -> None:
    report = run_probe(mlp_adam(), checks=["data", "optimizer"]).report
    assert [c.name for c in report.checks] == ["data", "optimizer"]
    assert not report.loss_curve and not report.grad_norms
    with pytest.raises(ValueError, match="unknown checks"):
        probe(nn.Linear(2, 2), [], checks=["overfit"])


def test_max_steps_bounds_the_overfit_curve() -> None:
    report = run_probe(mlp_adam(), max_steps=7).report
    assert len(report.loss_curve) == 7


def test_misuse_of_probe_raises() -> None:
    with pytest.raises(TypeError):
        probe("not a model", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        probe(nn.Linear(2, 2), [], max_steps=0)


def test_package_surface_and_callable_module() -> None:
    assert probe_package.__all__ == ["Finding", "ProbeReport", "probe"]
    assert probe_package.Finding is Finding
    assert callable(probe_package)
    report = probe_package(nn.Linear(2, 2), [], nn.MSELoss())
    assert isinstance(report, ProbeReport) and report.by_code("P191")


def test_command_module_does_not_import_torch() -> None:
    code = "import sys, trainlint.probe.command, trainlint.probe; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_dict_batches_infer_the_task_from_logits_and_labels() -> None:
    from probe_models.healthy import hf_dict_batches

    report = run_probe(hf_dict_batches(), checks=["initial_loss"]).report
    assert report.task.startswith("multiclass")
    assert "log 3" in report.checks[0].summary


def test_hf_labels_out_of_range_are_caught_before_the_model_loss() -> None:
    from probe_models.healthy import hf_dict_batches

    pipeline = hf_dict_batches()
    for batch in pipeline.loader:
        batch["labels"] = batch["labels"] + 1  # 1..3 for 3 labels
    report = run_probe(pipeline).report
    (found,) = report.by_code("P103")
    assert found.details["classes"] == 3 and found.details["ignore_index"] == -100


def test_top_level_lazy_export_works_on_every_access() -> None:
    """``trainlint.probe`` becomes the subpackage after the first import; it stays callable."""
    code = (
        "import torch\n"
        "from trainlint import probe\n"
        "first = probe(torch.nn.Linear(2, 2), [], torch.nn.MSELoss())\n"
        "from trainlint import probe as again\n"
        "second = again(torch.nn.Linear(2, 2), [], torch.nn.MSELoss())\n"
        "print(first.by_code('P191') != [], second.by_code('P191') != [])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True"]


def test_batch_structure_problems_become_findings() -> None:
    x = torch.randn(16, 4)
    triples = [(x, x, x)]
    assert probe(nn.Linear(4, 4), triples, nn.MSELoss()).by_code("P192")
    assert probe(nn.Linear(4, 4), [(x, x)]).by_code("P193")


def test_step_fn_runs_custom_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    features = [torch.randn(16, 4) for _ in range(3)]
    batches = [{"features": f, "y": f.sum(dim=1, keepdim=True)} for f in features]

    def step(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(m(batch["features"]), batch["y"])

    report = probe(model, batches, step_fn=step, max_steps=150)
    assert report.ok and not report.at_least("warning")
    assert report.loss_curve[-1] < 0.5 * report.loss_curve[0]
