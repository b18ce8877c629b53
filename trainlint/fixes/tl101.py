"""TL101 / TL102: drop the softmax (sigmoid) whose output feeds a loss that applies it itself.

Unsafe: the fix is offered only when the activation's result is used by the loss alone,
but removing it still changes what the loss computes (which is the point) and any code
relying on the old, saturated values.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.brains.torch import BCE_WITH_LOGITS, CROSS_ENTROPY
from trainlint.analysis.losses import input_kinds, loss_call_at
from trainlint.analysis.module import ModuleModel, Scope
from trainlint.analysis.names import root_name, terminal_name
from trainlint.analysis.values import Evaluator, LibRef, call_arg
from trainlint.fixes import Edit, Fixer, FixSafety, name_uses


class _DropActivation(Fixer):
    safety = FixSafety.UNSAFE
    family: frozenset[str] = frozenset()
    kind = ""  # the TensorV kind the activation produces
    activation = ""

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        loss = loss_call_at(node, model, evaluator, self.family) if isinstance(node, cst.Call) else None
        if loss is not None and loss.input is not None:
            origins = [t.origin for t in input_kinds(loss, model, evaluator) if t.kind == self.kind and t.module is model]
            if len(origins) == 1 and isinstance(origins[0], cst.Call) and _used_only_by(origins[0], loss.input, model):
                operand = self._operand(origins[0], model, evaluator)
                return [Edit(origins[0], operand)] if operand is not None else []
        return []

    def _operand(self, call: cst.Call, model: ModuleModel, evaluator: Evaluator) -> cst.BaseExpression | None:
        """``x`` in ``F.softmax(x, dim=1)``, ``torch.softmax(x, 1)`` and ``x.softmax(1)``."""
        if terminal_name(call.func) != self.activation:
            return None  # an ``nn.Softmax`` layer or a helper: the rewrite is not evident
        func = call.func
        if not isinstance(func, cst.Attribute):
            return call_arg(call, 0, "input")  # ``softmax`` imported from a library
        if any(isinstance(v, LibRef) for v in evaluator.eval(func.value, model)):
            return call_arg(call, 0, "input")  # ``F.softmax(x)``
        kinds = _binding_kinds(func.value, model)
        if kinds and "import" not in kinds:
            return func.value  # ``x.softmax(1)``, ``self.fc(x).softmax(1)``
        return None  # an unresolved ``a.b.softmax(...)``: a module or a tensor?


def _binding_kinds(expr: cst.BaseExpression, model: ModuleModel) -> set[str]:
    """How the leftmost name of ``expr`` is bound in the scopes around it."""
    root = root_name(expr)
    scope: Scope | None = model.scope_of(expr)
    kinds: set[str] = set()
    while scope is not None and root is not None:
        kinds.update(binding.kind for binding in scope.bindings.get(root, []))
        scope = scope.parent
    return kinds


def _used_only_by(activation: cst.Call, loss_input: cst.BaseExpression, model: ModuleModel) -> bool:
    """The activation (possibly followed by tensor methods: ``.squeeze(1)``) is the loss
    input itself, or is assigned to a name that appears nowhere else in its function than
    in that assignment and the loss call."""
    value = _method_chain_top(activation, model)
    if value is loss_input:
        return True
    if not isinstance(loss_input, cst.Name):
        return False
    assignment = model.parent_of(value)
    if not (isinstance(assignment, cst.Assign) and len(assignment.targets) == 1):
        return False
    target = assignment.targets[0].target
    if not (isinstance(target, cst.Name) and target.value == loss_input.value):
        return False
    scope = model.enclosing_function(activation) or model.tree
    return name_uses(scope, loss_input.value) == 2


def _method_chain_top(node: cst.BaseExpression, model: ModuleModel) -> cst.BaseExpression:
    """``torch.sigmoid(x).squeeze(1)`` for ``torch.sigmoid(x)``: methods called on it."""
    while True:
        attribute = model.parent_of(node)
        call = model.parent_of(attribute) if attribute is not None else None
        if not (isinstance(attribute, cst.Attribute) and attribute.value is node and isinstance(call, cst.Call) and call.func is attribute):
            return node
        node = call


class SoftmaxBeforeCrossEntropyFixer(_DropActivation):
    code = "TL101"
    family = CROSS_ENTROPY
    kind = "probs"
    activation = "softmax"


class SigmoidBeforeBCEWithLogitsFixer(_DropActivation):
    code = "TL102"
    family = BCE_WITH_LOGITS
    kind = "sigmoid"
    activation = "sigmoid"
