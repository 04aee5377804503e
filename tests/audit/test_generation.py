"""Generation for audits: resumable JSONL cache, the OpenAI-compatible server backend on loopback, local generate."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_fundamentals.integrations.audit.generation import (
    Generation,
    GenerationConfig,
    LocalBackend,
    generate_corpus,
)
from hf_fundamentals.integrations.audit.server import OpenAICompletionsBackend, server_bos_text


class CountingBackend:
    """Deterministic fake: the text depends on the id and seed only; records every id it was asked for."""

    name = "fake"

    def __init__(self, crash_after_batches: int | None = None):
        self.calls: list[list[int]] = []
        self.crash_after = crash_after_batches

    def generate(self, prompts, ids, config):
        if self.crash_after is not None and len(self.calls) >= self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        self.calls.append(list(ids))
        return [
            Generation(i, p, f"text {config.seed} {i} " * 5, 10) for i, p in zip(ids, prompts, strict=True)
        ]


def test_resume_after_a_crash_redoes_only_missing_batches(tmp_path):
    cache = tmp_path / "gens.jsonl"
    config = GenerationConfig(n=10, batch_size=3, seed=7)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(CountingBackend(crash_after_batches=2), config, cache, progress=False)
    resumed_backend = CountingBackend()
    resumed = generate_corpus(resumed_backend, config, cache, progress=False)
    assert resumed_backend.calls == [[6, 7, 8], [9]]  # batches 0 and 1 came from the cache
    fresh = generate_corpus(CountingBackend(), config, tmp_path / "fresh.jsonl", progress=False)
    assert [g.text for g in resumed] == [g.text for g in fresh]
    again = CountingBackend()
    generate_corpus(again, config, cache, progress=False)
    assert again.calls == []  # complete cache: nothing regenerated


def test_a_half_written_batch_is_regenerated_whole(tmp_path):
    cache = tmp_path / "gens.jsonl"
    config = GenerationConfig(n=6, batch_size=3)
    generate_corpus(CountingBackend(), config, cache, progress=False)
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-2]) + '\n{"id": 5, "prom')  # crash mid-batch, cut line
    backend = CountingBackend()
    out = generate_corpus(backend, config, cache, progress=False)
    assert backend.calls == [[3, 4, 5]] and [g.id for g in out] == list(range(6))


def test_cache_with_other_settings_is_refused_naming_only_what_differs(tmp_path):
    cache = tmp_path / "gens.jsonl"
    generate_corpus(
        CountingBackend(), GenerationConfig(n=3, batch_size=3, temperature=1.0), cache, progress=False
    )
    with pytest.raises(ValueError, match="other settings") as err:
        generate_corpus(
            CountingBackend(), GenerationConfig(n=3, batch_size=3, temperature=0.7), cache, progress=False
        )
    message = str(err.value)
    assert "temperature: cache 1.0, now 0.7" in message
    assert "top_p" not in message and "max_new_tokens" not in message and "batch_size" not in message


def test_a_failed_first_batch_leaves_no_cache_that_locks_the_folder(tmp_path):
    """A run that fails before its first batch finishes (a closed server port) writes nothing, so a retry with
    other settings in the same folder is not refused."""
    cache = tmp_path / "gens.jsonl"
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(CountingBackend(crash_after_batches=0), GenerationConfig(n=6, batch_size=3), cache,
                        progress=False)  # fmt: skip
    assert not cache.exists() or cache.read_text().strip() == ""
    cache.write_text(json.dumps({"fingerprint": {"temperature": 0.5}}) + "\n")  # as the older code left it
    out = generate_corpus(CountingBackend(), GenerationConfig(n=6, batch_size=3, temperature=0.9), cache,
                          progress=False)  # fmt: skip
    assert [g.id for g in out] == list(range(6))
    assert json.loads(cache.read_text().splitlines()[0])["fingerprint"]["temperature"] == 0.9


def test_a_changed_batch_size_resumes_the_cache(tmp_path):
    cache = tmp_path / "gens.jsonl"
    generate_corpus(CountingBackend(), GenerationConfig(n=6, batch_size=3), cache, progress=False)
    backend = CountingBackend()
    out = generate_corpus(backend, GenerationConfig(n=8, batch_size=4), cache, progress=False)
    assert backend.calls == [[4, 5, 6, 7]] and [g.id for g in out] == list(range(8))  # 0-5 reused


def test_a_cut_last_line_is_repaired_and_the_next_record_kept(tmp_path):
    """A crash mid-line leaves no newline; the resumed run's first record must not be glued onto it."""
    cache = tmp_path / "gens.jsonl"
    config = GenerationConfig(n=6, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(CountingBackend(crash_after_batches=1), config, cache, progress=False)
    with cache.open("a") as handle:
        handle.write('{"id": 3, "prompt": "x", "te')  # cut mid-record, no newline
    first = CountingBackend()
    generate_corpus(first, config, cache, progress=False)
    assert first.calls == [[3, 4, 5]]
    records = [json.loads(line) for line in cache.read_text().splitlines()]  # every line parses
    assert sorted(r["id"] for r in records if "id" in r) == list(range(6))
    again = CountingBackend()
    generate_corpus(again, config, cache, progress=False)
    assert again.calls == []  # nothing was lost: the whole cache is read back


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n", 0, "n=0"),
        ("top_p", 0.0, "top_p=0.0"),
        ("temperature", 0.0, "temperature=0.0"),
        ("prompts", "x", "preset"),
    ],
)
def test_bad_generation_settings_fail_early(field, value, message):
    with pytest.raises(ValueError, match=message):
        generate_corpus(CountingBackend(), GenerationConfig(**{field: value}), None, progress=False)


