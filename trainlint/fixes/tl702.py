"""TL702: ``DistributedSampler(ds, seed=args.seed + rank)`` → ``seed=args.seed``.

Offered only when the seed argument is written as a sum whose one side depends on the
rank and whose other side does not. Unsafe: every rank then shuffles with the same
permutation, which is the fix, but the order of the data changes for every rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.processes import per_process
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety


class SharedSeedFixer(Fixer):
    code = "TL702"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not (isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add)):
            return []
        left = per_process(node.left, model, evaluator)
        right = per_process(node.right, model, evaluator)
        if left is None and right is not None and right.kind == "rank":
            return [Edit(node, node.left.with_changes(lpar=node.lpar, rpar=node.rpar) if node.lpar else node.left)]
        if right is None and left is not None and left.kind == "rank":
            return [Edit(node, node.right)]
        return []
