"""Two CPU processes on gloo: DDP and FSDP2 Muon end with the weights of a single-process run, split the
Newton-Schulz work between the ranks, resume exactly, and refuse the layouts they cannot orthogonalize."""

from __future__ import annotations

from pathlib import Path

import muon_dist_worker as worker
import pytest
import torch
from conftest import run_two_processes

WORKER = Path(__file__).with_name("muon_dist_worker.py")


def _launch(mode: str, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"{mode}.pt"
    proc = run_two_processes(WORKER, mode, out, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(out, weights_only=False)


def _assert_equal_to_one_process(ranks: list[dict]) -> None:
    ref = worker.reference()
    start = worker.build().state_dict()
    for name, want in ref.items():
        assert not torch.allclose(want, start[name]), f"{name} did not train"
        for rank, result in enumerate(ranks):
            got = result["state"][name]
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4, msg=f"rank {rank} {name}")
    for name in ref:  # every rank ends with bit-identical weights
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), name


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_equal_one(mode, tmp_path):
    ranks = _launch(mode, tmp_path)
    _assert_equal_to_one_process(ranks)
    one = worker.reference_stats()
    for step in range(worker.STEPS):
        per_rank = [r["ns_stats"][step] for r in ranks]
        if mode == "ddp":
            # the split: every matrix orthogonalized on exactly one rank, none on both
            assert sum(s["matrices"] for s in per_rank) == one["matrices"] == 8
            assert all(0 < s["matrices"] < one["matrices"] for s in per_rank)
            assert sum(s["flops"] for s in per_rank) == pytest.approx(one["flops"])
            assert max(s["flops"] for s in per_rank) < 0.75 * one["flops"]
        else:
            # FSDP2: the expert stack is split by its shards (2 experts per rank), the owner gathers the rest
            assert sum(s["matrices"] for s in per_rank) == one["matrices"]


def test_ddp_without_the_split_computes_everything_everywhere(tmp_path):
    ranks = _launch("ddp_nosplit", tmp_path)
    _assert_equal_to_one_process(ranks)
    one = worker.reference_stats()
    assert all(r["ns_stats"][0]["matrices"] == one["matrices"] for r in ranks)


@pytest.mark.parametrize("mode", ["ddp_resume", "fsdp2_resume"])
def test_resume_with_the_split_is_exact(mode, tmp_path):
    _assert_equal_to_one_process(_launch(mode, tmp_path))


def test_refusals_name_the_fix(tmp_path):
    for rank, result in enumerate(_launch("refusals", tmp_path)):
        errors = result["errors"]
        assert "differs across ranks" in errors.get("non_replica", ""), (rank, errors)
        assert "distributed='none'" in errors["non_replica"]
        assert "Partial" in errors.get("partial", ""), (rank, errors)
        assert "route this tensor to AdamW" in errors["partial"]
