"""MemFT weights and losses: masking, fallbacks, closed forms, patience/expansion, curriculum counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_fundamentals.memorization import (
    MemFTConfig,
    SlidingState,
    curriculum_active_samples,
    curriculum_ratio,
    curriculum_total_steps,
    memft_loss,
    memft_weights,
    position_weights,
    token_losses,
)

LN2 = math.log(2)


def _logits_for(probs: list[float], vocab: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [1, T+1, V] whose target (token 0) probabilities are ``probs``, and the matching labels."""
    rows = []
    for p in probs:
        rest = (1 - p) / (vocab - 1)
        rows.append(torch.log(torch.tensor([p] + [rest] * (vocab - 1))))
    logits = torch.stack(rows + [torch.zeros(vocab)]).unsqueeze(0)
    labels = torch.zeros(1, len(probs) + 1, dtype=torch.long)
    labels[0, 0] = -100  # the first position is never a target after the shift
    return logits.requires_grad_(True), labels


def test_ot_masks_learned_tokens_and_they_get_zero_gradient():
    logits, labels = _logits_for([0.9, 0.2, 0.7, 0.1])
    losses, mask, correct = token_losses(logits, labels)
    cfg = MemFTConfig("ot")
    w = memft_weights(losses, mask, correct, cfg)
    assert w.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    loss, stats = memft_loss(losses, mask, w, cfg)
    torch.testing.assert_close(loss, (losses[0, 1] + losses[0, 3]) / 2)
    loss.backward()
    grad = logits.grad[0]
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[2]) == 0  # p >= 0.5: untouched
    assert torch.count_nonzero(grad[1]) > 0 and torch.count_nonzero(grad[3]) > 0
    assert stats["active_ratio"] == 0.5 and stats["coverage"] == 0.5


def test_fallbacks_when_every_token_is_learned():
    logits, labels = _logits_for([0.9, 0.8])
    losses, mask, correct = token_losses(logits, labels)
    ot, zero = MemFTConfig("ot"), MemFTConfig("ot_zero_bp")
    loss, _ = memft_loss(losses, mask, memft_weights(losses, mask, correct, ot), ot)
    torch.testing.assert_close(loss, losses.sum() / 2)  # plain mean
    loss0, _ = memft_loss(losses, mask, memft_weights(losses, mask, correct, zero), zero)
    assert loss0.detach().item() == 0.0
    loss0.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_threshold_boundary_is_p_half():
    logits, labels = _logits_for([0.5001, 0.4999])
    losses, mask, correct = token_losses(logits, labels)
    assert memft_weights(losses, mask, correct, MemFTConfig("ot")).tolist() == [[0.0, 1.0]]
    assert MemFTConfig().loss_threshold == pytest.approx(LN2)


def test_hysteresis_keeps_tokens_active_until_the_high_line():
    logits, labels = _logits_for([0.55, 0.65, 0.3])
    losses, mask, correct = token_losses(logits, labels)
    cfg = MemFTConfig("ot", hysteresis_high=0.6)
    was = torch.tensor([[True, True, False]])
    assert memft_weights(losses, mask, correct, cfg, previously_active=was).tolist() == [[1.0, 0.0, 1.0]]
    assert memft_weights(losses, mask, correct, cfg).tolist() == [[0.0, 0.0, 1.0]]


def test_position_decay_closed_form():
    hard = torch.tensor([[True, False, True, True, False]])
    w = position_weights(hard, 2.0)
    want = [1.0, 0.0, math.exp(-2.0 * 0.5), math.exp(-2.0), 0.0]
    torch.testing.assert_close(w[0], torch.tensor(want))


