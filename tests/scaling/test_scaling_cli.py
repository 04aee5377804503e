"""``hff scaling fit`` / ``predict`` through the entry point on small run files (no subprocess)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hf_fundamentals.integrations.cli.main import main
from hf_fundamentals.scaling import LAWS

CHINCHILLA = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)


def _write_csv(path, rows, header=("params", "tokens", "loss")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _runs():
    N, D = (
        x.ravel() for x in np.meshgrid(np.geomspace(1e7, 1e9, 4), np.geomspace(1e9, 1e11, 5), indexing="ij")
    )
    loss = LAWS["chinchilla"].predict(CHINCHILLA, N, D)
    return N, D, loss


def test_fit_then_predict(tmp_path, capsys):
    N, D, loss = _runs()
    runs = _write_csv(tmp_path / "runs.csv", zip(N, D, loss, strict=True))
    out, fig = tmp_path / "fit.json", tmp_path / "fig.png"
    argv = ["scaling", "fit", str(runs), "--law", "chinchilla", "--out", str(out), "--plot", str(fig),
            "--heldout", "N>5e8", "--n_starts", "8"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "20 runs (5 held out), 4 model sizes" in text and "held-out 1.0000 (5 pts)" in text
    assert "none (monotone in D)" in text
    saved = json.loads(out.read_text())
    assert saved["heldout"] == ["N>5e8"]
    for k, v in CHINCHILLA.items():
        assert saved["fits"]["chinchilla"]["params"][k] == pytest.approx(v, rel=1e-3)
    assert fig.stat().st_size > 10_000

    assert main(["scaling", "predict", str(out), "--N", "7e10", "--D", "1.4e12"]) == 0
    text = capsys.readouterr().out
    want = LAWS["chinchilla"].predict(CHINCHILLA, 7e10, 1.4e12)
    assert f"N=7e+10 D=1.4e+12: loss {want:.4f}" in text
    assert "D*(N=7e+10) = none" in text and "N*(D=1.4e+12) = none" in text


def test_predict_prints_the_shannon_turning_point(tmp_path, capsys):
    from hf_fundamentals.scaling import FitResult, d_star

    params = dict(a=1.2e-4, alpha=0.3, b=1e-2, beta=0.6, c=1e-6, gamma=0.35, d=1e-9, delta=1.0, e=1.0)
    fit = FitResult(law="shannon", params=params, theta=[], theta_names=[], objective=0.0, huber_delta=1e-3,
                    n_train=0, n_heldout=0, n_starts=0, n_agree=0, agree_rtol=0.01, converged=True, message="",
                    at_bounds=[], r2_train=None, r2_heldout=None, rmse_train=None, rmse_heldout=None, seed=0)  # fmt: skip
    path = tmp_path / "one.json"
    path.write_text(fit.to_json())
    assert main(["scaling", "predict", str(path), "--N", "1e8", "--D", "1e10"]) == 0
    text = capsys.readouterr().out
    assert f"D*(N=1e+08) = {d_star('shannon', params, 1e8):.4g} tokens" in text


def test_json_runs_and_a_heldout_column(tmp_path, capsys):
    N, D, loss = _runs()
    rows = [
        {"N": n, "D": d, "eval_loss": y, "heldout": bool(d > 5e10)}
        for n, d, y in zip(N, D, loss, strict=True)
    ]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"runs": rows}))
    assert main(["scaling", "fit", str(path), "--law", "kaplan", "--n_starts", "4"]) == 0
    assert "20 runs (4 held out)" in capsys.readouterr().out


def test_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    N, D, loss = _runs()
    bad = _write_csv(tmp_path / "bad.csv", [(n, d, -1.0) for n, d in zip(N, D, strict=True)])
    assert main(["scaling", "fit", str(bad), "--law", "chinchilla"]) == 2
    assert "loss must be finite and > 0" in capsys.readouterr().err
    few = _write_csv(tmp_path / "few.csv", list(zip(N, D, loss, strict=True))[:5])
    assert main(["scaling", "fit", str(few), "--law", "shannon"]) == 2
    assert "needs at least 9 training points; got 5" in capsys.readouterr().err
    nocol = _write_csv(tmp_path / "nocol.csv", [(1, 2, 3)], header=("size", "tokens", "loss"))
    assert main(["scaling", "fit", str(nocol)]) == 2
    assert "no N column" in capsys.readouterr().err
    runs = _write_csv(tmp_path / "runs.csv", zip(N, D, loss, strict=True))
    assert main(["scaling", "fit", str(runs), "--heldout", "X>3"]) == 2
    assert "--heldout 'X>3'" in capsys.readouterr().err
    (tmp_path / "notfit.json").write_text("[1, 2]")
    assert main(["scaling", "predict", str(tmp_path / "notfit.json"), "--N", "1", "--D", "1"]) == 2
    assert "not a fit file" in capsys.readouterr().err
    assert main(["scaling", "predict", str(tmp_path / "absent.json"), "--N", "1", "--D", "1"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "fit.json").write_text(json.dumps({"fits": {}}))
    assert main(["scaling", "predict", str(tmp_path / "fit.json"), "--schedule", "cosine"]) == 2
    assert "--schedule needs an annealing fit" in capsys.readouterr().err


def test_callback_reads_the_prior_that_fit_writes(tmp_path, capsys):
    """``ScalingLawCallback(prior=PATH)`` takes the ``{"fits": ...}`` file of ``hff scaling fit --out``."""
    from hf_fundamentals.integrations.scaling import ScalingLawCallback

    N, D, loss = _runs()
    runs = _write_csv(tmp_path / "runs.csv", zip(N, D, loss, strict=True))
    shannon, chinchilla = tmp_path / "shannon.json", tmp_path / "chinchilla.json"
    for law, out in (("shannon", shannon), ("chinchilla", chinchilla)):
        assert main(["scaling", "fit", str(runs), "--law", law, "--out", str(out), "--n_starts", "4"]) == 0
    capsys.readouterr()
    prior = ScalingLawCallback(prior=shannon, output_file=None).prior
    assert prior.law == "shannon"
    assert prior.params == json.loads(shannon.read_text())["fits"]["shannon"]["params"]
    with pytest.raises(ValueError, match="holds no 'shannon' fit"):
        ScalingLawCallback(prior=str(chinchilla))


def test_fit_prints_and_stores_identifiability(tmp_path, capsys):
    N, D, loss = _runs()
    runs = _write_csv(tmp_path / "runs.csv", zip(N, D, loss, strict=True))
    out = tmp_path / "fit.json"
    assert main(["scaling", "fit", str(runs), "--law", "chinchilla", "--n_starts", "4", "--n_boot", "8",
                 "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "95% bootstrap intervals (8 refits)" in text
    saved = json.loads(out.read_text())["fits"]["chinchilla"]
    assert set(saved["identifiability"]) == set(CHINCHILLA)
    assert all("flags" in v for v in saved["identifiability"].values())


def test_fit_offers_the_shannon_ratio_form(tmp_path, capsys):
    """``--law shannon_ratio`` fits the e -> 0 form; its file predicts like any other fit."""
    far = dict(a=0.14, alpha=0.42, b=9.2, beta=1.08, gamma=0.63, k=0.07, delta=2.3)
    N, D = (
        x.ravel() for x in np.meshgrid(np.geomspace(1e8, 7e9, 5), np.geomspace(5e9, 2e11, 6), indexing="ij")
    )
    loss = LAWS["shannon_ratio"].predict(far, N, D)
    runs = _write_csv(tmp_path / "runs.csv", zip(N, D, loss, strict=True))
    out = tmp_path / "fit.json"
    assert (
        main(["scaling", "fit", str(runs), "--law", "shannon_ratio", "--n_starts", "8", "--out", str(out)])
        == 0
    )
    assert "shannon_ratio: L = 1/(a n^alpha" in capsys.readouterr().out
    assert main(["scaling", "predict", str(out), "--N", "1.2e10", "--D", "3e11"]) == 0
    want = LAWS["shannon_ratio"].predict(far, 1.2e10, 3e11)
    assert f"loss {want:.3f}" in capsys.readouterr().out
