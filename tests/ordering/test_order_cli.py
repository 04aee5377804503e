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
