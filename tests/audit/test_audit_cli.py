"""``hff audit`` end to end on a tiny model and local reference files, plus its error messages."""

from __future__ import annotations

import json

import pytest
from audit_taxonomy import WORDS, write_taxonomy

from hf_fundamentals.integrations.cli.audit import main, parse
from hf_fundamentals.integrations.cli.main import main as hff


@pytest.fixture()
def taxonomy_file(tmp_path):
    """Three synthetic domains as local files and a taxonomy YAML (``audit_taxonomy``)."""
    return write_taxonomy(tmp_path)


@pytest.mark.slow
def test_audit_end_to_end_on_a_tiny_model(tiny_llama_dir, taxonomy_file, tmp_path, capsys):
    out = tmp_path / "audit"
    argv = [
        str(tiny_llama_dir),
        "--taxonomy",
        str(taxonomy_file),
        "--n_generations",
        "12",
        "--batch_size",
        "6",
        "--max_new_tokens",
        "48",
        "--n_bootstrap",
        "20",
        "--output_dir",
        str(out),
        "--prompts",
        "bos",
        "--snippet_anchor",
        "auto",
    ]
    assert main(argv) == 0
    # rich wraps the table title to the table's width, so where it breaks depends on the model path's length
    printed = " ".join(capsys.readouterr().out.split())
    assert "estimated training mixture" in printed and "kitchen" in printed
    report = json.loads((out / "audit.json").read_text())
    point = report["estimates"][report["default_method"]]["point"]
    assert set(point) == set(WORDS) and abs(sum(point.values()) - 1) < 1e-6
    assert report["generations"]["used"] <= 12
    # auto: BOS generations are document beginnings, so the open-set null's snippets are too
    assert report["open_set"]["null_anchor"] == "start"
    assert len(report["generations"]["used_ids"]) == report["generations"]["used"]
    assert set(report["generations"]["used_ids"]) <= set(range(12))
    # a random tiny model writes nothing like these domains: the auditor must say so
    assert any("taxonomy" in w.lower() for w in report["diagnostics"]["warnings"])
    assert (out / "audit.png").stat().st_size > 1000
    card = (out / "model_card.md").read_text()
    assert "training-mixture-audit" in card and "| kitchen |" in card
    assert len((out / "generations.jsonl").read_text().splitlines()) == 13  # fingerprint + 12
    # the card's command reproduces the run: every flag that was passed, and each diagnostic says what it means
    for flag in (
        "--n_generations 12",
        "--batch_size 6",
        "--max_new_tokens 48",
        "--n_bootstrap 20",
        "--prompts bos",
    ):
        assert flag in card and flag in report["command"]
    assert "classified less confidently than any reference document" in card
    assert "held-out reference text" in printed and set(report["diagnostics_explained"]) >= {
        "out_of_taxonomy"
    }


def test_positional_model_and_yaml_config(tmp_path, tiny_llama_dir):
    config = tmp_path / "audit.yaml"
    config.write_text("n_generations: 17\ntaxonomy: offline\n")
    args = parse([str(tiny_llama_dir), "--config", str(config), "--seed", "3"])
    assert (args.model, args.n_generations, args.seed) == (str(tiny_llama_dir), 17, 3)


def test_unknown_taxonomy_is_a_clear_error(capsys):
    assert hff(["audit", "--taxonomy", "nope.yaml"]) == 2
    assert "--taxonomy 'nope.yaml': no such file" in capsys.readouterr().err


def test_empty_reference_class_is_a_clear_error(taxonomy_file, tmp_path, capsys):
    (tmp_path / "kitchen.txt").write_text("\n\n")
    assert hff(["audit", "--taxonomy", str(taxonomy_file), "--output_dir", str(tmp_path / "o")]) == 2
    assert "reference category 'kitchen' has no documents" in capsys.readouterr().err


