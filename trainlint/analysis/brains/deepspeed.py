"""What trainlint knows about DeepSpeed: ``deepspeed.initialize`` returns an engine whose
``backward`` scales the loss and whose ``step`` steps, clears and schedules."""

from __future__ import annotations

ROOTS = frozenset({"deepspeed"})

INITIALIZE = frozenset({"deepspeed.initialize"})
ENGINES = frozenset({"deepspeed.DeepSpeedEngine", "deepspeed.runtime.engine.DeepSpeedEngine"})
# The process's rank in DeepSpeed's communication package.
RANK_FUNCTIONS = frozenset({"deepspeed.comm.get_rank", "deepspeed.comm.get_local_rank"})
