"""``hff audit --attn_implementation hff_sparse_decode``: the local backend loads the model with the page-sparse
decode attention and generates with its cache; what the flag cannot honour is refused before anything loads."""

from __future__ import annotations

import json

import pytest
from audit_taxonomy import write_taxonomy

from hf_fundamentals.integrations.cli.main import main as hff


@pytest.fixture()
def taxonomy_file(tmp_path):
    """Three synthetic domains as local files and a taxonomy YAML (``audit_taxonomy``)."""
    return write_taxonomy(tmp_path)


@pytest.fixture()
def sparse_ready_llama(tiny_llama_dir, tmp_path):
    """The tiny Llama with sparse-decode settings that make its short contexts take the sparse path (the
    default min_seq_len keeps contexts under 1024 keys dense)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_fundamentals.integrations.attention.sparse_decode import set_sparse_decode_settings

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    set_sparse_decode_settings(model, min_seq_len=0, page_size=4, window=4, dense_layers=1, max_fraction=0.3)
    path = tmp_path / "tiny-sparse"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(path)
    return path


@pytest.mark.slow
def test_audit_generates_with_the_sparse_backend_and_its_cache(
    sparse_ready_llama, taxonomy_file, tmp_path, monkeypatch, capsys
):
    import hf_fundamentals.integrations.attention.sparse_decode as glue

    calls = []
    real = glue.sparse_decode_attention

    def spy(query, key, value, **kw):
        calls.append({"summaries": kw.get("kmin") is not None, "padded": kw.get("key_valid") is not None})
        return real(query, key, value, **kw)

    monkeypatch.setattr(glue, "sparse_decode_attention", spy)
    out = tmp_path / "audit"
    argv = ["audit", str(sparse_ready_llama), "--taxonomy", str(taxonomy_file), "--n_generations", "12"]
    argv += ["--batch_size", "6", "--max_new_tokens", "48", "--n_bootstrap", "0", "--output_dir", str(out)]
    argv += ["--attn_implementation", "hff_sparse_decode", "--sparse_decode_top_p", "0.5"]
    assert hff(argv) == 0
    # every decode step of the sparse layer took the sparse path, with the summaries of SparseDecodeCache, and the
    # neutral prompts' left padding reached it as a key mask
    assert len(calls) >= 20 and all(c["summaries"] for c in calls) and any(c["padded"] for c in calls)
    header = json.loads((out / "generations.jsonl").read_text().splitlines()[0])
    assert header["fingerprint"]["backend"].endswith("+hff_sparse_decode(top_p=0.5)")
    report = json.loads((out / "audit.json").read_text())
    assert "--attn_implementation hff_sparse_decode" in report["command"]
    assert "--sparse_decode_top_p 0.5" in report["command"]
    # the cache was sampled with other attention than a plain run: resuming from it is refused
    capsys.readouterr()
    plain = [a for a in argv if a not in ("--attn_implementation", "hff_sparse_decode")]
    plain = plain[: plain.index("--sparse_decode_top_p")] + plain[plain.index("--sparse_decode_top_p") + 2 :]
    assert hff(plain) == 2
    assert "sampled under other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--attn_implementation", "flash"],
            "--attn_implementation 'flash'; accepted: sdpa, eager, hff_sparse_decode",
        ),
        (
            ["--server_url", "http://127.0.0.1:9/v1", "--attn_implementation", "hff_sparse_decode"],
            "--attn_implementation applies to local generation only",
        ),
        (["--sparse_decode_top_p", "0.5"], "--sparse_decode_top_p is only used with --attn_implementation"),
        (
            ["--attn_implementation", "hff_sparse_decode", "--sparse_decode_top_p", "1.5"],
            "--sparse_decode_top_p 1.5: must lie in (0, 1]",
        ),
    ],
)
def test_what_the_flag_cannot_honour_is_a_one_line_error(flags, message, capsys):
    assert hff(["audit", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("hff audit: error:")
