"""The chunked distillation loss: exact CE at alpha 0, KD 0 for teacher = student, KL directions, chunking,
padding, temperature, vocabulary cuts, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hf_fundamentals.distill import (
    KDConfig,
    LMHead,
    distill_loss,
    distill_terms,
    mix_terms,
    shift_for_causal_lm,
)

V, H_S, H_T = 50, 16, 24


def setup(seed: int = 0, batch: int = 3, length: int = 11):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(batch, length, H_S, generator=g, requires_grad=True)
    ht = torch.randn(batch, length, H_T, generator=g)
    ws = (torch.randn(V, H_S, generator=g) * 0.5).requires_grad_()
    wt = torch.randn(V, H_T, generator=g) * 0.5
    labels = torch.randint(0, V, (batch, length), generator=g)
    labels[0, 7:] = -100  # right padding
    labels[2, :2] = -100  # an unlearned prefix
    return hs, ht, ws, wt, labels


def reference(hs, ht, ws, wt, labels, alpha, temperature=1.0, kl="forward"):
    """Unchunked, full logits, straight from the formula."""
    s, t = (hs @ ws.T)[:, :-1].float(), (ht @ wt.T)[:, :-1].float()
    y = labels[:, 1:]
    mask = y != -100
    ce = F.cross_entropy(s.reshape(-1, V), y.reshape(-1), ignore_index=-100)
    ls, lt = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    per = (lt.exp() * (lt - ls)).sum(-1) if kl == "forward" else (ls.exp() * (ls - lt)).sum(-1)
    kd = per[mask].mean()
    return (1 - alpha) * ce + alpha * temperature**2 * kd, ce, kd


def test_alpha_zero_is_plain_cross_entropy_exactly():
    hs, ht, ws, wt, labels = setup()
    loss, ce, _ = distill_loss(hs, ht, labels, alpha=0.0, student_head=ws, teacher_head=wt, chunk_size=4096)
    full = F.cross_entropy((hs @ ws.T)[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.equal(loss, ce)  # no 0 * KD added: the loss is the CE tensor itself
    torch.testing.assert_close(loss, full, rtol=1e-6, atol=1e-6)
    (g_loss,) = torch.autograd.grad(loss, hs)
    (g_full,) = torch.autograd.grad(full, hs)
    torch.testing.assert_close(g_loss, g_full, rtol=1e-5, atol=1e-7)


def test_alpha_zero_matches_the_models_own_causal_lm_loss():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))  # fmt: skip
    ids = torch.randint(0, V, (2, 13))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    loss, ce, kd = distill_loss(hidden, hidden, labels, alpha=0.0, student_head=model.lm_head,
                                teacher_head=model.lm_head)  # fmt: skip
    assert torch.equal(loss, ce) and kd.item() == 0.0
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kl", ["forward", "reverse"])
def test_teacher_equal_to_student_gives_zero_kd(kl):
    hs, _, ws, _, labels = setup()
    loss, ce, kd = distill_loss(hs, hs, labels, alpha=0.7, temperature=2.0, kl=kl, student_head=ws,
                                teacher_head=ws.detach(), chunk_size=5)  # fmt: skip
    assert kd.item() == 0.0
    torch.testing.assert_close(loss, 0.3 * ce)


@pytest.mark.parametrize("kl", ["forward", "reverse"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_matches_the_formula(kl, temperature):
    hs, ht, ws, wt, labels = setup()
    got = distill_loss(hs, ht, labels, alpha=0.6, temperature=temperature, kl=kl, student_head=ws,
                       teacher_head=wt, chunk_size=7)  # fmt: skip
    want = reference(hs, ht, ws, wt, labels, 0.6, temperature, kl)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:You are importing from 'trl.experimental'")
def test_forward_and_reverse_differ_and_match_trl_beta_0_and_1():
    """Forward KL is TRL's generalized JSD at beta 0, reverse at beta 1 (GKDTrainer.generalized_jsd_loss)."""
    from trl.experimental.gkd import GKDTrainer

    hs, ht, ws, wt, labels = setup()
    s, t = (hs @ ws.T).detach(), ht @ wt.T
    fwd = distill_loss(s, t, labels, alpha=1.0, kl="forward")[2]
    rev = distill_loss(s, t, labels, alpha=1.0, kl="reverse")[2]
    assert abs(fwd.item() - rev.item()) > 1e-3
    for beta, ours in ((0.0, fwd), (1.0, rev)):
        trl = GKDTrainer.generalized_jsd_loss(s[:, :-1], t[:, :-1], labels=labels[:, 1:], beta=beta)
        torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-6)


