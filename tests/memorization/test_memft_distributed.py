"""Two gloo processes: MemFT's active-token normalization is global, so 2 x batch 2 equals 1 x batch 4; with
retire-when-learned both processes hold the same retire book as the single process (visits are gathered)."""

from __future__ import annotations

import json
from pathlib import Path

import memft_dist_worker as worker
import pytest
import torch
from conftest import run_two_processes

WORKER = Path(__file__).with_name("memft_dist_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ot", "sw_sliding", "retire"])
def test_two_processes_equal_one(mode, tmp_path):
    out = tmp_path / "weights"
    proc = run_two_processes(WORKER, mode, out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ref, book = worker.reference(mode, str(tmp_path / "ref"))
    start = worker.model().state_dict()
    for rank in range(2):
        state = torch.load(f"{out}.rank{rank}.pt")
        for name, want in ref.items():
            torch.testing.assert_close(state[name], want, atol=1e-5, rtol=1e-4, msg=f"rank {rank} {name}")
    assert any(not torch.equal(ref[n], start[n]) for n in ref)
    if mode == "retire":
        assert len(book["retired"]) > 0 and len(book["plan"]) < 16  # epochs got shorter
        for rank in range(2):
            assert json.loads(Path(f"{out}.rank{rank}.json").read_text()) == book, f"rank {rank}"
