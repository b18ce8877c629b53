from __future__ import annotations

from collections.abc import Iterator, Sequence

import libcst as cst

from trainlint.analysis.amp import (
    DEPRECATED_AMP, DEPRECATED_MODULE, MODERN_MODULE, deprecated_import, modern_call, modern_import, version_fallback,
)
from trainlint.analysis.brains.torch import LATE_MODERN_AMP
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.training import call_text
from trainlint.analysis.values import Evaluator
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule


class DeprecatedCudaAmp(Rule):
    code = "TL505"
    name = "deprecated-cuda-amp"
    severity = Severity.WARNING
    summary = "torch.cuda.amp.autocast / torch.cuda.amp.GradScaler are deprecated in favour of torch.amp."
    message = "torch.cuda.amp is deprecated: use torch.amp with the device \"cuda\""
    hint = "Import from torch.amp and pass the device first: torch.amp.autocast(\"cuda\", ...), torch.amp.GradScaler(\"cuda\", ...)."
    triggers = ("cuda.amp", "cuda import amp")
    # ``torch.cuda.amp.X(...)`` -> ``torch.amp.X("cuda", ...)``: the new API with ``"cuda"``
    # first is the same function; positional arguments become keywords because the
    # signatures differ. Safe for autocast, which every torch 2 has under ``torch.amp``;
    # unsafe where a GradScaler is rewritten: ``torch.amp.GradScaler`` needs torch 2.3, and
    # the analysis cannot see which torch the code runs on. Old-torch fallback branches are
    # neither flagged nor fixed.
    fix_safety = FixSafety.SAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        lines: set[int | None] = set()
        for node, message in (*_imports(ctx), *_calls(ctx)):
            line = ctx.model.line_of(node)
            if line not in lines and not version_fallback(node, ctx.model):
                lines.add(line)
                yield Report(node, message=message)

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        model, ev = ctx.model, ctx.evaluator
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name):
            # A bare ``autocast()`` is rewritten together with the import that binds it.
            node = _importing(node.func.value, model) or node
        if isinstance(node, cst.ImportFrom):
            edits = _import_edits(node, model, ev)
        else:
            edit = _call_edit(node, model, ev) if isinstance(node, cst.Call) else None
            edits = [edit] if edit is not None else []
        if not edits:
            return None
        return Fix(edits, FixSafety.UNSAFE if _apis(node, model, ev) & LATE_MODERN_AMP else None)


def _apis(node: cst.CSTNode, model: ModuleModel, ev: Evaluator) -> set[str]:
    """The ``torch.amp`` names that the fix of ``node`` writes (``GradScaler``, ``autocast``)."""
    if isinstance(node, cst.ImportFrom) and isinstance(node.names, Sequence):
        return {alias.name.value for alias in node.names if isinstance(alias.name, cst.Name)}
    if isinstance(node, cst.Call):
        return {DEPRECATED_AMP[qualname][0] for qualname in ev.callee(node, model) & DEPRECATED_AMP.keys()}
    return set()


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


def _importing(name: str, model: ModuleModel) -> cst.ImportFrom | None:
    for binding in model.module_scope.bindings.get(name, []):
        if isinstance(binding.node, cst.ImportFrom) and deprecated_import(binding.node):
            return binding.node
    return None


def _call_edit(call: cst.Call, model: ModuleModel, ev: Evaluator) -> Edit | None:
    for qualname in sorted(ev.callee(call, model) & DEPRECATED_AMP.keys()):
        # ``amp.autocast()`` after ``from torch.cuda import amp`` would need a new import.
        if isinstance(call.func, cst.Attribute) and ".cuda.amp." not in (dotted(call.func) or ""):
            return None
        modern = modern_call(call, qualname, model)
        return Edit(call, cst.parse_expression(modern)) if modern is not None else None
    return None


def _import_edits(statement: cst.ImportFrom, model: ModuleModel, ev: Evaluator) -> list[Edit]:
    """The import and, in the same change, every call through the names it binds: the
    import alone would leave ``autocast()`` without its device argument."""
    if not deprecated_import(statement) or not isinstance(statement.names, Sequence) or version_fallback(statement, model):
        return []
    names = {alias.name.value for alias in statement.names if isinstance(alias.name, cst.Name)}
    if any(f"{DEPRECATED_MODULE}.{name}" not in DEPRECATED_AMP for name in names):
        return []  # e.g. custom_fwd, whose torch.amp counterpart has another signature
    edits = [Edit(statement, statement.with_changes(module=cst.parse_expression(MODERN_MODULE)))]
    for call in model.calls:
        if isinstance(call.func, cst.Name) and ev.callee(call, model) & DEPRECATED_AMP.keys():
            if version_fallback(call, model):
                return []  # old-torch code path: the deprecated API is the point there
            edit = _call_edit(call, model, ev)
            if edit is None:
                return []
            edits.append(edit)
    return edits
