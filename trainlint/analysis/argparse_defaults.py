"""Numbers that come from command-line (and Lightning hyper-parameter) defaults: ``args.weight_decay`` is resolved to the
``default=`` of ``parser.add_argument('--weight-decay', '--wd', default=1e-4)``.

Scripts rarely hard-code hyper-parameters; they read them from ``argparse``. The default
is what a plain run uses, so it is the best static guess of the value. Anything ambiguous
(two arguments with the same destination, ``set_defaults`` overriding it, a default that
is not a number) resolves to ``None``, and callers treat ``None`` as unknown.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import ClassRef, DictV, Evaluator, Instance, Lit, SeqV, call_arg, literal_value


def resolve_number(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> float | None:
    """The number ``expr`` certainly has: a literal, a simple binding, or the argparse
    default of ``args.<dest>``; ``None`` when unknown."""
    direct = ev.number(expr, module)
    if direct is not None:
        return direct
    if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and _unknown(expr.value, module, ev):
        return argparse_default(expr.attr.value, module, ev)
    if isinstance(expr, cst.Attribute) and dotted(expr.value) == "self.hparams":
        return _hparam(expr, module, ev)
    return None


def _hparam(expr: cst.Attribute, module: ModuleModel, ev: Evaluator) -> float | None:
    """Lightning's ``self.hparams.<name>`` is the ``__init__`` parameter ``<name>`` saved
    by ``save_hyperparameters()``: its default, or the value passed where it is built."""
    cls = module.method_class(module.enclosing_function(expr))
    if cls is None:
        return None
    for method in module.functions:
        if method.name.value == "__init__" and module.method_class(method) is cls:
            params = method.params
            for param in (*params.posonly_params, *params.params, *params.kwonly_params):
                if param.name.value == expr.attr.value:
                    return ev.number(param.name, module)
    return None


def _unknown(receiver: cst.Name, module: ModuleModel, ev: Evaluator) -> bool:
    """A parsed-arguments namespace evaluates to nothing we model; a user object or a
    literal container does not, and its attributes are not command-line options."""
    return not any(isinstance(v, (Instance, ClassRef, DictV, SeqV, Lit)) for v in ev.eval(receiver, module))


def argparse_default(dest: str, module: ModuleModel, ev: Evaluator) -> float | None:
    """The numeric default of the command-line option stored as ``dest``, looked up in
    ``module`` first and then in the other loaded modules of the project."""
    for candidate in _search_order(module, ev):
        found = _default_in(dest, candidate, ev)
        if found is not _ABSENT:
            return found  # type: ignore[return-value]
    return None


_ABSENT = object()


def _search_order(module: ModuleModel, ev: Evaluator) -> Iterator[ModuleModel]:
    yield module
    # Options declared in a sibling config module; other folders are other scripts.
    yield from (o for o in ev.project.loaded() if o is not module and o.path.parent == module.path.parent)


def _default_in(dest: str, module: ModuleModel, ev: Evaluator) -> object:
    """The default for ``dest`` declared in ``module``; ``_ABSENT`` when no option there
    stores into ``dest``; ``None`` when it does but the default is not one known number."""
    if _overridden(dest, module):
        return None
    defaults = [call_arg(call, None, "default") for call in module.calls_by_name.get("add_argument", []) if _dest(call) == dest]
    if not defaults:
        return _ABSENT
    numbers = {ev.number(d, module) if d is not None else None for d in defaults}
    return numbers.pop() if len(numbers) == 1 else None


def _overridden(dest: str, module: ModuleModel) -> bool:
    """``parser.set_defaults(weight_decay=0)`` replaces the ``add_argument`` default."""
    return any(call_arg(call, None, dest) is not None for call in module.calls_by_name.get("set_defaults", []))


def _dest(call: cst.Call) -> str | None:
    """Where argparse stores the option: ``dest=``, else the first long option, else the
    first option string, with dashes turned into underscores."""
    explicit = call_arg(call, None, "dest")
    if explicit is not None:
        value = literal_value(explicit)
        return value if isinstance(value, str) else None
    flags = [v for v in (literal_value(a.value) for a in call.args if a.keyword is None and not a.star) if isinstance(v, str)]
    if not flags:
        return None
    longs = [f for f in flags if f.startswith("--")]
    chosen = longs[0] if longs else flags[0]
    return chosen.lstrip("-").replace("-", "_")
