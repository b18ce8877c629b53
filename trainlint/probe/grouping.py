"""One bug, one lead finding: consequences are grouped under the most precise cause.

Dropout with p=1 kills every gradient downstream, so dozens of layers look "dead" and the
batch cannot be overfit; the dropout finding is what to fix. Each consequence code lists
the causes that explain it; when one of them was found, the consequence gets
``details["related_to"]`` and is listed right after its cause, which comes first.
"""

from __future__ import annotations

from dataclasses import replace

from trainlint.diagnostics import Finding, Severity

# Causes, most precise first (a prefix stands for every code that starts with it).
PRECISION: tuple[str, ...] = (
    "P80",
    "P1",
    "P510",
    "P811",
    "P201",
    "P202",
    "P203",
    "P206",
    "P812",
    "P821",
    "P822",
    "P831",
    "P9",
    "P606",
    "P601",
    "P603",
    "P509",
    "P502",
    "P501",
    "P204",
    "P504",
    "P508",
    "P505",
    "P401",
    "P402",
)
_DATA_BUGS = ("P101", "P102", "P103", "P104", "P105", "P106", "P110")
_OUTPUT_BUGS = ("P201", "P202", "P203", "P206", "P811", "P812", "P510")
_MODEL_BUGS = (*_OUTPUT_BUGS, *_DATA_BUGS, "P80", "P821", "P601", "P603", "P606", "P502", "P509")
# Consequence code -> the causes that explain it.
EXPLAINED_BY: dict[str, tuple[str, ...]] = {
    **{code: (*_MODEL_BUGS, "P508", "P505", "P504") for code in ("P403", "P404", "P405", "P406")},
    **{code: (*_OUTPUT_BUGS, *_DATA_BUGS, "P204") for code in ("P301", "P302", "P303")},
    **{code: ("P510", "P201", "P202", "P204", "P502", "P811", "P508") for code in ("P503", "P505", "P508")},
    "P304": ("P204", "P101", "P102"),
    "P401": ("P204", "P504", "P101", "P102"),
    "P504": ("P204", "P101", "P102"),
    "P507": ("P401", "P402", "P601"),
}


def rank(code: str) -> int:
    return next((i for i, p in enumerate(PRECISION) if code.startswith(p)), len(PRECISION))


def label(lead: Finding) -> str:
    return f"{lead.code} {lead.subject}" if lead.subject else lead.code


def group(findings: list[Finding], check_order: tuple[str, ...]) -> list[Finding]:
    """Groups in order of their worst severity, then of their lead's precision."""
    ordered = sorted(
        findings, key=lambda f: (rank(f.code), -f.severity.rank, check_order.index(f.check), f.code)
    )
    leads: list[Finding] = []
    related: dict[int, list[Finding]] = {}
    for item in ordered:
        cause = _cause(item, leads)
        if cause is None:
            leads.append(item)
            related[id(item)] = []
        else:
            tagged = replace(item, details={**item.details, "related_to": label(cause)})
            related[id(cause)].append(tagged)

    def worst(lead: Finding) -> int:
        return max(f.severity.rank for f in (lead, *related[id(lead)]))

    leads.sort(key=lambda lead: (-worst(lead), rank(lead.code), check_order.index(lead.check)))
    return [f for lead in leads for f in (lead, *related[id(lead)])]


def _cause(item: Finding, leads: list[Finding]) -> Finding | None:
    causes = EXPLAINED_BY.get(item.code, ())
    for lead in leads:
        explains = any(lead.code.startswith(c) for c in causes)
        # Several layers with the same symptom: one finding leads, the others follow it.
        repeated = lead.code == item.code and item.code in EXPLAINED_BY
        if (explains and lead.severity is not Severity.INFO) or repeated:
            return lead
    return None
