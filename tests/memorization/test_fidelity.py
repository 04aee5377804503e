"""Fidelity metrics on hand-made cases: a lookup-table model whose predictions we choose."""

from __future__ import annotations

import pytest
import torch

from hf_fundamentals.memorization import fidelity


class Table(torch.nn.Module):
    """Predicts ``next[token]`` with probability ``p[token]`` (the rest spread evenly), ignoring context."""

    def __init__(self, nxt: dict[int, int], p: dict[int, float], vocab: int = 10) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        logits = torch.full((vocab, vocab), 0.0)
        for tok in range(vocab):
            target, prob = nxt.get(tok, 0), p.get(tok, 0.05)
            row = torch.full((vocab,), (1 - prob) / (vocab - 1))
            row[target] = prob
            logits[tok] = row.log()
        self.table = logits

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return type("Out", (), {"logits": self.table[input_ids]})


def test_metrics_on_hand_made_items():
    # chain 1 -> 2 -> 3 -> 4 with p(2|1)=0.9, p(3|2)=0.4 (still argmax), p(4|3)=0.8
    model = Table({1: 2, 2: 3, 3: 4}, {1: 0.9, 2: 0.4, 3: 0.8})
    items = [([1], [2, 3, 4]), ([1], [2, 3, 5])]  # the second item's last token is not what the model says
    f = fidelity(model, items, pad_id=0, decode=True)
    assert f.items == 2 and f.answer_tokens == 6
    assert f.exact_match == 0.5 and f.exact_match_decoded == 0.5
    assert f.token_accuracy == pytest.approx(5 / 6)
    assert f.coverage == pytest.approx(3 / 6)  # p(2|1)=0.9 twice, p(4|3)=0.8 once; p(3|2)=0.4 is below 0.5
    with pytest.raises(ValueError, match="at least one answer token"):
        fidelity(model, [([1], [])], pad_id=0)


def test_left_padding_does_not_change_greedy_decoding(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    torch.manual_seed(0)
    items = [([5, 6, 7, 8, 9], [10, 11]), ([5, 6], [12, 13, 14])]
    both = fidelity(model, items, pad_id=2, decode=True, batch_size=2)
    single = [fidelity(model, [it], pad_id=2, decode=True) for it in items]
    assert both.token_accuracy == pytest.approx(sum(s.token_accuracy * s.answer_tokens for s in single) / 5)
    assert both.exact_match_decoded == both.exact_match  # greedy = all argmax-correct under teacher forcing
