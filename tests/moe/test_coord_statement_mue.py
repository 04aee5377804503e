"""The coordinate-check statement on real transformers models: Qwen3-MoE targets across width built under
Complete-muE from a dense Qwen3 proxy must pass; the same targets in the standard parameterization (HF init,
one global AdamW lr) must fail. Both zero-init the readout, as the mup README advises for a coordinate check
(a µP readout makes the logits vanish at init by design, which is not a width error)."""

from __future__ import annotations

import pytest
import torch

from hf_fundamentals.integrations.moe.lr_sweep import SweepSettings, build_run
from hf_fundamentals.moe import coord_check, coord_verdict

MODULES = (
    r"(embed_tokens|layers\.\d+|layers\.\d+\.self_attn|layers\.\d+\.mlp|layers\.\d+\.mlp\.gate|lm_head)$"
)
WIDTHS = (64, 128, 256, 512)


def _cfg(d, moe=True):
    from transformers import Qwen3Config, Qwen3MoeConfig

    common = dict(
        vocab_size=64, hidden_size=d, num_hidden_layers=1, num_attention_heads=d // 16, num_key_value_heads=d // 16,
        head_dim=16, max_position_embeddings=16, tie_word_embeddings=False, initializer_range=0.02, use_cache=False,
    )  # fmt: skip
    if not moe:
        return Qwen3Config(intermediate_size=2 * d, **common)
    return Qwen3MoeConfig(
        intermediate_size=2 * d, moe_intermediate_size=d, num_experts=4, num_experts_per_tok=2,
        decoder_sparse_step=1, mlp_only_layers=[], output_router_logits=False, **common,
    )  # fmt: skip


def _check(param, lr=2.0**-6):
    proxy = _cfg(32, moe=False)
    settings = SweepSettings(steps=100, eval_every=10, last_evals=1)
    factories, optimizers = {}, {}
    for d in WIDTHS:
        holder = {}

        def make(d=d, holder=holder):
            model, holder["groups"] = build_run(
                proxy, _cfg(d), param, lr, int(torch.initial_seed()), settings
            )
            with (
                torch.no_grad()
            ):  # mup README: zero-init the readout for a coord check (µP logits vanish at init)
                model.lm_head.weight.zero_()
            return model

        factories[d] = make
        optimizers[d] = lambda model, holder=holder: torch.optim.AdamW(
            holder["groups"], lr=lr, betas=(0.9, 0.95)
        )
    batch = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))
    cd = coord_check(factories, [batch], 4, optimizers, MODULES, seeds=[0, 1], fix_data=True)
    return coord_verdict(cd, {str(d): d for d in WIDTHS}, name=param)


@pytest.mark.filterwarnings("ignore")
def test_mue_passes_and_sp_fails_the_width_coordinate_check():
    mue, sp = _check("mue"), _check("sp")
    assert mue.passed, mue.statement
    assert not sp.passed and abs(sp.worst_slope) > 0.5, sp.statement
