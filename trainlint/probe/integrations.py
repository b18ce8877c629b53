"""What the framework callbacks share: run the probe, keep the report, fail fast on errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlint.diagnostics import Severity
from trainlint.probe.report import ProbeFailure, ProbeReport


class ProbeSettings:
    """Options the callbacks pass on to :func:`trainlint.probe`, plus when to stop training.

    ``fail_on`` is the lowest severity that aborts the run (``"error"`` by default; None
    only reports). ``probe_kwargs`` go to ``probe()`` (``max_steps``, ``checks``,
    ``amp_dtype``, ``seed``).
    """

    def __init__(self, fail_on: Severity | str | None = Severity.ERROR, verbose: bool = True, **probe_kwargs: Any) -> None:
        self.fail_on = Severity(fail_on) if fail_on is not None else None
        self.verbose = verbose
        self.probe_kwargs = {"max_steps": 100, **probe_kwargs}
        self.report: ProbeReport | None = None

    def run(self, model: Any, loader: Iterable[Any], **kwargs: Any) -> ProbeReport:
        from trainlint.probe.api import probe

        self.report = probe(model, loader, **kwargs, **self.probe_kwargs)
        if self.verbose:
            print(self.report)
        if self.fail_on is not None and self.report.at_least(self.fail_on):
            self.report.raise_for_findings(self.fail_on)
        return self.report


__all__ = ["ProbeFailure", "ProbeSettings"]
