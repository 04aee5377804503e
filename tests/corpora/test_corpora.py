"""hf_fundamentals.corpora (core, no HF import): domains, splitting, deterministic sampling, installing."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
from itertools import islice
from pathlib import Path

import pytest

from hf_fundamentals import corpora
from hf_fundamentals.corpora import DOMAINS, Piece, base, dictd, manpages
from hf_fundamentals.integrations.cli import corpora as corpora_cli

N = 8
MIN, MAX = 200, 1500


def needs(domain: str):
    """Skip a test when this machine lacks the domain's source (CI installs the Debian packages)."""
    spec = DOMAINS[domain]
    where = f"Debian package {spec.package} (`hff corpora --install`)" if spec.package else "Python's stdlib"
    return pytest.mark.skipif(not spec.available(), reason=f"{domain}: source absent; it comes from {where}")


def _dictd_subset(root: Path, name: str, out: Path, entries: int) -> None:
    """A dictd database of the first ``entries`` index lines of a real one (reading all gcide takes seconds)."""
    index = (root / f"{name}.index").read_text("utf-8").splitlines()
    with gzip.open(root / f"{name}.dict.dz", "rb") as handle:
        data = handle.read()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def encode(value: int) -> str:
        digits = ""
        while True:
            value, digit = divmod(value, 64)
            digits = alphabet[digit] + digits
            if not value:
                return digits

    body, lines = b"", []
    for line in index[:entries]:
        head, offset, length = line.split("\t")[:3]
        start, size = dictd._dictd_number(offset), dictd._dictd_number(length)
        lines.append(f"{head}\t{encode(len(body))}\t{encode(size)}")
        body += data[start : start + size]
    (out / f"{name}.index").write_text("\n".join(lines) + "\n", "utf-8")
    with gzip.open(out / f"{name}.dict.dz", "wb") as handle:
        handle.write(body)


@pytest.fixture(scope="session")
def small_copies(tmp_path_factory) -> dict[str, Path]:
    """Real but small slices of the two big sources (reading all of gcide or WordNet takes seconds)."""
    roots: dict[str, Path] = {}
    if DOMAINS["dictionary"].available():
        roots["dictionary"] = tmp_path_factory.mktemp("dictd")
        _dictd_subset(DOMAINS["dictionary"].root, "gcide", roots["dictionary"], 3000)
    if DOMAINS["wordnet"].available():
        roots["wordnet"] = tmp_path_factory.mktemp("wordnet")
        for path in DOMAINS["wordnet"].files():
            head = path.read_text("utf-8").splitlines(keepends=True)[:1500]
            (roots["wordnet"] / path.name).write_text("".join(head), "utf-8")
    return roots


@pytest.fixture
def small_sources(small_copies, monkeypatch):
    """Point the big domains at their small copies for one test."""
    for name, root in small_copies.items():
        monkeypatch.setitem(DOMAINS, name, dataclasses.replace(DOMAINS[name], root=root))


def test_registry_is_consistent():
    assert set(corpora.DEBIAN_PACKAGES) <= set(DOMAINS)
    assert "python_code" not in corpora.DEBIAN_PACKAGES  # the stdlib is no Debian package
    assert corpora.DEBIAN_PACKAGES["jargon"] == "dict-jargon"
    for pair in corpora.CONFUSABLE_PAIRS:
        assert set(pair) <= set(DOMAINS)
    assert ("computing", "jargon") in corpora.CONFUSABLE_PAIRS
    assert set(corpora.available_domains()) == set(DOMAINS)


@pytest.mark.parametrize("domain", [pytest.param(d, marks=needs(d)) for d in DOMAINS])
def test_each_domain_is_deterministic_labelled_and_bounded(domain, small_sources):
    first = corpora.build_corpus([domain], N, seed=0)
    assert first == corpora.build_corpus([domain], N, seed=0)
    assert len(first) == N
    assert {r["domain"] for r in first} == {domain}
    assert all(set(r) == {"text", "domain", "source"} for r in first)
    assert all(MIN <= len(r["text"]) <= MAX for r in first), [len(r["text"]) for r in first]
    assert all(r["source"] and r["text"] == r["text"].strip("\n") for r in first)
    assert len({r["text"] for r in first}) == N  # sampled without replacement
    other = corpora.build_corpus([domain], N, seed=1)
    assert [r["text"] for r in other] != [r["text"] for r in first]


@needs("jargon")
@pytest.mark.parametrize(("low", "high"), [(50, 120), (300, 700)])
def test_custom_bounds_hold(low, high):
    docs = list(islice(corpora.iter_documents("jargon", min_chars=low, max_chars=high), 300))
    assert docs and all(low <= len(d) <= high for d in docs)


@needs("jargon")
def test_iter_documents_is_stable_and_matches_records():
    first = list(islice(corpora.iter_documents("jargon"), 20))
    assert first == list(islice(corpora.iter_documents("jargon"), 20))
    assert first == [t for _, t in islice(corpora.iter_records("jargon"), 20)]
    assert all("{" not in d and "}" not in d for d in first)  # dictd cross-reference braces are stripped


@needs("computing")
def test_foldoc_markup_is_stripped():
    docs = list(islice(corpora.iter_documents("computing"), 300))
    assert not any("<body" in d or "<programming>" in d for d in docs)
    assert not any(d.rstrip().endswith(")") and d.rstrip()[-11:-1].count("-") == 2 for d in docs[:50])


@needs("python_code")
def test_python_chunks_are_code():
    docs = corpora.build_corpus(["python_code"], N, seed=3)
    assert all(r["source"].split(":")[0].endswith(".py") for r in docs)
    assert (
        sum(("def " in r["text"]) or ("class " in r["text"]) or ("import " in r["text"]) for r in docs)
        >= N // 2
    )


