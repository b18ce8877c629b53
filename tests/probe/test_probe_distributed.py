"""probe() under DDP: 2 processes with the gloo backend on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from probe_models import ddp_worker

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built"),
    pytest.mark.slow,  # two processes that import torch each
]


def _run(tmp_path: Path, buggy: bool) -> list[dict[str, object]]:
    mp.spawn(ddp_worker.run, args=(2, str(tmp_path), buggy), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_healthy_ddp_pipeline_passes_and_is_restored(tmp_path: Path) -> None:
    for rank in _run(tmp_path, buggy=False):
        assert rank["codes"] == [], rank
        assert rank["statuses"]["distributed"] == "passed"  # type: ignore[index]
        assert rank["unchanged"] == "yes"


def test_ddp_bugs_are_each_reported_and_state_restored(tmp_path: Path) -> None:
    """Different stopping points per rank (max_steps differs) must not hang either."""
    for rank in _run(tmp_path, buggy=True):
        assert rank["codes"] == ["P901", "P902", "P903", "P904", "P905"], rank
        assert rank["unchanged"] == "yes"
