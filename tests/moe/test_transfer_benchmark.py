"""``benchmarks/moe.py --transfer`` end to end on a tiny sweep (2 seeds x 3 lrs x 4 steps, the dense proxy and
one MoE target under SP and µE): two sharded processes train every run once, the results file holds the
regret, drift and coordinate-check keys, and an analysis of a store with a run missing leaves that target out of the table
instead of fitting it on fewer seeds."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAINED = re.compile(r"^(sp|mue) \S+ lr=2\^\S+ seed \d+: loss", re.M)  # the line each trained run prints
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def bench():
    from hf_fundamentals.corpora import DOMAINS

    if not DOMAINS["dictionary"].available():
        pytest.skip("the GCIDE dictionary (Debian dict-gcide) is not installed: hff corpora --install")
    sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark imports its sibling report.py
    try:
        spec = importlib.util.spec_from_file_location("bench_moe", REPO / "benchmarks" / "moe.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_moe"] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--transfer", "--targets", "N8a2h64", "--seeds", "0", "1", "--steps", "4", "--eval_every", "1",
        "--last_evals", "2", "--eval_tokens", "1024", "--train_docs", "60", "--lr_points", "3",
        "--lr_spacing", "1", "--max_lr_points", "3", "--center_log2", "-6", "--n_boot", "50",
        "--coord_widths", "64", "128", "--coord_experts", "4", "8", "--coord_steps", "2",
        "--coord_seeds", "0", "1", "--store", str(tmp_path / "runs"), "--out", str(tmp_path), *extra,
    ]  # fmt: skip


def test_transfer_writes_regret_drift_and_coord_keys_and_analyses_only_complete_targets(
    bench, tmp_path, capsys
):
    # two processes share the store (--shard K/N) and the tokens (--data_file: built by the first, loaded by
    # the second); then one call sees every run stored, trains nothing and analyses
    data = ["--data_file", str(tmp_path / "tokens.pt")]
    trained = []
    for k in (0, 1):
        assert bench.main(_argv(tmp_path, "--runs_only", "--shard", f"{k}/2", *data)) == {}
        trained.append(TRAINED.findall(capsys.readouterr().out))
    assert (tmp_path / "tokens.pt").is_file() and all(trained)
    result = bench.main(_argv(tmp_path, *data))
    out = capsys.readouterr().out
    runs = sorted((tmp_path / "runs").glob("*.json"))
    assert len(runs) == 2 * 2 * 2 * 3  # params x shapes x seeds x lrs
    assert sum(map(len, trained)) == len(runs) and not TRAINED.findall(out)  # each run trained once
    saved = json.loads((tmp_path / "complete_mue.json").read_text())
    assert saved["regret_nats"] == json.loads(json.dumps(result["regret_nats"]))
    for param in ("sp", "mue"):
        r = saved["regret_nats"][param]["N8a2h64"]
        assert math.isfinite(r["point"]) and r["point"] >= 0 and r["lo"] <= r["hi"]
        d = saved["drift_log2"][param]["N8a2h64"]
        assert d["lo"] <= d["hi"] and isinstance(d["resolved"], bool)
        assert saved[f"max_regret_{param}"]["target"] == "N8a2h64"
        assert isinstance(saved["coord_check_pass"][param], bool)
        axes = saved["coord_check"][param]["axes"]
        assert set(axes) == {"width", "experts"} and all(a["keys"] for a in axes.values())
    assert saved["seeds"] == [0, 1] and saved["steps"] == 4 and saved["eval_tokens"] == 1024
    assert saved["cost"]["runs_stored"] == len(runs) and saved["machine"]["cpu_count"] >= 1
    assert saved["issue_targets"]["on_targets"] == ["N8a2h64"]
    assert "regret nats" in out and "coordinate check" in out
    assert len(list((tmp_path / "runs" / "coord").glob("*.json"))) == 2  # one kept check per param

    # a target run missing (a sweep cut short): the analysis trains nothing and leaves that target out
    mue_target = [
        p for p in runs
        if (s := json.loads(p.read_text())["spec"])["param"] == "mue" and s["target"] != s["proxy"]
    ]  # fmt: skip
    assert len(mue_target) == 2 * 3
    mue_target[0].unlink()
    again = bench.main(_argv(tmp_path, "--only_stored"))
    text = capsys.readouterr().out
    assert not TRAINED.findall(text)  # nothing trained
    assert "incomplete: mue N8a2h64: 5 of 6 runs stored" in text
    assert "N8a2h64" not in again["regret_nats"]["mue"]
    assert again["regret_nats"]["sp"] == result["regret_nats"]["sp"]  # same runs, same resamples
    assert again["status"]["mue"]["N8a2h64"]["complete"] is False
    assert again["issue_targets"]["on_targets"] == []
    assert again["coord_check"] == json.loads(json.dumps(result["coord_check"]))  # the kept check, not redone
