"""hf_fundamentals.integrations.corpora.dataset (the datasets wrapper, cached on disk) and the ``hff corpora`` command."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from hf_fundamentals import corpora
from hf_fundamentals.corpora import DOMAINS

datasets = pytest.importorskip("datasets")

from hf_fundamentals.integrations.cli import corpora as cli  # noqa: E402
from hf_fundamentals.integrations.corpora import dataset as hf_corpora  # noqa: E402

SMALL = ["jargon", "licenses"]
pytestmark = pytest.mark.skipif(
    not all(DOMAINS[d].available() for d in SMALL),
    reason="needs the jargon and licenses sources (Debian dict-jargon, base-files; `hff corpora --install`)",
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HFF_CACHE", str(tmp_path))
    return tmp_path


def test_load_corpus_columns_counts_and_matches_core():
    ds = hf_corpora.load_corpus(SMALL, docs_per_domain=5, seed=0)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["text", "domain", "source"]
    assert hf_corpora.domain_counts(ds) == {"jargon": 5, "licenses": 5}
    assert ds.to_list() == corpora.build_corpus(SMALL, 5, seed=0)


def test_cache_hit_returns_identical_data_without_rebuilding(private_cache, monkeypatch):
    first = hf_corpora.load_corpus(SMALL, docs_per_domain=5, seed=0)
    path = hf_corpora.corpus_cache_dir(SMALL, 5, 0)
    assert path.parent == private_cache / "corpora" and (path / "dataset_info.json").is_file()
    monkeypatch.setattr(corpora, "build_corpus", lambda *a, **k: pytest.fail("cache miss: rebuilt"))
    second = hf_corpora.load_corpus(SMALL, docs_per_domain=5, seed=0)
    assert second.to_dict() == first.to_dict()


def test_seed_and_arguments_change_the_key():
    a = hf_corpora.load_corpus(SMALL, docs_per_domain=5, seed=0)
    b = hf_corpora.load_corpus(SMALL, docs_per_domain=5, seed=1)
    assert a["text"] != b["text"]
    keys = {
        hf_corpora.corpus_cache_dir(SMALL, 5, 0),
        hf_corpora.corpus_cache_dir(SMALL, 5, 1),
        hf_corpora.corpus_cache_dir(SMALL, 6, 0),
        hf_corpora.corpus_cache_dir(SMALL, 5, 0, max_chars=1000),
        hf_corpora.corpus_cache_dir(["licenses", "jargon"], 5, 0),
    }
    assert len(keys) == 5


def test_no_cache_writes_nothing(private_cache):
    ds = hf_corpora.load_corpus(["licenses"], docs_per_domain=3, seed=0, cache=False)
    assert len(ds) == 3
    assert not (private_cache / "corpora").exists() or not any((private_cache / "corpora").iterdir())


def test_unknown_domain_fails_early():
    with pytest.raises(ValueError, match="accepted names"):
        hf_corpora.load_corpus(["jargon", "nope"], docs_per_domain=2)


def test_cli_lists_domains(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DOMAINS) and "dict-jargon" in out and "computing vs jargon" in out


def test_cli_samples(capsys):
    assert cli.main(["--sample", "jargon", "-n", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- jargon | jargon:") == 2


def test_cli_reports_bad_domain(capsys):
    from hf_fundamentals.integrations.cli.main import main

    assert main(["corpora", "--sample", "nope"]) == 2
    assert "accepted names" in capsys.readouterr().err


def test_cli_install_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(DOMAINS, "jargon", dataclasses.replace(DOMAINS["jargon"], root=tmp_path / "absent"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("dry run ran apt"))
    assert cli.main(["--install", "--dry-run", "--domains", "jargon,licenses"]) == 0
    assert "apt-get install -y dict-jargon" in capsys.readouterr().out


def test_cli_help():
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