def test_chunked_equals_unchunked_values_and_gradients():
    hs, ht, ws, wt, labels = setup(seed=1, batch=4, length=19)
    results = []
    for chunk in (1, 3, 16, 10_000):
        hs.grad, ws.grad = None, None
        loss, ce, kd = distill_loss(hs, ht, labels, alpha=0.5, temperature=1.5, student_head=ws, teacher_head=wt,
                                    chunk_size=chunk)  # fmt: skip
        loss.backward()
        results.append((loss.detach(), ce.detach(), kd.detach(), hs.grad.clone(), ws.grad.clone()))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_hidden_states_with_heads_equal_logits_without():
    hs, ht, ws, wt, labels = setup()
    from_hidden = distill_loss(hs, ht, labels, alpha=0.5, student_head=ws, teacher_head=wt, chunk_size=4)
    from_logits = distill_loss(hs @ ws.T, ht @ wt.T, labels, alpha=0.5, chunk_size=4)
    for a, b in zip(from_hidden, from_logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_padding_and_ignored_positions_do_not_count():
    """Garbage at ignored positions changes nothing; a padded batch equals its rows computed alone."""
    hs, ht, ws, wt, labels = setup()
    base = distill_loss(hs, ht, labels, alpha=0.5, student_head=ws, teacher_head=wt)
    noisy_s, noisy_t = hs.detach().clone(), ht.clone()
    noisy_s[0, 7:], noisy_t[0, 7:] = 1e3, -1e3  # positions 7.. of row 0 are padding (labels -100 from 7)
    noisy_s[2, :1], noisy_t[2, :1] = 1e3, -1e3  # position 0 of row 2 predicts an ignored label
    other = distill_loss(noisy_s, noisy_t, labels, alpha=0.5, student_head=ws, teacher_head=wt)
    for a, b in zip(base, other, strict=True):
        torch.testing.assert_close(a, b)
    # token-weighted mean over rows == the batch value
    terms = [distill_terms(hs[i : i + 1], ht[i : i + 1], labels[i : i + 1], student_head=ws, teacher_head=wt)
             for i in range(3)]  # fmt: skip
    n = sum(int(t.n_tokens) for t in terms)
    assert n == int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(sum(t.ce_sum for t in terms) / n, base[1])
    torch.testing.assert_close(sum(t.kd_sum for t in terms) / n, base[2])


def test_custom_ignore_index_and_preshifted_labels():
    hs, ht, ws, wt, labels = setup()
    a = distill_loss(hs, ht, labels, alpha=0.5, student_head=ws, teacher_head=wt)
    b = distill_loss(hs, ht, labels.masked_fill(labels == -100, -1), alpha=0.5, student_head=ws, teacher_head=wt,
                     ignore_index=-1)  # fmt: skip
    c = distill_loss(hs, ht, shift_for_causal_lm(labels), alpha=0.5, student_head=ws, teacher_head=wt,
                     shift=False)  # fmt: skip
    for x, y, z in zip(a, b, c, strict=True):
        torch.testing.assert_close(x, y)
        torch.testing.assert_close(x, z)


def test_num_items_in_batch_divides_the_sums():
    hs, ht, ws, wt, labels = setup()
    terms = distill_terms(hs, ht, labels, student_head=ws, teacher_head=wt)
    loss, ce, kd = distill_loss(
        hs, ht, labels, alpha=0.25, student_head=ws, teacher_head=wt, num_items_in_batch=100
    )
    torch.testing.assert_close(ce, terms.ce_sum / 100)
    torch.testing.assert_close(kd, terms.kd_sum / 100)
    torch.testing.assert_close(loss, 0.75 * ce + 0.25 * kd)


def test_temperature_squared_keeps_the_kd_gradient_scale():
    """T² compensates the 1/T² shrinking of the soft-target gradient (Hinton et al.): at large T the KD gradient
    approaches the logit-matching gradient, independent of T."""
    hs, ht, ws, wt, labels = setup()
    norms = []
    for temperature in (4.0, 8.0, 16.0):
        hs.grad = None
        loss, _, _ = distill_loss(hs, ht, labels, alpha=1.0, temperature=temperature, student_head=ws,
                                  teacher_head=wt)  # fmt: skip
        loss.backward()
        norms.append(hs.grad.norm().item())
    assert max(norms) / min(norms) < 1.3
    assert torch.equal(mix_terms(torch.tensor(2.0), torch.tensor(3.0), 1.0, 2.0), torch.tensor(12.0))


def test_vocab_size_cuts_padded_heads_and_mismatch_fails():
    hs, ht, ws, wt, labels = setup()
    wt_padded = torch.cat([wt, torch.randn(14, H_T)])  # the teacher pads its head to 64 rows
    with pytest.raises(ValueError, match="pass vocab_size=len"):
        distill_loss(hs, ht, labels, student_head=ws, teacher_head=wt_padded)
    cut = distill_loss(hs, ht, labels, student_head=ws, teacher_head=wt_padded, vocab_size=V)
    same = distill_loss(hs, ht, labels, student_head=ws, teacher_head=wt)
    for a, b in zip(cut, same, strict=True):
        torch.testing.assert_close(a, b)


def test_lm_head_scale_softcap_and_module():
    hs, _, ws, _, _ = setup()
    linear = torch.nn.Linear(H_S, V, bias=True)
    h = hs[0].detach()
    torch.testing.assert_close(LMHead(linear)(h), linear(h))
    torch.testing.assert_close(LMHead(linear.weight, bias=linear.bias)(h), linear(h))
    capped = LMHead(ws, scale=2.0, softcap=3.0)(h)
    torch.testing.assert_close(capped, torch.tanh(2.0 * (h @ ws.T) / 3.0) * 3.0)


def test_no_target_tokens_gives_zero_with_a_graph():
    hs, ht, ws, wt, labels = setup()
    loss, ce, kd = distill_loss(
        hs, ht, torch.full_like(labels, -100), alpha=0.5, student_head=ws, teacher_head=wt
    )
    assert loss.item() == 0.0 and ce.item() == 0.0 and kd.item() == 0.0
    loss.backward()
    assert hs.grad is not None and hs.grad.abs().sum() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"kl": "jsd"}, "kl 'jsd'"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_settings_fail_with_the_name(kwargs, message):
    hs, ht, ws, wt, labels = setup()
    with pytest.raises(ValueError, match=message):
        distill_loss(hs, ht, labels, student_head=ws, teacher_head=wt, **kwargs)
    with pytest.raises(ValueError, match=message):
        KDConfig(**kwargs)


def test_shape_mismatch_fails():
    hs, ht, ws, wt, labels = setup()
    with pytest.raises(ValueError, match="must share"):
        distill_loss(hs, ht[:, :-1], labels, student_head=ws, teacher_head=wt)
