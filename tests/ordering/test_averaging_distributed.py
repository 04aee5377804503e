"""Weight averaging on two gloo processes. DDP: every rank ends with the same average, which is the mean of the
weights after the averaged steps; rank 0 alone writes the state into the checkpoint folder. FSDP2: each rank
averages its shard, the gathered average is the mean of the gathered weights, and each rank resumes from its own
state file."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import run_two_processes

from hf_fundamentals.integrations.ordering.averaging import STATE_NAME

WORKER = Path(__file__).with_name("average_dist_worker.py")


def test_ddp_ranks_agree_on_the_last_k_average(tmp_path):
    out = tmp_path / "avg"
    proc = run_two_processes(WORKER, "ddp", out, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(f"{out}.rank{r}.pt") for r in (0, 1)]
    for r in ranks:
        assert r["averaged"] == [2, 4, 6]
        for name, got in r["final"].items():
            want = sum(r["steps"][s][name] for s in (2, 4, 6)) / 3
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
            assert not torch.allclose(got, r["steps"][6][name])
    for name in ranks[0]["final"]:
        assert torch.equal(ranks[0]["final"][name], ranks[1]["final"][name]), name
    ckpt = tmp_path / "checkpoint-5"
    assert (ckpt / STATE_NAME).is_file() and not list(ckpt.glob("hff_average.rank*.pt"))
    saved = torch.load(ckpt / STATE_NAME)
    assert saved["steps"] == [2, 4] and saved["global_step"] == 5


def test_fsdp2_ranks_average_their_shards_and_resume_from_their_own_files(tmp_path):
    out = tmp_path / "avg"
    proc = run_two_processes(WORKER, "fsdp2", out, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(f"{out}.rank{r}.pt") for r in (0, 1)]
    full_bytes = 4 * sum(t.numel() for t in ranks[0]["final"].values())
    for r in ranks:
        assert r["averaged"] == [2, 4, 6] and r["resumed_steps"] == [2, 4]
        assert r["files"] == ["hff_average.rank0.pt", "hff_average.rank1.pt"]
        assert r["local_bytes"] < full_bytes  # a shard, not the whole model
        for name, got in r["final"].items():
            want = sum(r["steps"][s][name] for s in (2, 4, 6)) / 3
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
            assert not torch.allclose(got, r["steps"][6][name])
