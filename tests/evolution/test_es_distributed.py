"""Two gloo processes: the population is split (members 0, 2, 4 on rank 0; 1, 3, 5 on rank 1), the rewards
are all-reduced, and both processes end with exactly the weights of one process evaluating every member."""

from __future__ import annotations

import os
from pathlib import Path

import es_dist_worker as worker
import pytest
import torch
from conftest import run_two_processes

WORKER = Path(__file__).with_name("es_dist_worker.py")


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "run" / "weights"
    out.parent.mkdir()
    proc = run_two_processes(WORKER, out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ref = {k: v.detach().clone() for k, v in worker.train(str(tmp_path / "ref")).model.state_dict().items()}
    start = worker.model().state_dict()
    assert any(not torch.equal(ref[n], start[n]) for n in ref)
    for rank in range(2):
        state = torch.load(f"{out}.rank{rank}.pt")
        for name, want in ref.items():
            assert torch.equal(state[name], want), f"rank {rank} {name}"
    # only the main process wrote the step log, one file per iteration
    assert sorted(os.listdir(out.parent / "es_updates")) == [f"step_{i:06d}.json" for i in range(4)]
