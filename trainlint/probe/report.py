"""The probe's result: findings, a verdict per check, and their rich rendering."""

from __future__ import annotations

import enum
import io
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

from trainlint.diagnostics import Finding, Severity

JSON_VERSION = 1
BAR_WIDTH = 30
_SPARK = "▁▂▃▄▅▆▇█"


class Status(str, enum.Enum):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"
    # Ran, found nothing wrong, but could not reach its verdict (e.g. a batch not memorised
    # within max_steps while the loss still falls).
    INCONCLUSIVE = "inconclusive"


_STYLE = {
    Status.PASSED: ("✓ passed", "green"),
    Status.WARNING: ("! warning", "yellow"),
    Status.FAILED: ("✗ failed", "bold red"),
    Status.SKIPPED: ("– not run", "dim"),
    Status.INCONCLUSIVE: ("? undecided", "cyan"),
}
# Info findings that mean "no verdict" rather than "passed".
UNDECIDED = frozenset({"P406"})
_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


@dataclass(frozen=True)
class CheckOutcome:
    """One row of the verdict table."""

    name: str
    status: Status
    summary: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status.value, "summary": self.summary}


def outcome(name: str, findings: list[Finding], summary: str) -> CheckOutcome:
    """The verdict of a check that ran: its worst finding decides."""
    own = [f for f in findings if f.check == name]
    if any(f.severity is Severity.ERROR for f in own):
        status = Status.FAILED
    elif any(f.severity is Severity.WARNING for f in own):
        status = Status.WARNING
    elif any(f.code in UNDECIDED for f in own):
        status = Status.INCONCLUSIVE
    else:
        status = Status.PASSED
    return CheckOutcome(name, status, summary)


class ProbeFailure(AssertionError):
    """Raised by :meth:`ProbeReport.raise_for_findings`; an AssertionError so pytest shows it."""


@dataclass
class ProbeReport:
    """Everything one :func:`trainlint.probe` call found."""

    findings: list[Finding]
    checks: list[CheckOutcome]
    device: str
    task: str
    seed: int
    grad_norms: list[tuple[str, float]] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    # ||update|| / ||weight|| per layer after one optimizer step.
    update_ratios: list[tuple[str, float]] = field(default_factory=list)
    # Overfitting curves by run: "yours", and "reference" / "zero-input control" when run.
    curves: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def at_least(self, severity: Severity | str) -> list[Finding]:
        rank = Severity(severity).rank
        return [f for f in self.findings if f.severity.rank >= rank]

    def raise_for_findings(self, min_severity: Severity | str = Severity.ERROR) -> None:
        """Raise :class:`ProbeFailure` listing every finding at or above ``min_severity``.

        Meant for tests: ``probe(model, loader, loss_fn).raise_for_findings()``.
        """
        bad = self.at_least(min_severity)
        if bad:
            lines = [
                f"{f.code} {f.severity.value} [{f.check}] {f.subject or '-'}: {f.message}"
                for f in bad
            ]
            raise ProbeFailure("trainlint probe found:\n" + "\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite floats become the strings "nan", "inf", "-inf"."""
        data = {
            "version": JSON_VERSION,
            "ok": self.ok,
            "device": self.device,
            "task": self.task,
            "seed": self.seed,
            "checks": [c.to_dict() for c in self.checks],
            "findings": [f.to_dict() for f in self.findings],
            "grad_norms": [{"layer": layer, "norm": norm} for layer, norm in self.grad_norms],
            "overfit_curve": self.loss_curve,
            "update_ratios": [{"layer": layer, "ratio": r} for layer, r in self.update_ratios],
            "overfit_curves": self.curves,
        }
        ready: dict[str, Any] = _json_ready(data)
        return ready

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield _header(self)
        yield _verdicts(self.checks)
        if self.findings:
            yield _findings_table(self.findings)
        if self.grad_norms:
            yield _norm_chart(self.grad_norms)
        if self.loss_curve:
            yield Text.assemble(("overfit loss  ", "bold"), _sparkline(self.loss_curve))

    def __str__(self) -> str:
        return render(self, color=sys.stdout.isatty())


def render(report: ProbeReport, color: bool, width: int = 110) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="auto" if color else None,
        highlight=False,
    )
    console.print(report)
    return buffer.getvalue().rstrip("\n")


def _header(report: ProbeReport) -> Text:
    errors = sum(f.severity is Severity.ERROR for f in report.findings)
    warnings = sum(f.severity is Severity.WARNING for f in report.findings)
    verdict = ("OK", "bold green") if report.ok else ("FAILED", "bold red")
    return Text.assemble(
        ("trainlint probe ", "bold"),
        verdict,
        f"  {errors} error(s), {warnings} warning(s)  ·  device {report.device}  ·  "
        f"task {report.task}  ·  seed {report.seed}",
    )


def _verdicts(checks: list[CheckOutcome]) -> Table:
    table = Table(title="Checks", title_justify="left", expand=False)
    table.add_column("check", style="bold")
    table.add_column("verdict")
    table.add_column("summary", overflow="fold")
    for check in checks:
        label, style = _STYLE[check.status]
        table.add_row(check.name, Text(label, style=style), check.summary)
    return table


def _findings_table(findings: list[Finding]) -> Table:
    table = Table(title="Findings", title_justify="left", show_lines=True)
    table.add_column("code", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("subject", overflow="fold")
    table.add_column("message and fix", overflow="fold", ratio=1)
    for f in findings:
        body = Text.assemble(f.message, "\n", ("fix: ", "bold"), f.hint)
        table.add_row(
            f.code,
            Text(f.severity.value, style=_SEVERITY_STYLE[f.severity]),
            f.subject or "-",
            body,
        )
    return table


def _norm_chart(norms: list[tuple[str, float]]) -> Group:
    """Per-layer gradient norms as bars on a log scale (orders of magnitude are what matter)."""
    table = Table(box=None)
    table.add_column("layer", overflow="fold")
    table.add_column("|grad|", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    logs = [math.log10(v) for _, v in norms if v > 0 and math.isfinite(v)]
    low, high = (min(logs), max(logs)) if logs else (0.0, 0.0)
    span = max(high - low, 1.0)
    for layer, value in norms:
        if value > 0 and math.isfinite(value):
            width = 1 + round((math.log10(value) - low) / span * (BAR_WIDTH - 1))
            bar = Text("█" * width, style="green")
        else:
            bar = Text("·" if value == 0 else "NaN/Inf", style="red")
        table.add_row(layer, f"{value:.2e}", bar)
    return Group(Text("Gradient norm per layer (log scale)", style="italic"), table)


def _sparkline(values: list[float]) -> Text:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Text("NaN", style="red")
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    chars = "".join(
        _SPARK[min(len(_SPARK) - 1, int((v - low) / span * len(_SPARK)))]
        if math.isfinite(v)
        else "×"
        for v in _downsample(values, 60)
    )
    return Text(f"{chars}  {values[0]:.4g} → {values[-1]:.4g} ({len(values)} steps)")


def _downsample(values: list[float], size: int) -> list[float]:
    if len(values) <= size:
        return values
    step = len(values) / size
    return [values[int(i * step)] for i in range(size)]


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)
