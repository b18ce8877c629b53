from __future__ import annotations

from collections.abc import Iterator

from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class UnknownNoqaCode(Rule):
    """``# noqa: TL999``: a code shaped like trainlint's that names no rule. Reported by the
    linter itself (see ``Linter._noqa_hygiene``); opt-in, like ruff's RUF100."""

    code = "TL902"
    name = "unknown-noqa-code"
    severity = Severity.INFO
    summary = "A `# noqa` directive names a TL code that no rule has, so it silences nothing (opt-in)."
    message = "unknown rule code in `noqa` directive"
    hint = "Fix the code's spelling (`trainlint rules` lists every code), or remove it."
    triggers = ("\0never\0",)
    opt_in = True

    def check(self, ctx: Context) -> Iterator[Report]:
        return iter(())
