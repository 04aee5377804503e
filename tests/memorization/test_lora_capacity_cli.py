"""``hff lora-capacity`` fits a sweep file and plans a rank."""

from __future__ import annotations

import json

import numpy as np

from hf_fundamentals.integrations.cli.main import main


def test_fit_and_plan_from_a_sweep_file(tmp_path, capsys):
    runs = []
    for r in (1, 2, 4, 8, 16):
        for ell in (100, 200, 400, 800):
            dl = 20.0 * r**0.5 * ell**-0.4 + 0.2
            runs.append({"rank": r, "length": ell, "delta_l": dl, "exact_match": float(dl > 2.0)})
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"sweep": runs}))
    out = tmp_path / "plan.json"
    assert main(["lora-capacity", "--sweep", str(sweep), "--length", "300", "5000", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R^2 1.000" in printed and "300 tokens at >= 90% exact match: rank" in printed
    assert "extrapolated" in printed  # 5000 tokens is beyond the swept lengths
    plan = json.loads(out.read_text())
    assert np.isclose(plan["fit"]["alpha"], 0.5, atol=1e-3)
    assert plan["plans"][0]["rank"] in (1, 2, 4, 8, 16) and plan["plans"][0]["extrapolated"] is False


def test_bad_sweep_is_named(tmp_path, capsys):
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps([{"rank": 1}]))
    assert main(["lora-capacity", "--sweep", str(sweep)]) == 2
    assert "sweep.json" in capsys.readouterr().err
