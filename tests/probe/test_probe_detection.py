"""Every buggy fixture is caught with the right code and subject; healthy ones stay quiet."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import ProbeRun
from probe_models import BUGGY, HEALTHY

from trainlint.diagnostics import Severity


@pytest.mark.parametrize("name", sorted(BUGGY))
def test_bug_is_reported(name: str, probed: Callable[[str], ProbeRun]) -> None:
    run = probed(name)
    assert run.pipeline.expected, f"{name} declares no expected finding"
    for expected in run.pipeline.expected:
        matches = [
            f
            for f in run.report.findings
            if f.code == expected.code
            and (expected.subject is None or f.subject == expected.subject)
        ]
        assert matches, (
            f"{name}: expected {expected}, got {[(f.code, f.subject) for f in run.report.findings]}"
        )
        assert all(f.severity.rank >= Severity.WARNING.rank for f in matches)


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_pipeline_has_no_error_or_warning(
    name: str, probed: Callable[[str], ProbeRun]
) -> None:
    report = probed(name).report
    loud = [(f.code, f.subject, f.message) for f in report.at_least(Severity.WARNING)]
    assert loud == []
    assert report.ok


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_pipeline_overfits(name: str, probed: Callable[[str], ProbeRun]) -> None:
    """The overfit check must genuinely pass on healthy pipelines, not merely stay silent."""
    report = probed(name).report
    assert report.loss_curve, "the overfit check did not run"
    assert not report.by_code("P406"), report.by_code("P406")


def test_softmax_finding_names_the_static_twin(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("softmax_head").report.by_code("P201")
    assert "TL101" in found.message and found.severity is Severity.ERROR
    assert found.details["producer"] == "Softmax"


def test_unused_branch_is_grouped_by_module(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("unused_branch").report.by_code("P501")
    assert found.details["parameters"] == [
        "branch.0.weight",
        "branch.0.bias",
        "branch.2.weight",
        "branch.2.bias",
    ]
    assert "DistributedDataParallel" in found.message


def test_detached_trunk_is_an_error_and_head_is_fine(probed: Callable[[str], ProbeRun]) -> None:
    findings = probed("detached_trunk").report.by_check("gradient_flow")
    assert [(f.code, f.subject, f.severity) for f in findings] == [
        ("P502", "trunk", Severity.ERROR)
    ]


def test_dead_relu_reports_the_fraction(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("dead_relu").report.by_code("P508")
    assert found.details["dead_fraction"] == 1.0 and found.severity is Severity.ERROR


def test_ignores_input_uses_the_zero_input_control(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("ignores_input").report.by_code("P404")
    assert found.details["zero_input_control"] is not None


def test_huge_init_reports_the_logit_scale(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("huge_init").report.by_code("P301")
    assert found.details["ratio"] > 3 and found.details["logit_std"] > 10
    assert "logit std" in found.message


def test_labels_out_of_range_stop_before_the_loss(probed: Callable[[str], ProbeRun]) -> None:
    report = probed("labels_out_of_range").report
    (found,) = report.by_code("P103")
    assert (found.details["min"], found.details["max"], found.details["classes"]) == (1, 5, 5)
    # No loss ran: on CUDA it would have been a device-side assert.
    statuses = {c.name: c.status.value for c in report.checks}
    assert statuses["initial_loss"] == statuses["overfit_batch"] == "skipped"
    assert not report.loss_curve


def test_fp16_overflow_is_a_warning_without_amp_dtype() -> None:
    """On CPU without amp_dtype no float16 autocast runs (45x slower than float32 there):
    the float32 activations are checked against the float16 range, and the report says so."""
    from conftest import run_probe
    from probe_models.buggy import fp16_overflow

    run = run_probe(fp16_overflow(), amp_dtype=None, checks=["amp_overflow"])
    (found,) = run.report.by_code("P702")
    assert found.subject == "fc1" and found.severity is Severity.WARNING
    assert "bfloat16" in found.hint and "float32" in found.message
    (verdict,) = run.report.checks
    assert "float16 autocast skipped on CPU" in verdict.summary


def test_zero_lr_also_explains_the_flat_overfit(probed: Callable[[str], ProbeRun]) -> None:
    report = probed("zero_learning_rate").report
    (overfit,) = report.by_check("overfit_batch")
    assert overfit.code == "P405" and overfit.subject == "optimizer"


def test_forward_error_names_the_user_line(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("forward_raises").report.by_code("P299")
    assert found.details["location"].endswith(
        "buggy.py:" + found.details["location"].rsplit(":", 1)[1]
    )
    assert "probe_models" in found.details["location"] and "boom in user forward" in found.message


def test_library_only_error_names_the_module(probed: Callable[[str], ProbeRun]) -> None:
    (found,) = probed("batchnorm_single_sample").report.by_code("P299")
    assert found.subject == "1" and found.details["module"] == "1"
