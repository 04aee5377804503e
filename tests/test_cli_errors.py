"""Every command fails well on bad input: through the real entry point, a non-zero exit, one ``error:`` line that
names the flag or file, no traceback, and (for the slow commands) within seconds: before any model loads,
reference text is built or a process is launched.

Most cases call ``hff``'s entry-point function in this process (imports are then paid once); a few run the
installed command in a subprocess to see exactly what a terminal shows, including Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_fundamentals.integrations.cli.main import main as hff

SECONDS = 60
"""A bound on how long a failing command may take in this process: generous for a loaded 2-core CI machine;
the slow paths these cases used to reach took 25-100 s or more (the model load, reference text, sampling)."""


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_llama_dir):
    d = tmp_path_factory.mktemp("bad-inputs")
    rows = [{"text": f"The number {i} is here."} for i in range(40)]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "empty.jsonl").write_text("")
    (d / "nocol.jsonl").write_text("".join(json.dumps({"body": r["text"]}) + "\n" for r in rows))
    (d / "prompts_noprompt.jsonl").write_text(
        "".join(json.dumps({"question": "1+1"}) + "\n" for _ in range(4))
    )
    (d / "notes.txt").write_text("not a model")
    (d / "empty.json").write_text("{}")
    (d / "broken.json").write_text("{not json")
    (d / "runs.csv").write_text("N,D\n1,2\n")
    (d / "tiny").symlink_to(tiny_llama_dir)
    return d


TRAIN = ["--model_name_or_path", "tiny", "--output_dir", "out", "--max_steps", "1", "--use_cpu", "--bf16", "false",
         "--report_to", "none"]  # fmt: skip

CASES = {
    # hff audit
    "audit: unknown Hub id, offline": (["audit", "nonexistent-org/no-such-model"], "--model 'nonexistent-org/no-such-model'"),
    "audit: a text file as the model": (["audit", "notes.txt"], "--model 'notes.txt' is a file"),
    "audit: unknown estimator": (["audit", "--estimator", "foo"], "--estimator 'foo'; accepted: cc"),
    "audit: confidence above 1": (["audit", "--confidence", "1.5"], "--confidence 1.5"),
    "audit: no generations": (["audit", "--n_generations", "0"], "--n_generations 0"),
    "audit: too few generations": (["audit", "--n_generations", "4"], "at least 10 generations"),
    "audit: missing prompts file": (["audit", "--prompts", "nosuchfile.txt"], "--prompts 'nosuchfile.txt': no such file"),
    "audit: missing taxonomy file": (["audit", "--taxonomy", "web.yaml"], "--taxonomy 'web.yaml': no such file"),
    "audit: missing ground truth": (["audit", "--ground_truth", "truth.yaml"], "--ground_truth 'truth.yaml'"),
    "audit: concurrency without a server": (["audit", "--concurrency", "8"], "--concurrency is only used with --server_url"),
    "audit: no requests in flight": (["audit", "--server_url", "http://127.0.0.1:9/v1", "--concurrency", "0"], "--concurrency 0: must be >= 1"),
    "audit: unknown snippet anchor": (["audit", "--snippet_anchor", "middle"], "--snippet_anchor 'middle': accepted: auto, random, start"),
    "audit: open-set shares": (["audit", "--open_set_shares", "most"], "--open_set_shares 'most': accepted: all, typical"),
    "audit: open-set shares, closed set": (["audit", "--open_set", "false", "--open_set_shares", "typical"], "--open_set_shares typical needs --open_set true"),
    "audit: snippet anchor on whole documents": (["audit", "--open_set", "false", "--length_match", "false", "--snippet_anchor", "start"], "--snippet_anchor start needs --length_match true"),
    "audit: closed server port": (["audit", "--server_url", "http://127.0.0.1:9/v1"], "--server_url http://127.0.0.1:9/v1: nothing answers"),
    "audit: server url without scheme": (["audit", "--server_url", "127.0.0.1:8000"], "--server_url '127.0.0.1:8000'"),
    "audit: top_p 0": (["audit", "--top_p", "0"], "--top_p 0.0"),
    # hff sft / kd
    "sft: --optim beside Muon": (["sft", *TRAIN, "--dataset_name", "train.jsonl", "--hff_optimizer", "muon", "--optim", "adafactor"], "--optim adafactor would be ignored"),
    "sft: unknown Muon mode": (["sft", *TRAIN, "--dataset_name", "train.jsonl", "--hff_optimizer", "muon", "--muon_mode", "bogus"], "--muon_mode 'bogus'; accepted"),
    "sft: unknown optimizer": (["sft", *TRAIN, "--dataset_name", "train.jsonl", "--hff_optimizer", "foo"], "--hff_optimizer 'foo'; accepted"),
    "sft: Muon flag without Muon": (["sft", *TRAIN, "--dataset_name", "train.jsonl", "--muon_mode", "htmuon"], "--muon_mode set but --hff_optimizer is 'none'"),
    "sft: empty data file": (["sft", *TRAIN, "--dataset_name", "empty.jsonl"], "--dataset_name 'empty.jsonl' is empty"),
    "sft: no text column": (["sft", *TRAIN, "--dataset_name", "nocol.jsonl"], "needs a 'text' or 'messages' or 'prompt' column"),
    "sft: missing data file": (["sft", *TRAIN, "--dataset_name", "nosuch.jsonl"], "--dataset_name 'nosuch.jsonl': no such file"),
    "sft: missing model folder": (["sft", *TRAIN[2:], "--model_name_or_path", "./no-model", "--dataset_name", "train.jsonl"], "--model_name_or_path './no-model'"),
    "sft: order without its score column": (["sft", *TRAIN, "--dataset_name", "train.jsonl", "--order_score", "quality"], "--order_score set but --hff_order is 'none'"),
    "sft: two attention implementations": (["sft", *TRAIN, "--dataset_name", "train.jsonl", "--hff_attention", "lowrank", "--attn_implementation", "eager"], "drop --attn_implementation eager"),
    "kd: no teacher": (["kd", *TRAIN, "--dataset_name", "train.jsonl"], "needs --hff_kd_teacher"),
    "kd: missing teacher folder": (["kd", *TRAIN, "--dataset_name", "train.jsonl", "--hff_kd_teacher", "./no-teacher"], "--hff_kd_teacher './no-teacher'"),
    "kd: both loss replacements": (["kd", *TRAIN, "--dataset_name", "train.jsonl", "--hff_kd_teacher", "tiny", "--hff_memft", "ot"], "--hff_kd_teacher and --hff_memft"),
    # hff es
    "es: empty data file": (["es", "--model_name_or_path", "tiny", "--dataset_name", "empty.jsonl", "--output_dir", "es", "--use_cpu"], "--dataset_name 'empty.jsonl' is empty"),
    "es: no prompt column": (["es", "--model_name_or_path", "tiny", "--dataset_name", "prompts_noprompt.jsonl", "--output_dir", "es", "--use_cpu"], "needs the column(s) ['prompt']"),
    "es: a gradient-only flag": (["es", "--model_name_or_path", "tiny", "--dataset_name", "train.jsonl", "--output_dir", "es", "--hff_memft", "ot"], "--hff_memft"),
    # hff order
    "order: empty data file": (["order", "--dataset_name", "empty.jsonl"], "--dataset_name 'empty.jsonl' is empty"),
    "order: missing local file": (["order", "--dataset_name", "nosuch.jsonl"], "--dataset_name 'nosuch.jsonl': no such file"),
    "order: no score column": (["order", "--dataset_name", "train.jsonl", "--score", "quality"], "--score 'quality' is not a column"),
    "order: zero batch": (["order", "--dataset_name", "train.jsonl", "--batch_size", "0"], "--batch_size 0"),
    # hff lora-capacity
    "lora-capacity: missing sweep": (["lora-capacity", "--sweep", "nosuch.json"], "--sweep 'nosuch.json': no such file"),
    "lora-capacity: empty sweep": (["lora-capacity", "--sweep", "empty.json"], "--sweep 'empty.json' holds no runs"),
    "lora-capacity: not JSON": (["lora-capacity", "--sweep", "broken.json"], "--sweep 'broken.json' is not JSON"),
    # the others
    "scaling: missing runs file": (["scaling", "fit", "nosuch.csv"], "nosuch.csv"),
    "scaling: a runs file without a loss column": (["scaling", "fit", "runs.csv"], "runs.csv"),
    "muon: missing model": (["muon", "--model", "./no-model"], "no-model"),
    "mue: missing proxy": (["mue", "--proxy", "./no-proxy", "--target", "./no-target", "--lr", "1e-3", "--weight_decay", "0.1", "--init_std", "0.02", "--batch_tokens", "1024", "--steps", "100", "--out", "plan.json"], "--proxy './no-proxy'"),
    "corpora: unknown domain": (["corpora", "--sample", "klingon"], "klingon"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_fast_with_one_error_line(case, files, capsys, monkeypatch):
    argv, expected = CASES[case]
    monkeypatch.chdir(files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    command = argv[0]
    start = time.monotonic()
    try:
        code = hff(list(argv))
    except SystemExit as exc:  # argparse's own usage errors exit 2 with `prog: error: ...`
        code = exc.code
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code not in (0, None), f"{case}: exited 0\n{err}"
    errors = [line for line in err.splitlines() if line.startswith(f"hff {command}: error:")]
    assert len(errors) == 1, f"{case}: expected one `hff {command}: error:` line, got:\n{err}"
    assert expected in err, f"{case}: the error does not say {expected!r}:\n{err}"
    assert "Traceback" not in err
    assert elapsed < SECONDS, f"{case}: took {elapsed:.0f} s to fail"


def _hff(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "hf_fundamentals.integrations.cli.main", *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_the_terminal_sees_one_line_and_debug_shows_the_traceback(files):
    """What a terminal shows: one line and exit 2; with --debug the traceback."""
    proc = _hff("audit", "--estimator", "foo", cwd=files)
    out, err = proc.communicate(timeout=120)
    assert (
        proc.returncode == 2
        and err.strip()
        == "hff audit: error: --estimator 'foo'; accepted: cc, pcc, acc, pacc, mlls_em, rlls, llmsurgeon_repo"
    )
    proc = _hff("audit", "--estimator", "foo", "--debug", cwd=files)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" in err and "ValueError" in err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_an_audit_says_what_was_kept(files, tmp_path):
    """SIGINT while sampling: one line saying where the finished generations are and how to resume; exit 130."""
    out_dir = tmp_path / "audit"
    # A shell without job control starts background commands with SIGINT ignored (POSIX, "Signals" in the
    # bash manual), and Python then installs no KeyboardInterrupt handler: a suite run as `bash .ci/run &`
    # would pass that on and the audit would rightly ignore the test's Ctrl-C. The child gets the
    # disposition a terminal gives a foreground command.
    proc = _hff("audit", "tiny", "--n_generations", "2000", "--batch_size", "4", "--max_new_tokens", "32",
                "--docs_per_category", "30", "--output_dir", str(out_dir), cwd=files,
                preexec_fn=_default_sigint)  # fmt: skip
    cache = out_dir / "generations.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (cache.exists() and cache.stat().st_size > 0):
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    assert proc.poll() is None, f"the audit ended before sampling:\n{proc.communicate()[1][-3000:]}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert f"hff audit: interrupted; the generations finished so far are kept in {cache}" in err
    kept = [line for line in cache.read_text().splitlines() if '"id"' in line]
    assert kept  # and a rerun resumes from them (tests/audit/test_generation.py)