@needs("manpages")
def test_manpages_sample_files_before_parsing(monkeypatch):
    spec = DOMAINS["manpages"]
    seen: list[Path] = []

    def counting_read(files, root, max_chars):
        seen.extend(files)
        return spec.read(files, root, max_chars)

    monkeypatch.setitem(DOMAINS, "manpages", dataclasses.replace(spec, read=counting_read))
    docs = corpora.build_corpus(["manpages"], 10, seed=0)
    assert len(docs) == 10
    assert len(seen) < 60 < len(spec.files())  # a few pages parsed, not all of them


def test_roff_to_text():
    page = r""".\" a comment
.de XX
.  this macro body is skipped
..
.if n \{\
.  ds skipped yes
.\}
.TH DEMO 1 "2024" "demo 1.0"
.SH NAME
demo \- show a \fBbold\fR word and \(lqquotes\(rq
.SH OPTIONS
.TP
.BR \-v ", " \-\-verbose
be chatty
.PP
Use \fIthis\fP \e escaped\& text.
.nf
line one
  line two
.fi
"""
    paragraphs = manpages._roff_to_paragraphs(page)
    assert paragraphs[0] == "NAME\ndemo - show a bold word and \u201cquotes\u201d"
    assert paragraphs[1] == "OPTIONS\n-v, --verbose be chatty"
    assert paragraphs[2] == "Use this \\ escaped text."
    assert paragraphs[3] == "line one\n  line two"
    assert not any("skipped" in p or "DEMO" in p for p in paragraphs)


def test_fit_merges_tiny_cuts_long_and_keeps_groups():
    pieces = [Piece("a", "a:0", "x" * 30), Piece("a", "a:1", "y" * 30), Piece("a", "a:2", "z" * 30)]
    pieces += [Piece("b", "b:0", "w" * 10), Piece("c", "c:0", ("word " * 60).strip())]
    docs = list(base._fit(pieces, min_chars=50, max_chars=100, pack=False))
    assert docs[0] == ("a:0+1", "x" * 30 + "\n\n" + "y" * 30)
    # "z"*30 is too short and its group ends: dropped; so is the lone "w"*10.
    assert all(src.startswith("c:0") for src, _ in docs[1:])
    assert all(50 <= len(text) <= 100 for _, text in docs)
    packed = list(base._fit(pieces[:3], min_chars=10, max_chars=100, pack=True))
    assert [src for src, _ in packed] == ["a:0+2"]


def test_unknown_domain_names_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown corpus domain 'klingon'.*accepted names: .*jargon"):
        corpora.build_corpus(["klingon"], 5)
    with pytest.raises(ValueError, match="docs_per_domain"):
        corpora.build_corpus(["jargon"], 0)
    with pytest.raises(ValueError, match="max_chars"):
        corpora.build_corpus(["jargon"], 5, min_chars=500, max_chars=100)


@pytest.fixture
def jargon_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(DOMAINS, "jargon", dataclasses.replace(DOMAINS["jargon"], root=tmp_path / "absent"))


def test_missing_source_names_package_and_command(jargon_missing):
    assert corpora.available_domains()["jargon"] is False
    assert corpora.missing_packages(["jargon"]) == ["dict-jargon"]
    with pytest.raises(corpora.CorpusSourceMissing) as info:
        corpora.build_corpus(["jargon"], 5)
    message = str(info.value)
    assert (
        "'jargon'" in message
        and "apt-get install -y dict-jargon" in message
        and "hff corpora --install" in message
    )
    with pytest.warns(UserWarning, match="jargon"):
        assert "jargon" not in corpora.resolve_domains(None)


def test_install_dry_run_runs_nothing(jargon_missing, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"dry run ran {args}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    said: list[str] = []
    assert corpora_cli.install_debian_packages(["jargon", "licenses"], dry_run=True, echo=said.append) == [
        "dict-jargon"
    ]
    assert any("dict-jargon" in line and "jargon" in line for line in said)
    assert any("apt-get install -y dict-jargon" in line for line in said)


def test_install_nothing_when_present(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("apt ran"))
    present = [name for name, ok in corpora.available_domains().items() if ok and DOMAINS[name].package]
    if not present:
        pytest.skip("no Debian-packaged corpus source on this machine")
    said: list[str] = []
    assert corpora_cli.install_debian_packages(present, echo=said.append) == []
    assert said == [f"all corpus sources are present for: {', '.join(present)}; nothing to install"]


def test_install_updates_once_when_apt_cannot_locate(jargon_missing, monkeypatch):
    calls: list[list[str]] = []

    def fake_run(command, **kwargs):
        calls.append(command)
        if command[:2] == ["apt-get", "install"] and len(calls) == 1:
            return subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package dict-jargon")
        return subprocess.CompletedProcess(command, 0, "ok", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(corpora_cli.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(corpora_cli.os, "geteuid", lambda: 0)
    said: list[str] = []
    assert corpora_cli.install_debian_packages(["jargon"], echo=said.append) == ["dict-jargon"]
    assert [c[:2] for c in calls] == [["apt-get", "install"], ["apt-get", "update"], ["apt-get", "install"]]
    assert "dict-jargon" in calls[-1]
    assert any("still absent" in line for line in said)  # the fake apt installed nothing


def test_install_without_root_says_what_to_run(jargon_missing, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("apt ran"))
    monkeypatch.setattr(corpora_cli.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(corpora_cli.os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionError, match="sudo apt-get install -y dict-jargon"):
        corpora_cli.install_debian_packages(["jargon"], echo=lambda line: None)
