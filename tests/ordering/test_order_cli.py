"""``hff order`` compares orders of a local data file, plots them and writes the ordered copy."""

from __future__ import annotations

import json

import numpy as np

from hf_fundamentals.integrations.cli.main import main
from hf_fundamentals.ordering import order_indices


def test_hff_order_prints_metrics_plots_and_saves(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [{"text": f"t{i}", "quality": float(rng.random()), "dom": f"d{i % 3}"} for i in range(300)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, plot, metrics = tmp_path / "ordered.jsonl", tmp_path / "orders.png", tmp_path / "metrics.json"
    code = main(["order", "--dataset_name", str(data), "--score", "quality", "--domain_column", "dom",
                 "--methods", "stair", "random", "--plot", str(plot), "--save_to", str(out),
                 "--json", str(metrics)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "STR(K=2,L=3,rho=0.225)" in printed and "longest_domain_run" in printed
    assert plot.stat().st_size > 1000
    report = json.loads(metrics.read_text())
    assert report["STR(K=2,L=3,rho=0.225)"]["within_batch_std"] < report["Random"]["within_batch_std"]
    saved = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    want = order_indices([r["quality"] for r in rows], "stair")
    assert saved == [rows[i]["text"] for i in want]


def test_hff_order_names_a_missing_score_column(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "a"}) + "\n")
    assert main(["order", "--dataset_name", str(data)]) == 2
    err = capsys.readouterr().err
    assert "--score 'score' is not a column" in err and "--scorer" in err


def test_hff_order_scores_with_model_nll_and_reuses_the_cache(tmp_path, capsys, tiny_llama_dir):
    from conftest import TINY_TEXTS

    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXTS[:12]))
    argv = ["order", "--dataset_name", str(data), "--scorer", "model_nll", "--score_model", str(tiny_llama_dir),
            "--score_max_length", "16", "--score_cache_dir", str(tmp_path / "cache"), "--batch_size", "4",
            "--methods", "sorting", "--save_to", str(tmp_path / "sorted.jsonl")]  # fmt: skip
    assert main(argv) == 0
    assert "12 samples, score 'score'" in capsys.readouterr().out
    (key,) = list((tmp_path / "cache").iterdir())
    assert [p.name for p in key.iterdir()] == ["chunk-000000.npy"]
    scores = [json.loads(line)["score"] for line in (tmp_path / "sorted.jsonl").read_text().splitlines()]
    assert scores == sorted(scores) and np.isfinite(scores).all()
    mtime = (key / "chunk-000000.npy").stat().st_mtime_ns
    assert main(argv) == 0 and (key / "chunk-000000.npy").stat().st_mtime_ns == mtime  # read back, not redone