def test_sliding_weights_match_the_closed_form():
    cfg = MemFTConfig("sw_sliding", window=3, sliding_tau=2.0)
    probs = [0.9, 0.2, 0.6, 0.3, 0.1, 0.2, 0.4]
    logits, labels = _logits_for(probs)
    losses, mask, correct = token_losses(logits, labels)
    w = memft_weights(losses, mask, correct, cfg, sliding_state=SlidingState())
    anchor = 1  # the first target whose argmax is wrong (p=0.2 < the other three's 0.267)
    want = []
    for pos, p in enumerate(probs):
        base = 1 / (1 + math.exp(-10 * (-math.log(p) - LN2)))
        d = pos - anchor
        factor = math.exp(-max(d, 0) / 2.0) if d < 3 else 0.01
        want.append(base * factor)
    torch.testing.assert_close(w[0], torch.tensor(want), rtol=1e-5, atol=1e-6)
    # no error in the row: the window multiplier is 1 everywhere
    logits, labels = _logits_for([0.9, 0.8])
    losses, mask, correct = token_losses(logits, labels)
    w = memft_weights(losses, mask, correct, cfg, sliding_state=SlidingState())
    base = [1 / (1 + math.exp(-10 * (-math.log(p) - LN2))) for p in (0.9, 0.8)]
    torch.testing.assert_close(w[0], torch.tensor(base), rtol=1e-5, atol=1e-7)


def test_patience_and_expansion_on_a_synthetic_anchor_trace():
    cfg = MemFTConfig("sw_sliding")
    state = SlidingState()
    trace = [5, 5, 5, 5, 5, 5, 5, 5, 5, 9, 9, -1]  # -1: no error in the row
    expansions, patiences = [], []
    for anchor in trace:
        has_error = torch.tensor([anchor >= 0])
        e = state.update(torch.tensor([max(anchor, 0)]), has_error, cfg)
        expansions.append(float(e[0]))
        patiences.append(float(state.patience[0]))
    assert patiences == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0]
    assert expansions == [1, 1, 1, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 1, 1, 1]
    restored = SlidingState()
    restored.load_state_dict(state.state_dict())
    assert torch.equal(restored.patience, state.patience) and torch.equal(
        restored.last_anchor, state.last_anchor
    )


def _reference_curriculum_steps(n, batch, epochs, ratios, bounds):
    """The repo formula (MemFTModelTrainer._get_curriculum_active_indices), transcribed."""
    steps = 0
    for epoch in range(epochs):
        ratio = next((r for r, b in zip(ratios, bounds, strict=True) if epoch < b), ratios[-1])
        complete = (n // batch) * batch
        active = max(batch, (int(n * ratio) // batch) * batch)
        steps += min(complete, active) // batch
    return steps


@pytest.mark.parametrize(("n", "batch", "epochs"), [(100, 10, 300), (1000, 16, 250), (37, 5, 90), (7, 7, 10)])
def test_curriculum_step_counts_match_the_reference(n, batch, epochs):
    cfg = MemFTConfig("sw_curriculum", curriculum_epoch_boundaries=(20, 40, 60, 80, 300))
    want = _reference_curriculum_steps(
        n, batch, epochs, cfg.curriculum_ratios, cfg.curriculum_epoch_boundaries
    )
    assert curriculum_total_steps(n, batch, epochs, cfg) == want
    assert (
        curriculum_ratio(0, cfg) == 0.2
        and curriculum_ratio(45, cfg) == 0.6
        and curriculum_ratio(999, cfg) == 1.0
    )
    assert curriculum_active_samples(0, 100, 10, cfg) == 20
    assert curriculum_active_samples(0, 12, 10, cfg) == 10  # at least one batch


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="MemFT mode 'fast'"):
        MemFTConfig("fast")
    with pytest.raises(ValueError, match="hysteresis_high must lie between"):
        MemFTConfig(hysteresis_high=0.4)
    with pytest.raises(ValueError, match="same length"):
        MemFTConfig(curriculum_ratios=(0.5, 1.0), curriculum_epoch_boundaries=(10,))
    with pytest.raises(ValueError, match="at least one full batch"):
        curriculum_active_samples(0, 3, 4, MemFTConfig())
    assert np.isclose(MemFTConfig(threshold=0.9).loss_threshold, -math.log(0.9))