def test_a_model_that_cannot_generate_is_a_clear_error(tmp_path, taxonomy_file, capsys):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    ).save_pretrained(tmp_path / "bert")
    code = hff(
        [
            "audit",
            str(tmp_path / "bert"),
            "--taxonomy",
            str(taxonomy_file),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "hff audit: error:" in err


@pytest.mark.embedded
def test_audit_of_the_embedded_model_on_the_offline_taxonomy(tmp_path, capsys):
    """README command 1's path, scaled down: the real SmolLM2 model, the built-in taxonomy, real text."""
    out = tmp_path / "embedded"
    argv = ["--n_generations", "16", "--max_new_tokens", "48", "--docs_per_category", "60"]
    argv += ["--n_bootstrap", "20", "--output_dir", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["model"] == "embedded" and report["taxonomy"]["name"] == "offline"
    assert len(report["domains"]) == 8
    for estimate in report["estimates"].values():
        assert abs(sum(estimate["point"].values()) - 1) < 1e-6
    assert report["classifier_report"]["accuracy"] > 0.7  # eight real domains, TF-IDF + LR
    printed = capsys.readouterr().out
    assert "embedded: estimated training mixture" in printed
    # the default run leads with the share of output that none of the (stand-in) categories covers
    open_set = report["open_set"]
    assert 0.0 <= open_set["share"] <= 1.0 and open_set["ci_low"] <= open_set["share"] <= open_set["ci_high"]
    assert report["settings"]["length_matched"] is False  # whole-document confusion (docs/audit.md: dev zoo)
    assert open_set["in_taxonomy_shares_from"] == "all generations"
    assert printed.index("none of these:") < printed.index("embedded: estimated training mixture")
    assert "stand-ins" in printed
    of_all = sum(open_set["shares_of_all"]["point"].values())
    assert abs(of_all + open_set["share"] - 1) < 1e-6
    card = (out / "model_card.md").read_text()
    assert "SmolLM2-135M-Instruct" in card
    assert "| none of these |" in card and "stand-ins" in card


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def transformers_serve(tiny_llama_dir):
    """``transformers serve`` (transformers' OpenAI-compatible server) on 127.0.0.1 with the tiny local model."""
    import importlib.util
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"transformers serve needs transformers[serving] ({', '.join(missing)} missing); scripts/install.sh installs it"
        )
    port = _free_port()
    exe = Path(sys.executable).parent / "transformers"
    proc = subprocess.Popen(
        [str(exe), "serve", str(tiny_llama_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 300  # a ceiling against a hung start, not an expectation (a loaded 2-core CI)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"transformers serve did not start:\n{proc.communicate()[0][-3000:]}")
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_audit_through_transformers_serve(transformers_serve, tiny_llama_dir, taxonomy_file, tmp_path):
    """The neutral preset starts with the empty prompt: through the server it goes as the tokenizer's BOS text (a
    bare "" makes transformers serve answer 500), with 4 requests in flight."""
    common = ["--taxonomy", str(taxonomy_file), "--n_generations", "24", "--batch_size", "8",
              "--max_new_tokens", "24", "--n_bootstrap", "50", "--prompts", "neutral"]  # fmt: skip
    assert main([str(tiny_llama_dir), *common, "--output_dir", str(tmp_path / "local")]) == 0
    served = ["audit", str(tiny_llama_dir), *common, "--server_url", transformers_serve, "--concurrency", "4"]
    assert hff([*served, "--output_dir", str(tmp_path / "served")]) == 0
    records = [
        json.loads(line) for line in (tmp_path / "served" / "generations.jsonl").read_text().splitlines()
    ]
    gens = [r for r in records if "id" in r]
    assert len(gens) == 24 and records[0]["fingerprint"]["backend"].endswith("+bos:<s>")
    assert any(g["prompt"] == "" and g["n_tokens"] > 0 for g in gens)
    reports = [json.loads((tmp_path / d / "audit.json").read_text()) for d in ("local", "served")]
    # A random tiny model writes byte gibberish, which has no mixture to compare; both audits must say that it is
    # none of these domains. (The server decodes token by token, so its gibberish is not byte-identical to local
    # decoding: the category shares of gibberish differ. benchmarks/audit_server.py compares the two on the
    # embedded model's real text.)
    for r in reports:
        assert r["open_set"]["share"] > 0.5, r["open_set"]
