"""Two gloo processes with gradient accumulation: optimizer step t consumes exactly the order's slice for t."""

from __future__ import annotations

import json
from pathlib import Path

import order_dist_worker as worker
import pytest
from conftest import run_two_processes

from hf_fundamentals.ordering import order_indices

WORKER = Path(__file__).with_name("order_dist_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "order"),
    [
        ("extras", lambda: order_indices(worker.scores(), "saw", num_sections=2, transition_ratio=0.2)),
        ("mixin", lambda: order_indices(worker.scores(), "stair")),
    ],
)
def test_two_ranks_with_accumulation_consume_the_order_slice_per_step(mode, order, tmp_path):
    out = tmp_path / "seen"
    proc = run_two_processes(WORKER, mode, out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(2)]
    want = order()
    world, b, accum = 2, worker.PER_DEVICE, worker.ACCUM
    global_batch = b * world * accum
    for rank, batches in enumerate(ranks):
        # the dataloader collates one batch ahead (accelerate looks for the end), so there may be one extra
        assert len(batches) >= worker.STEPS * accum, f"rank {rank} collated {len(batches)} micro-batches"
        for micro, ids in enumerate(
            batches[: worker.STEPS * accum]
        ):  # accelerate deals the sequential batches round-robin
            start = (micro * world + rank) * b
            assert ids == want[start : start + b].tolist(), (rank, micro)
    for step in range(worker.STEPS):
        consumed = {i for r in ranks for ids in r[step * accum : (step + 1) * accum] for i in ids}
        assert consumed == set(want[step * global_batch : (step + 1) * global_batch].tolist()), step
