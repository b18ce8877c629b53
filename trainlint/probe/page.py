"""The probe report as one self-contained HTML page (and Jupyter's rich view of it).

Charts are drawn with matplotlib (``pip install "trainlint[report]"``) and embedded as
inline SVG, so the page needs no network and no JavaScript: the overfitting curves with
axes, per-layer gradient norms with flagged layers marked, and update/weight ratios
against their healthy band. Without matplotlib the page still has every table.
"""

from __future__ import annotations

import html
import importlib.util
import io
import math
from typing import TYPE_CHECKING, Any

from trainlint.diagnostics import Finding, Severity

if TYPE_CHECKING:
    from trainlint.probe.report import ProbeReport

_COLORS = {Severity.ERROR: "#c62828", Severity.WARNING: "#b26a00", Severity.INFO: "#1565c0"}
_STATUS_COLORS = {
    "passed": "#2e7d32",
    "warning": "#b26a00",
    "failed": "#c62828",
    "skipped": "#757575",
    "inconclusive": "#1565c0",
}
_CSS = """
.tl-probe{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:60rem;color:#222}
.tl-probe table{border-collapse:collapse;margin:.5rem 0 1rem}
.tl-probe td,.tl-probe th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.tl-probe .finding{border-left:4px solid;padding:.3rem .8rem;margin:.6rem 0}
.tl-probe .related{color:#555;font-size:.9em;margin:.15rem 0 .15rem 1.5rem}
.tl-probe code{background:#f3f3f3;padding:0 .2rem}
.tl-probe .muted{color:#666}
"""


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def page(report: ProbeReport) -> str:
    title = f"trainlint probe: {'OK' if report.ok else 'FAILED'}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{fragment(report)}</body></html>\n"
    )


def fragment(report: ProbeReport) -> str:
    parts = [
        "<div class='tl-probe'>",
        _header(report),
        _checks(report),
        _findings(report.findings),
        _charts(report),
        "</div>",
    ]
    return "\n".join(part for part in parts if part)


def _header(report: ProbeReport) -> str:
    color = "#2e7d32" if report.ok else "#c62828"
    verdict = "OK" if report.ok else "FAILED"
    return (
        f"<h2>trainlint probe <span style='color:{color}'>{verdict}</span></h2>"
        f"<p class='muted'>device {_e(report.device)} · task {_e(report.task)} · seed {report.seed}</p>"
    )


def _checks(report: ProbeReport) -> str:
    rows = "".join(
        f"<tr><td><b>{_e(c.name)}</b></td>"
        f"<td style='color:{_STATUS_COLORS[c.status.value]}'>{_e(c.status.value)}</td>"
        f"<td>{_e(c.summary)}</td></tr>"
        for c in report.checks
    )
    return f"<h3>Checks</h3><table><tr><th>check</th><th>verdict</th><th>summary</th></tr>{rows}</table>"


def _findings(findings: list[Finding]) -> str:
    if not findings:
        return "<h3>Findings</h3><p>None.</p>"
    parts = ["<h3>Findings</h3>"]
    for f in findings:
        if "related_to" in f.details:
            parts.append(
                f"<div class='related'>↳ <b>{_e(f.code)}</b> {_e(f.subject or '-')}: {_e(f.message)}</div>"
            )
            continue
        parts.append(
            f"<div class='finding' style='border-color:{_COLORS[f.severity]}'>"
            f"<b style='color:{_COLORS[f.severity]}'>{_e(f.code)} {_e(f.severity.value)}</b> "
            f"<span class='muted'>[{_e(f.check)}]</span> <code>{_e(f.subject or '-')}</code>"
            f"<p>{_e(f.message)}</p><p><b>fix:</b> {_e(f.hint)}</p></div>"
        )
    return "\n".join(parts)


def _charts(report: ProbeReport) -> str:
    if not (report.curves or report.loss_curve or report.grad_norms or report.update_ratios):
        return ""
    if not available():
        return (
            "<p class='muted'>Charts need matplotlib: <code>pip install "
            "\"trainlint[report]\"</code>.</p>" + _norm_table(report)
        )
    charts = [
        _loss_chart(report.curves or {"yours": report.loss_curve}),
        _norm_chart(report.grad_norms, _flagged(report.findings)) if report.grad_norms else "",
        _ratio_chart(report.update_ratios) if report.update_ratios else "",
    ]
    return "<h3>Charts</h3>" + "\n".join(chart for chart in charts if chart)


def _flagged(findings: list[Finding]) -> dict[str, str]:
    """Layers a gradient finding names, with the reason (dead, vanishing, detached...)."""
    reasons = {"P501": "unused", "P502": "detached", "P503": "zero", "P505": "vanishing", "P506": "exploding", "P508": "dead units"}
    return {f.subject: reasons[f.code] for f in findings if f.code in reasons and f.subject}


def _norm_table(report: ProbeReport) -> str:
    rows = "".join(f"<tr><td>{_e(layer)}</td><td>{value:.3g}</td></tr>" for layer, value in report.grad_norms)
    return f"<table><tr><th>layer</th><th>|grad|</th></tr>{rows}</table>" if rows else ""


def _svg(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _loss_chart(curves: dict[str, list[float]]) -> str:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.2))
    for label, values in curves.items():
        steps = [i for i, v in enumerate(values) if math.isfinite(v)]
        axis.plot(steps, [values[i] for i in steps], label=label, linewidth=1.4)
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            axis.axvline(bad[0], color="#c62828", linestyle=":", label=f"{label}: NaN/Inf")
    axis.set(xlabel="step", ylabel="loss", title="Overfitting one batch")
    if all(v > 0 for values in curves.values() for v in values if math.isfinite(v)):
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(frameon=False)
    return _svg(figure)


def _norm_chart(norms: list[tuple[str, float]], flagged: dict[str, str]) -> str:
    plt = _pyplot()
    height = max(2.5, 0.22 * len(norms) + 1)
    figure, axis = plt.subplots(figsize=(7, height))
    values = [v if v > 0 and math.isfinite(v) else float("nan") for _, v in norms]
    colors = ["#c62828" if layer in flagged else "#2e7d32" for layer, _ in norms]
    labels = [f"{layer} ({flagged[layer]})" if layer in flagged else layer for layer, _ in norms]
    positions = list(range(len(norms)))
    axis.barh(positions, values, color=colors)
    axis.set_yticks(positions, labels, fontsize=7)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set(xlabel="|grad| (mean over the gradient batches)", title="Gradient norm per layer")
    axis.grid(axis="x", alpha=0.3)
    return _svg(figure)


def _ratio_chart(ratios: list[tuple[str, float]]) -> str:
    plt = _pyplot()
    height = max(2.5, 0.22 * len(ratios) + 1)
    figure, axis = plt.subplots(figsize=(7, height))
    positions = list(range(len(ratios)))
    values = [r if r > 0 else float("nan") for _, r in ratios]
    from trainlint.probe.gradient_flow import RATIO_INFO

    low, high = RATIO_INFO
    colors = ["#2e7d32" if low <= r <= high else "#b26a00" for _, r in ratios]
    axis.axvspan(low, high, color="#2e7d32", alpha=0.08, label="healthy band")
    axis.barh(positions, values, color=colors)
    axis.set_yticks(positions, [layer for layer, _ in ratios], fontsize=7)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set(xlabel="||update|| / ||weight|| after one step", title="Update/weight ratio per layer")
    axis.legend(frameon=False, loc="lower right")
    return _svg(figure)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