class _CompletionsHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []
    failures_left = 0
    """Answer 500 to this many requests first (a server having trouble)."""
    delay = 0.0
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's name)
        import time

        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        with cls.lock:
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
            failing = cls.failures_left > 0
            cls.failures_left -= failing
        time.sleep(cls.delay)
        with cls.lock:
            cls.in_flight -= 1
        if failing:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "overloaded"}')
            return
        if body.get("model") != "served-model":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "model not found"}')
            return
        text = f" continuation of {body['prompt']!r} with seed {body['seed']}"
        reply = {"choices": [{"text": text, "finish_reason": "length"}], "usage": {"completion_tokens": 9}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def completions_server():
    _CompletionsHandler.requests = []
    _CompletionsHandler.failures_left, _CompletionsHandler.delay = 0, 0.0
    _CompletionsHandler.in_flight = _CompletionsHandler.max_in_flight = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CompletionsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_backend_on_loopback(completions_server, tmp_path):
    backend = OpenAICompletionsBackend(completions_server, "served-model", api_key="k", timeout=5)
    config = GenerationConfig(n=4, batch_size=2, max_new_tokens=9, prompts=["A", "B"], seed=3)
    out = generate_corpus(backend, config, tmp_path / "g.jsonl", progress=False)
    assert [g.prompt for g in out] == ["A", "B", "A", "B"]
    assert all(g.n_tokens == 9 for g in out)
    sent = _CompletionsHandler.requests
    assert [r["path"] for r in sent] == ["/v1/completions"] * 4
    assert {r["max_tokens"] for r in sent} == {9} and sent[0]["auth"] == "Bearer k"
    assert len({r["seed"] for r in sent}) == 4  # every generation seeded on its own


def test_server_client_errors_are_reported_not_retried(completions_server):
    backend = OpenAICompletionsBackend(completions_server, "no-such-model", timeout=5)
    with pytest.raises(ValueError, match="answered 404"):
        backend.generate(["x"], [0], GenerationConfig())
    assert len(_CompletionsHandler.requests) == 1


def test_server_failures_are_retried_then_reported_keeping_finished_batches(completions_server, tmp_path):
    backend = OpenAICompletionsBackend(
        completions_server, "served-model", timeout=5, retries=2, concurrency=1
    )
    _CompletionsHandler.failures_left = 2  # two 500s, then the retry succeeds
    out = backend.generate(["x"], [0], GenerationConfig())
    assert out[0].text.startswith(" continuation") and len(_CompletionsHandler.requests) == 3
    cache = tmp_path / "g.jsonl"
    config = GenerationConfig(n=4, batch_size=2, prompts=["A"])
    generate_corpus(backend, GenerationConfig(n=2, batch_size=2, prompts=["A"]), cache, progress=False)
    _CompletionsHandler.failures_left = 10**6  # down for good
    with pytest.raises(ConnectionError, match="answered 500 after 2 retries.*kept in the cache"):
        generate_corpus(backend, config, cache, progress=False)
    assert sum(1 for line in cache.read_text().splitlines() if '"id"' in line) == 2


def test_server_requests_run_concurrently_up_to_the_bound(completions_server):
    _CompletionsHandler.delay = 0.3
    backend = OpenAICompletionsBackend(completions_server, "served-model", timeout=5, concurrency=3)
    out = backend.generate(["A"] * 7, list(range(7)), GenerationConfig())
    assert [g.id for g in out] == list(range(7))  # in id order whatever finished first
    assert _CompletionsHandler.max_in_flight == 3


def test_server_prompts_start_with_the_bos_text_the_tokenizer_names(completions_server, tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tok("")["input_ids"] == [] and server_bos_text(tok) == "<s>"  # has a BOS, does not add it
    assert server_bos_text(None) is None and server_bos_text(tok, "none") is None
    assert server_bos_text(tok, "<|endoftext|>") == "<|endoftext|>"
    backend = OpenAICompletionsBackend(completions_server, "served-model", bos_text="<s>", concurrency=1)
    out = backend.generate(["", "The"], [0, 1], GenerationConfig())
    assert [r["prompt"] for r in _CompletionsHandler.requests] == ["<s>", "<s>The"]
    assert [g.prompt for g in out] == ["", "The"]  # the record keeps the user's prompt
    with pytest.raises(ValueError, match="--server_bos"):
        OpenAICompletionsBackend(completions_server, "served-model").generate([""], [0], GenerationConfig())


def test_local_backend_is_seeded_and_counts_tokens(tiny_llama_dir):
    from hf_fundamentals.integrations.hub import load_model

    model, tokenizer = load_model(str(tiny_llama_dir))
    config = GenerationConfig(n=4, batch_size=2, max_new_tokens=12, prompts="bos", seed=1)
    first = generate_corpus(LocalBackend(model, tokenizer), config, None, progress=False)
    second = generate_corpus(LocalBackend(model, tokenizer), config, None, progress=False)
    assert [g.text for g in first] == [g.text for g in second]
    assert all(0 <= g.n_tokens <= 12 for g in first)
    other = generate_corpus(
        LocalBackend(model, tokenizer),
        GenerationConfig(**{**config.__dict__, "seed": 2}),
        None,
        progress=False,
    )
    assert [g.text for g in other] != [g.text for g in first]


def test_local_backend_keeps_special_tokens_out_of_the_text_but_records_them(tiny_llama_dir):
    """A model that emits a special token (a domain tag, say) first: the text excludes it, meta records it."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tag|>"]})
    tag = tokenizer.convert_tokens_to_ids("<|tag|>")
    body = tokenizer("The number 4 is even", add_special_tokens=False)["input_ids"]

    class ScriptedModel:
        device = torch.device("cpu")

        def generate(self, input_ids, attention_mask, **kwargs):
            tail = torch.tensor([[tag, *body, tokenizer.eos_token_id, *body]] * input_ids.shape[0])
            return torch.cat([input_ids, tail], dim=1)

    config = GenerationConfig(n=2, batch_size=2, max_new_tokens=20, prompts="bos")
    gens = generate_corpus(LocalBackend(ScriptedModel(), tokenizer), config, None, progress=False)
    assert [g.text for g in gens] == ["The number 4 is even"] * 2  # stops at EOS, tag not in the text
    assert [g.meta for g in gens] == [{"special_tokens": ["<|tag|>"]}] * 2
    assert [g.n_tokens for g in gens] == [len(body)] * 2
