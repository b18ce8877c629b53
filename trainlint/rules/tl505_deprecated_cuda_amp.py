from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.amp import DEPRECATED_AMP, deprecated_import, modern_call, modern_import, version_fallback
from trainlint.analysis.training import call_text
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class DeprecatedCudaAmp(Rule):
    code = "TL505"
    name = "deprecated-cuda-amp"
    severity = Severity.WARNING
    summary = "torch.cuda.amp.autocast / torch.cuda.amp.GradScaler are deprecated in favour of torch.amp."
    message = "torch.cuda.amp is deprecated: use torch.amp with the device \"cuda\""
    hint = "Import from torch.amp and pass the device first: torch.amp.autocast(\"cuda\", ...), torch.amp.GradScaler(\"cuda\", ...)."
    triggers = ("cuda.amp", "cuda import amp")

    def check(self, ctx: Context) -> Iterator[Report]:
        lines: set[int | None] = set()
        for node, message in (*_imports(ctx), *_calls(ctx)):
            line = ctx.model.line_of(node)
            if line not in lines and not version_fallback(node, ctx.model):
                lines.add(line)
                yield Report(node, message=message)


def _imports(ctx: Context) -> Iterator[tuple[cst.CSTNode, str]]:
    statements = {
        id(b.node): b.node
        for scope in ctx.model.scopes.values()
        for bindings in scope.bindings.values()
        for b in bindings
        if b.kind == "import"
    }
    for statement in statements.values():
        if isinstance(statement, cst.ImportFrom) and deprecated_import(statement):
            yield statement, (
                f"`{call_text(statement, ctx.model)}` imports deprecated torch.cuda.amp APIs; "
                f"write `{modern_import(statement, ctx.model)}` and pass \"cuda\" as the first argument"
            )


def _calls(ctx: Context) -> Iterator[tuple[cst.CSTNode, str]]:
    for call in ctx.model.calls:
        for qualname in sorted(ctx.evaluator.callee(call, ctx.model) & DEPRECATED_AMP.keys()):
            modern = modern_call(call, qualname, ctx.model)
            replacement = f"`{modern}`" if modern else f"torch.amp.{DEPRECATED_AMP[qualname][0]}(\"cuda\", ...)"
            yield call, f"`{qualname}` is deprecated; write {replacement} instead"
