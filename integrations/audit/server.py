"""Sampling from an OpenAI-compatible ``/v1/completions`` server (vLLM, ``transformers serve``, TGI, llama.cpp
server) instead of a local model: the ``openai`` client, bounded concurrency, retries, BOS-prefixed prompts."""

from __future__ import annotations

from typing import Any

from hf_fundamentals.integrations.audit.generation import Generation, GenerationConfig


class OpenAICompletionsBackend:
    """An OpenAI-compatible ``/v1/completions`` server (vLLM, ``transformers serve``, TGI, llama.cpp server), through
    the ``openai`` client, with ``concurrency`` requests in flight, so big models audit remotely.

    ``bos_text`` is prepended to every prompt, as :class:`LocalBackend` prepends the BOS token: servers tokenize
    ``prompt`` as plain text and most tokenizers add no BOS, so an empty (unconditional) prompt would otherwise be
    zero tokens (``transformers serve`` answers 500). :func:`server_bos_text` asks the local tokenizer for it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        concurrency: int = 4,
        bos_text: str | None = None,
        tokenizer_found: bool | None = None,
    ) -> None:
        import openai

        if concurrency < 1:
            raise ValueError(f"--concurrency {concurrency}: must be >= 1")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.retries = retries
        self.concurrency = concurrency
        self.bos_text = bos_text
        self.tokenizer_found = tokenizer_found
        """Whether ``bos_text`` came from the served model's tokenizer (None: it was given)."""
        # the client retries connection errors, 408/409/429 and 5xx with exponential backoff (openai-python README)
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=retries
        )
        self.name = f"server:{self.base_url}" + (f"+bos:{bos_text}" if bos_text else "")

    def _failed(self, err: Exception) -> Exception:
        """The one-line error for a request that failed after the client's retries."""
        import openai

        kept = "the generations finished so far are kept in the cache, so a rerun continues from them"
        if isinstance(err, openai.APIStatusError) and 400 <= err.status_code < 500:
            body = str(getattr(err, "body", None) or err.message)[:300]
            return ValueError(
                f"--server_url {self.base_url}: /completions answered {err.status_code}: {body}"
            )
        if isinstance(err, openai.APIStatusError):
            return ConnectionError(
                f"--server_url {self.base_url}: /completions answered {err.status_code} after {self.retries} "
                f"retries ({str(err.message)[:200]}); {kept}"
            )
        return ConnectionError(
            f"--server_url {self.base_url}: /completions failed after {self.retries} retries ({err}); {kept}"
        )

    def check(self) -> None:
        """Fail fast when nothing answers at the server (before the reference text and classifier are built)."""
        import openai

        try:
            self.client.with_options(max_retries=0, timeout=10).models.list()
        except openai.APIStatusError:
            return  # something answers (transformers serve's /models can fail offline): completions will tell
        except openai.APIError as err:
            raise ConnectionError(
                f"--server_url {self.base_url}: nothing answers there ({err}); start the server first (e.g. "
                "`vllm serve MODEL` or `transformers serve MODEL`) or check the address"
            ) from None

    def _one(self, gid: int, prompt: str, config: GenerationConfig) -> Generation:
        import openai

        text_in = (self.bos_text or "") + prompt
        if not text_in:
            raise ValueError(
                "an empty prompt would reach the server as zero tokens; pass --server_bos TEXT (the model's BOS "
                "token as text, e.g. '<|endoftext|>') or non-empty --prompts"
            )
        try:
            reply = self.client.completions.create(
                model=self.model,
                prompt=text_in,
                max_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                seed=config.seed * 1_000_003 + gid,
                n=1,
            )
        except openai.APIError as err:
            raise self._failed(err) from err
        if not reply.choices:
            raise ValueError(
                f"--server_url {self.base_url}: a completions reply without choices: {reply!r:.300}"
            )
        choice = reply.choices[0]
        text = choice.text or ""
        usage = reply.usage
        n_tokens = (
            int(usage.completion_tokens) if usage and usage.completion_tokens else max(1, len(text.split()))
        )
        return Generation(gid, prompt, text, n_tokens, {"finish_reason": choice.finish_reason})

    def generate(self, prompts: list[str], ids: list[int], config: GenerationConfig) -> list[Generation]:
        from concurrent.futures import ThreadPoolExecutor

        if self.concurrency == 1 or len(prompts) == 1:
            return [self._one(gid, p, config) for gid, p in zip(ids, prompts, strict=True)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(
                pool.map(lambda item: self._one(item[0], item[1], config), zip(ids, prompts, strict=True))
            )


def server_bos_text(tokenizer: Any | None, setting: str = "auto") -> str | None:
    """What to prepend to prompts sent to a server so that they start as :class:`LocalBackend`'s do.

    ``setting`` is ``"auto"`` (ask ``tokenizer``, the served model's tokenizer loaded here: its BOS token as text
    when it has one and does not add it itself, else nothing; nothing when no tokenizer could be loaded),
    ``"none"``, or the literal text to send.
    """
    if setting != "auto":
        return None if setting == "none" else setting
    if tokenizer is None or tokenizer.bos_token is None:
        return None
    if tokenizer("")["input_ids"]:  # the tokenizer (so the server) adds the BOS itself
        return None
    return tokenizer.bos_token
