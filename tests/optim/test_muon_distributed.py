"""Two CPU processes on gloo: DDP and FSDP2 Muon end with the weights of a single-process run."""

from __future__ import annotations

from pathlib import Path

import muon_dist_worker as worker
import pytest
import torch
from conftest import run_two_processes

WORKER = Path(__file__).with_name("muon_dist_worker.py")


def _launch(mode: str, tmp_path: Path) -> list[dict[str, torch.Tensor]]:
    out = tmp_path / f"{mode}.pt"
    proc = run_two_processes(WORKER, mode, out, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(out)


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_equal_one(mode, tmp_path):
    ranks = _launch(mode, tmp_path)
    ref = worker.reference()
    start = worker.build().state_dict()
    for name, want in ref.items():
        assert not torch.allclose(want, start[name]), f"{name} did not train"
        for rank, state in enumerate(ranks):
            torch.testing.assert_close(state[name], want, atol=2e-5, rtol=1e-4, msg=f"rank {rank} {name}")
    for name in ref:  # every rank ends with bit-identical weights
        assert torch.equal(ranks[0][name], ranks[1][name]), name
