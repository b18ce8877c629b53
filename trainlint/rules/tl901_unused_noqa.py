from __future__ import annotations

from collections.abc import Iterator

from trainlint.diagnostics import Severity
from trainlint.fixing import FixSafety
from trainlint.rule import Context, Report, Rule


class UnusedNoqa(Rule):
    """``# noqa`` codes that silence nothing. Reported by the linter itself, after every
    other rule ran on the file (see ``Linter._noqa_hygiene``); opt-in, like ruff's RUF100."""

    code = "TL901"
    name = "unused-noqa"
    severity = Severity.INFO
    summary = "A `# noqa` directive names trainlint codes that silence nothing on its line (opt-in)."
    message = "unused `noqa` directive"
    hint = "Remove the codes that no longer silence a finding (`--fix` does it)."
    triggers = ("\0never\0",)
    fix_safety = FixSafety.SAFE
    opt_in = True

    def check(self, ctx: Context) -> Iterator[Report]:
        return iter(())
