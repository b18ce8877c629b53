"""The probe's result: findings, a verdict per check, and their rich rendering."""

from __future__ import annotations

import enum
import io
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from trainlint.diagnostics import Finding, Severity

JSON_VERSION = 1
BAR_WIDTH = 30
MAX_RELATED = 5  # consequences listed under a lead in the text report
LAYER_WIDTH = 36  # with the norm and a full bar: 77 columns
MAX_CHART_ROWS = 24
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
            yield _findings(self.findings)
        if self.grad_norms:
            yield _norm_chart(self.grad_norms, self.findings)
        if self.loss_curve:
            yield Text.assemble(("overfit loss  ", "bold"), _sparkline(self.loss_curve))

    def __str__(self) -> str:
        """The text report, as wide as the terminal (80 columns when there is none)."""
        return render(self, color=sys.stdout.isatty())

    def _repr_html_(self) -> str:
        """Jupyter's rich view: the same page as :meth:`save_html`, without its frame."""
        from trainlint.probe.page import fragment

        return fragment(self)

    def save_html(self, path: str | os.PathLike[str]) -> None:
        """A self-contained HTML page with charts (``pip install "trainlint[report]"``)."""
        from trainlint.probe.page import page

        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page(self))


def render(report: ProbeReport, color: bool, width: int | None = None) -> str:
    """The report as text; ``width`` None follows the terminal (80 columns without one)."""
    buffer = io.StringIO()
    if width is None:
        width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="auto" if color else None,
        highlight=False,
    )
    console.print(report)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def _header(report: ProbeReport) -> Text:
    leads = [f for f in report.findings if "related_to" not in f.details]
    errors = sum(f.severity is Severity.ERROR for f in leads)
    warnings = sum(f.severity is Severity.WARNING for f in leads)
    related = len(report.findings) - len(leads)
    verdict = ("OK", "bold green") if report.ok else ("FAILED", "bold red")
    more = f" (+{related} related)" if related else ""
    return Text.assemble(
        ("trainlint probe ", "bold"),
        verdict,
        f"  {errors} error(s), {warnings} warning(s){more}\n",
        (f"device {report.device} · task {report.task} · seed {report.seed}", "dim"),
    )


def _verdicts(checks: list[CheckOutcome]) -> Table:
    table = Table(title="Checks", title_justify="left", expand=False, box=box.SIMPLE_HEAD)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("summary", overflow="fold")
    for check in checks:
        label, style = _STYLE[check.status]
        table.add_row(check.name, Text(label, style=style), check.summary)
    return table


def _findings(findings: list[Finding]) -> Group:
    """Each lead finding in full; the findings it explains as one line each under it."""
    parts: list[RenderableType] = [Text("Findings", style="italic")]
    hidden: list[str] = []
    shown = 0
    for f in findings:
        if "related_to" in f.details:
            if shown == MAX_RELATED:
                hidden.append(f.code)
                continue
            shown += 1
            line = Text.assemble(
                ("↳ ", "dim"), (f"{f.code} ", "bold"), (f"{f.subject or '-'}: ", "dim"),
                _first_clause(f.message),
            )
            parts.append(Padding(line, (0, 0, 0, 4)))
            continue
        _more_related(parts, hidden)
        hidden, shown = [], 0
        parts.append(
            Text.assemble(
                "\n",
                (f"{f.code} {f.severity.value}", _SEVERITY_STYLE[f.severity]),
                ("  [", "dim"),
                (f.check, "dim"),
                ("]  ", "dim"),
                (f.subject or "-", "bold"),
            )
        )
        parts.append(Padding(Text(f.message), (0, 0, 0, 2)))
        parts.append(Padding(Text.assemble(("fix: ", "bold"), f.hint), (0, 0, 0, 2)))
    _more_related(parts, hidden)
    return Group(*parts)


def _more_related(parts: list[RenderableType], hidden: list[str]) -> None:
    """One line for the consequences beyond ``MAX_RELATED`` (all are in JSON and HTML)."""
    if hidden:
        counts = ", ".join(f"{code} ×{hidden.count(code)}" for code in dict.fromkeys(hidden))
        line = Text(f"↳ {len(hidden)} more related: {counts}", style="dim")
        parts.append(Padding(line, (0, 0, 0, 4)))


def _first_clause(message: str) -> str:
    return message.split(": ", 1)[0] if len(message) > 90 else message


def _norm_chart(norms: list[tuple[str, float]], findings: list[Finding]) -> Group:
    """Per-layer gradient norms as bars on a log scale (orders of magnitude are what matter).

    Long models show the flagged layers and an even sample of the rest; the HTML report
    has them all.
    """
    flagged = {f.subject for f in findings if f.check == "gradient_flow"}
    shown = _sample(norms, flagged)
    table = Table(box=None, pad_edge=False)
    table.add_column("layer", no_wrap=True)
    table.add_column("|grad|", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    logs = [math.log10(v) for _, v in norms if v > 0 and math.isfinite(v)]
    low, high = (min(logs), max(logs)) if logs else (0.0, 0.0)
    span = max(high - low, 1.0)
    for layer, value in shown:
        style = "red" if layer in flagged else "green"
        if value > 0 and math.isfinite(value):
            width = 1 + round((math.log10(value) - low) / span * (BAR_WIDTH - 1))
            bar = Text("█" * width, style=style)
        else:
            bar = Text("·" if value == 0 else "NaN/Inf", style="red")
        table.add_row(_tail(layer, LAYER_WIDTH), f"{value:.2e}", bar)
    title = "Gradient norm per layer (log scale)"
    if len(shown) < len(norms):
        title += f", {len(shown)} of {len(norms)} layers"
    return Group(Text(title, style="italic"), table)


def _tail(name: str, width: int) -> str:
    """The end of a long dotted name: the layer itself, not the model's outer modules."""
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _sample(norms: list[tuple[str, float]], flagged: set[str | None]) -> list[tuple[str, float]]:
    if len(norms) <= MAX_CHART_ROWS:
        return norms
    step = len(norms) / MAX_CHART_ROWS
    keep = {int(i * step) for i in range(MAX_CHART_ROWS)} | {len(norms) - 1}
    return [row for i, row in enumerate(norms) if i in keep or row[0] in flagged]


def _sparkline(values: list[float]) -> Text:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Text("NaN", style="red")
    # From zero (when the losses are positive): a loss that barely moves draws flat.
    low, high = min(0.0, *finite), max(finite)
    span = (high - low) or 1.0
    chars = "".join(
        _SPARK[min(len(_SPARK) - 1, int((v - low) / span * len(_SPARK)))]
        if math.isfinite(v)
        else "×"
        for v in _downsample(values, 32)
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
