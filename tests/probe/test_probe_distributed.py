"""probe() under DDP: 2 processes with the gloo backend on CPU."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from probe_models import ddp_worker

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built"),
    pytest.mark.slow,  # two processes that import torch each
]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, object]]]:
    """One 2-process spawn runs both pipelines (each process imports torch once)."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_worker.run, args=(2, str(folder)), nprocs=2, join=True)
    return {
        name: [json.loads((folder / f"{name}{r}.json").read_text()) for r in range(2)]
        for name in ("healthy", "buggy")
    }


def test_healthy_ddp_pipeline_passes_and_is_restored(ranks: dict[str, list[dict[str, object]]]) -> None:
    for rank in ranks["healthy"]:
        assert rank["codes"] == [], rank
        assert rank["statuses"]["distributed"] == "passed"  # type: ignore[index]
        assert rank["unchanged"] == "yes"


def test_ddp_bugs_are_each_reported_and_state_restored(ranks: dict[str, list[dict[str, object]]]) -> None:
    """Different stopping points per rank (max_steps differs) must not hang either."""
    for rank in ranks["buggy"]:
        assert rank["codes"] == ["P901", "P902", "P903", "P904", "P905"], rank
        assert rank["unchanged"] == "yes"
