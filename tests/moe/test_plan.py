"""Complete-muE transfer plan: the blog's worked example, identity transfer, the batch/duration table, no MoE
multiplier on lr/wd, multiplier folding (algebra and an AdamW run), the readout LR rule ("mup" vs "blog", with a
coordinate check across widths), JSON round trip, bad inputs, the γ knob, and the Bridge-I exactness claim (a
dense SwiGLU FFN split into all-active experts with R = N) in pure torch."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from hf_fundamentals.moe import (
    GROUPS,
    READOUT_LR_RULES,
    SOURCES,
    DenseProxy,
    MoETarget,
    Plan,
    TransferOptions,
    coord_check,
    transfer_plan,
)

WIDTH_GROUPS = (
    "attention",
    "router",
    "expert_gate_up",
    "expert_down",
    "shared_up",
    "shared_down",
    "shared_gate",
    "dense_up",
    "dense_down",
    "lm_head",
)


def _proxy(**kw) -> DenseProxy:
    base = dict(
        d=128,
        ffn_width=128,
        lr=1e-3,
        weight_decay=0.10,
        init_std=1e-2,
        adam_eps=1e-8,
        betas=(0.9, 0.95),
        batch_tokens=1 << 19,
        steps=25_000,
    )
    base.update(kw)
    return DenseProxy(**base)


def _blog_target(**kw) -> MoETarget:
    """`128e8a1s` at d = 1024 with h = d, so H_act = 8d + d = 9d (the Complete-muE blog's large runs)."""
    base = dict(
        d=1024,
        n_experts=128,
        n_active=8,
        expert_width=1024,
        shared_width=1024,
        batch_tokens=1 << 19,
        steps=25_000,
    )
    base.update(kw)
    return MoETarget(**base)


# ---------------------------------------------------------------- the blog's worked example (step 3)


def test_blog_worked_example_d128_to_d1024():
    plan = transfer_plan(_proxy(), _blog_target(), TransferOptions(readout_lr="blog"))
    assert plan.rho_d == 8
    assert plan.h_act == 9 * 1024
    assert plan.forward.A_routed == pytest.approx(1 / 9)
    assert plan.forward.A_shared == pytest.approx(1 / 9)
    assert plan.forward.R == 8
    assert plan.forward.readout == pytest.approx(1 / 8)
    g = plan.groups
    # down-proj: LR x1/8, init x3/sqrt(8) ~ 1.06
    assert g["expert_down"].lr_mult == pytest.approx(1 / 8)
    assert g["expert_down"].init_std_mult == pytest.approx(3 / math.sqrt(8))
    assert g["expert_down"].init_std_mult == pytest.approx(1.0607, abs=1e-4)
    assert g["shared_down"].init_std_mult == pytest.approx(3 / math.sqrt(8))
    # up/gate/router/attention/LM head: LR x1/8, init x1/sqrt(8) ~ 0.354
    for name in ("expert_gate_up", "shared_up", "router", "attention", "lm_head"):
        assert g[name].lr_mult == pytest.approx(1 / 8), name
        assert g[name].init_std_mult == pytest.approx(0.35355, abs=1e-5), name
    # embedding and vector-like: unchanged (Proposed)
    for name in ("embedding", "vector"):
        assert (g[name].lr_mult, g[name].init_std_mult, g[name].wd_mult, g[name].eps_mult) == (1, 1, 1, 1)
    assert "dense_up" not in g and "dense_down" not in g
    assert list(g) == [n for n in GROUPS if n in g]
    assert g["lm_head"].source == SOURCES["lm_head"] and "[BLOG]" in g["lm_head"].source
    # the default readout rule differs from the worked example on the lm_head LR only
    default = transfer_plan(_proxy(), _blog_target())
    assert default.options.readout_lr == "mup"
    assert default.groups["lm_head"].lr_mult == 1
    assert {k: v for k, v in default.groups.items() if k != "lm_head"} == {
        k: v for k, v in g.items() if k != "lm_head"
    }
    assert default.forward == plan.forward and default.forward_in_model == plan.forward_in_model


def test_blog_large_run_hparams_fixed_batch_steps_x4():
    """The blog's LM and diffusion runs: T 25k -> 100k at fixed batch halves η and λ; init is kept
    (Complete-muE blog)."""
    for lr, wd, init, lr_big, wd_big in (
        (1e-3, 0.10, 1e-2, 5e-4, 0.05),
        (4.52e-3, 0.02, 2e-2, 2.26e-3, 0.01),
    ):
        plan = transfer_plan(
            _proxy(lr=lr, weight_decay=wd, init_std=init), _blog_target(steps=100_000), TransferOptions()
        )
        assert plan.global_hparams.lr == pytest.approx(lr_big)
        assert plan.global_hparams.weight_decay == pytest.approx(wd_big)
        assert plan.sigma1_proxy == init
        # absolute down init (unfolded) = sqrt(H_act/d)·σ1·rho_d^-1/2 = 3/sqrt(8)·init
        unfolded = transfer_plan(
            _proxy(lr=lr, weight_decay=wd, init_std=init),
            _blog_target(steps=100_000),
            TransferOptions(fold_multipliers=False),
        )
        assert unfolded.groups["expert_down"].init_std == pytest.approx(3 / math.sqrt(8) * init)
        assert unfolded.groups["attention"].init_std == pytest.approx(init / math.sqrt(8))


def test_non_unit_proxy_multipliers_are_relative_to_the_proxys_own_down():
    """With H_ref = 4d* the proxy's own down init is sqrt(4)·σ1, so the x3/sqrt(8) of the blog is relative to
    σ1, and the multiplier relative to the proxy's down is 3/sqrt(8)/2; A_proxy = 1/4."""
    plan = transfer_plan(_proxy(ffn_width=512), _blog_target(), TransferOptions(fold_multipliers=False))
    assert plan.A_proxy == pytest.approx(0.25)
    assert plan.groups["expert_down"].init_std_mult == pytest.approx(3 / math.sqrt(8) / 2)
    assert plan.groups["expert_down"].init_std == pytest.approx(3 / math.sqrt(8) * 1e-2)
    # an explicitly tuned proxy down init defines σ1 instead: σ1 = 0.03·sqrt(d*/H_ref) = 0.015
    plan2 = transfer_plan(
        _proxy(ffn_width=512, down_init_std=0.03), _blog_target(), TransferOptions(fold_multipliers=False)
    )
    assert plan2.sigma1_proxy == pytest.approx(0.015)
    assert plan2.groups["expert_down"].init_std == pytest.approx(0.03 * 3 / math.sqrt(8) / 2)


def test_gate_up_convention_doubles_h_act_and_resolves_the_9_vs_4_5_reading():
    """The blog calls 128e8a1s "4.5x FFN-expansion equivalent": with h = d/2 the block is 4.5x under a·h +
    shared and 9x when gate+up are counted."""
    half = _blog_target(expert_width=512, shared_width=512)
    ah = transfer_plan(_proxy(), half)
    gu = transfer_plan(_proxy(), half, TransferOptions(h_act_convention="gate_up"))
    assert ah.h_act == 4608 and ah.forward.A_routed == pytest.approx(1 / 4.5)
    assert gu.h_act == 9216 and gu.forward.A_routed == pytest.approx(1 / 9)
    assert gu.A_proxy == pytest.approx(0.5) and ah.A_proxy == pytest.approx(1.0)
    # relative multipliers do not depend on the convention (the factor 2 hits proxy and target alike)
    assert gu.groups["expert_down"].init_std_mult == pytest.approx(ah.groups["expert_down"].init_std_mult)
    assert gu.groups["expert_down"].init_std_mult == pytest.approx(math.sqrt(4.5) / math.sqrt(8))


# ---------------------------------------------------------------- identity transfer


@pytest.mark.parametrize("h_ref", [128, 512])
def test_identity_transfer_is_all_ones(h_ref):
    proxy = _proxy(ffn_width=h_ref)
    target = MoETarget.dense(d=128, ffn_width=h_ref, batch_tokens=proxy.batch_tokens, steps=proxy.steps)
    assert target.is_dense
    plan = transfer_plan(proxy, target)
    assert plan.rho_d == plan.rho_B == plan.rho_D == 1
    gl = plan.global_hparams
    assert (gl.lr, gl.weight_decay, gl.eps, gl.betas) == (1e-3, 0.10, 1e-8, (0.9, 0.95))
    assert plan.forward.A_dense == pytest.approx(128 / h_ref) == plan.A_proxy
    assert plan.forward.readout == 1
    assert plan.forward.A_routed is None and plan.forward.R is None
    assert set(plan.groups) == {"embedding", "attention", "dense_up", "dense_down", "lm_head", "vector"}
    for r in plan.groups.values():
        assert (r.lr_mult, r.wd_mult, r.eps_mult) == (1, 1, 1), r.name
        assert r.init_std_mult == pytest.approx(1.0), r.name
    unfolded = transfer_plan(proxy, target, TransferOptions(fold_multipliers=False))
    for r in unfolded.groups.values():
        assert r.lr == 1e-3 and r.weight_decay == 0.10 and r.eps == 1e-8, r.name
    assert unfolded.groups["dense_down"].init_std == pytest.approx(math.sqrt(h_ref / 128) * 1e-2)


# ---------------------------------------------------------------- batch / duration (arXiv 2605.23893 Table 2)


def _bd(kappa_batch: float, kappa_steps: float) -> Plan:
    proxy = _proxy(batch_tokens=1000, steps=4000, betas=(0.8, 0.9), adam_eps=1e-8)
    target = MoETarget.dense(
        d=128, ffn_width=128, batch_tokens=int(1000 * kappa_batch), steps=int(4000 * kappa_steps)
    )
    return transfer_plan(proxy, target)


def test_fixed_tokens_batch_x_kappa():
    k = 2.0
    g = _bd(k, 1 / k).global_hparams
    assert g.lr == pytest.approx(1e-3 * math.sqrt(k))
    assert g.weight_decay == pytest.approx(0.10 * math.sqrt(k))
    assert g.eps == pytest.approx(1e-8 / math.sqrt(k))
    assert 1 - g.betas[0] == pytest.approx(0.2 * k)
    assert 1 - g.betas[1] == pytest.approx(0.1 * k)


def test_fixed_steps_batch_x_kappa_changes_nothing():
    g = _bd(4.0, 1.0).global_hparams
    assert g.lr == pytest.approx(1e-3) and g.weight_decay == pytest.approx(0.10)
    assert g.eps == pytest.approx(1e-8) and g.betas == pytest.approx((0.8, 0.9))


def test_fixed_batch_steps_x_kappa():
    k = 4.0
    g = _bd(1.0, k).global_hparams
    assert g.lr == pytest.approx(1e-3 / math.sqrt(k))
    assert g.weight_decay == pytest.approx(0.10 / math.sqrt(k))
    assert g.eps == pytest.approx(1e-8 * math.sqrt(k))
    assert 1 - g.betas[0] == pytest.approx(0.2 / k)
    assert 1 - g.betas[1] == pytest.approx(0.1 / k)


def test_beta_leaving_its_range_raises():
    proxy = _proxy(batch_tokens=1000, steps=4000, betas=(0.8, 0.9))
    target = MoETarget.dense(d=128, ffn_width=128, batch_tokens=8000, steps=500)  # fixed tokens, κ = 8
    with pytest.raises(ValueError, match="beta1"):
        transfer_plan(proxy, target)


# ---------------------------------------------------------------- no MoE lr / wd multiplier (blog, Bridge II)


def test_a_and_n_change_only_A_R_and_down_init():
    plans = {
        (n, a): transfer_plan(
            _proxy(),
            _blog_target(n_experts=n, n_active=a, shared_width=0),
            TransferOptions(fold_multipliers=False),
        )
        for n, a in ((8, 1), (8, 2), (64, 2), (64, 8), (128, 8))
    }
    ref = plans[(8, 1)]
    for (n, a), p in plans.items():
        assert p.global_hparams == ref.global_hparams
        for name, r in p.groups.items():
            base = ref.groups[name]
            assert (r.lr, r.weight_decay, r.eps, r.lr_mult, r.wd_mult) == (
                base.lr,
                base.weight_decay,
                base.eps,
                base.lr_mult,
                base.wd_mult,
            ), (n, a, name)
            if name != "expert_down":
                assert r.init_std == base.init_std, (n, a, name)
        assert p.forward.R == a
        assert p.forward.A_routed == pytest.approx(1024 / (a * 1024))
        assert p.groups["expert_down"].init_std_mult == pytest.approx(math.sqrt(a) / math.sqrt(8))
    # N at fixed a changes nothing at all in the plan's numbers
    assert plans[(8, 2)].groups == plans[(64, 2)].groups
    assert plans[(8, 2)].forward == plans[(64, 2)].forward


# ---------------------------------------------------------------- folding (ours: µP symmetry under Adam)


def test_folding_algebra_and_forward_left_in_model():
    opts = dict(h_act_convention="ah")
    target = _blog_target(dense_ffn_width=4096)
    plain = transfer_plan(_proxy(), target, TransferOptions(fold_multipliers=False, **opts))
    fold = transfer_plan(_proxy(), target, TransferOptions(fold_multipliers=True, **opts))
    a = 1024 / (9 * 1024)
    expected_c = {"expert_down": a * 8, "shared_down": a, "dense_down": 1024 / 4096, "lm_head": 1 / 8}
    for name, r in fold.groups.items():
        u = plain.groups[name]
        c = expected_c.get(name)
        assert r.fold == (pytest.approx(c) if c is not None else None), name
        k = 1.0 if c is None else c
        assert r.lr == pytest.approx(u.lr * k), name
        assert r.weight_decay == pytest.approx(u.weight_decay / k), name
        assert r.eps == pytest.approx(u.eps / k), name
        if u.init_std is not None:
            assert r.init_std == pytest.approx(u.init_std * k), name
        assert (r.lr_mult, r.init_std_mult, r.wd_mult, r.eps_mult) == (
            u.lr_mult,
            u.init_std_mult,
            u.wd_mult,
            u.eps_mult,
        )
        assert u.fold is None
    assert fold.forward == plain.forward
    assert plain.forward_in_model == plain.forward
    fm = fold.forward_in_model
    assert (fm.A_routed, fm.A_shared, fm.A_dense, fm.R, fm.readout) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_tied_embeddings_keep_the_readout_in_forward():
    tied = transfer_plan(_proxy(tied_embeddings=True), _blog_target())
    lm = tied.groups["lm_head"]
    assert lm.fold is None
    assert (lm.lr_mult, lm.init_std_mult, lm.wd_mult, lm.eps_mult) == (1, 1, 1, 1)  # the embedding's rule
    assert tied.forward_in_model.readout == pytest.approx(1 / 8)
    assert tied.forward_in_model.A_routed == 1.0  # the block multipliers still fold
    untied = transfer_plan(_proxy(tied_embeddings=False), _blog_target())
    assert untied.groups["lm_head"].fold == pytest.approx(1 / 8)
    assert untied.forward_in_model.readout == 1.0


def test_folding_is_exact_under_adamw():
    """A linear map with forward multiplier c trained by AdamW (lr, wd, eps) equals one with W' = cW trained with
    (lr·c, wd/c, eps/c): W' stays c·W over several steps (the Adam part of our folding claim)."""
    torch.manual_seed(0)
    c, lr, wd, eps = 0.15, 3e-2, 0.2, 1e-3  # eps large enough to matter
    x = torch.randn(16, 6, dtype=torch.float64)
    y = torch.randn(16, 4, dtype=torch.float64)
    w0 = 0.3 * torch.randn(4, 6, dtype=torch.float64)

    def train(scale: float, w_init: torch.Tensor, **hp) -> torch.Tensor:
        param = torch.nn.Parameter(w_init.clone())
        opt = torch.optim.AdamW([param], **hp)
        for _ in range(5):
            opt.zero_grad()
            ((x @ (scale * param).T - y) ** 2).mean().backward()
            opt.step()
        return param.detach()

    w = train(c, w0, lr=lr, weight_decay=wd, eps=eps)
    wf = train(1.0, c * w0, lr=lr * c, weight_decay=wd / c, eps=eps / c)
    assert (w - w0).abs().max() > 1e-2  # it trained
    torch.testing.assert_close(wf, c * w, rtol=1e-10, atol=1e-12)
    # with eps left unscaled (or wd unscaled) the equivalence breaks: each part of the rule is needed
    bad_eps = train(1.0, c * w0, lr=lr * c, weight_decay=wd / c, eps=eps)
    bad_wd = train(1.0, c * w0, lr=lr * c, weight_decay=wd, eps=eps / c)
    assert (bad_eps - c * w).abs().max() > 1e-4
    assert (bad_wd - c * w).abs().max() > 1e-4


# ---------------------------------------------------------------- options


def test_eps_and_wd_switches():
    mup = transfer_plan(_proxy(), _blog_target(), TransferOptions(readout_lr="blog"))
    none = transfer_plan(
        _proxy(),
        _blog_target(),
        TransferOptions(eps_width_rule="none", wd_coupling="none", readout_lr="blog"),
    )
    for name in WIDTH_GROUPS:
        if name in mup.groups:
            assert mup.groups[name].eps_mult == pytest.approx(1 / 8), name
            assert mup.groups[name].wd_mult == pytest.approx(8), name
            assert none.groups[name].eps_mult == 1 and none.groups[name].wd_mult == 1, name
    # under readout_lr="mup" the lm_head LR is not width-scaled, so neither are its lr-coupled wd and eps
    for options in (TransferOptions(), TransferOptions(eps_width_rule="none", wd_coupling="none")):
        lm = transfer_plan(_proxy(), _blog_target(), options).groups["lm_head"]
        assert (lm.lr_mult, lm.wd_mult, lm.eps_mult) == (1, 1, 1), options
    # keep_lr_wd: the per-step decay lr·wd of hidden matrices is width-invariant
    r = mup.groups["attention"]
    assert r.lr_mult * r.wd_mult == pytest.approx(1.0)


# ---------------------------------------------------------------- the readout LR rule


def test_readout_lr_mup_keeps_the_lm_head_lr_and_its_lr_coupled_factors():
    """Untied, rho_d = 8: "mup" leaves lr, wd and eps of lm_head at the proxy's (relative mult 1), keeps init
    x rho_d^-1/2 and the readout 1/8; folded, c = 1/8 gives lr = global lr / 8, init x1/8, wd and eps x8."""
    plain = transfer_plan(_proxy(), _blog_target(), TransferOptions(fold_multipliers=False))
    fold = transfer_plan(_proxy(), _blog_target())
    assert READOUT_LR_RULES == ("mup", "blog") and fold.options.readout_lr == "mup"
    gl = fold.global_hparams
    for plan in (plain, fold):
        lm = plan.groups["lm_head"]
        assert (lm.lr_mult, lm.wd_mult, lm.eps_mult) == (1, 1, 1)
        assert lm.init_std_mult == pytest.approx(1 / math.sqrt(8))
        assert plan.forward.readout == pytest.approx(1 / 8)
        assert lm.source.startswith(SOURCES["lm_head_mup"])
        assert plan.sources["readout_lr"] == SOURCES["lm_head_mup"]
        assert "MuReadout" in lm.source and "1/rho_d²" in lm.source
    u = plain.groups["lm_head"]
    assert u.fold is None and plain.forward_in_model.readout == pytest.approx(1 / 8)
    assert (u.lr, u.weight_decay, u.eps) == (gl.lr, gl.weight_decay, gl.eps)
    assert u.init_std == pytest.approx(1e-2 / math.sqrt(8))
    f = fold.groups["lm_head"]
    c = 1 / 8
    assert f.fold == pytest.approx(c) and fold.forward_in_model.readout == 1.0
    assert f.lr == pytest.approx(gl.lr * c)
    assert f.init_std == pytest.approx(1e-2 / math.sqrt(8) * c)
    assert f.weight_decay == pytest.approx(gl.weight_decay / c)
    assert f.eps == pytest.approx(gl.eps / c)


def test_readout_lr_blog_is_the_worked_example_lm_head():
    """ "blog": lm_head like a hidden matrix, LR x1/8 (wd x8, eps x1/8), on top of the readout 1/8; folded, the
    absolute LR is global lr / 64, i.e. the effective readout update shrinks as 1/rho_d^2."""
    plain = transfer_plan(
        _proxy(), _blog_target(), TransferOptions(fold_multipliers=False, readout_lr="blog")
    )
    fold = transfer_plan(_proxy(), _blog_target(), TransferOptions(readout_lr="blog"))
    gl = fold.global_hparams
    u, f = plain.groups["lm_head"], fold.groups["lm_head"]
    assert (u.lr_mult, u.wd_mult, u.eps_mult) == pytest.approx((1 / 8, 8, 1 / 8))
    assert u.init_std_mult == pytest.approx(1 / math.sqrt(8))
    assert plain.forward.readout == pytest.approx(1 / 8)
    assert u.source == SOURCES["lm_head"] and fold.sources["readout_lr"] == SOURCES["lm_head"]
    assert f.lr == pytest.approx(gl.lr / 64)
    assert f.weight_decay == pytest.approx(gl.weight_decay * 64)
    assert f.eps == pytest.approx(gl.eps)
    assert f.init_std == pytest.approx(1e-2 / math.sqrt(8) / 8)
    # the lr*wd product (per-step decay) is the same under both rules
    mup = transfer_plan(_proxy(), _blog_target()).groups["lm_head"]
    assert f.lr * f.weight_decay == pytest.approx(mup.lr * mup.weight_decay)


def test_readout_lr_does_not_touch_a_tied_lm_head_or_an_identity_transfer():
    for rule in READOUT_LR_RULES:
        tied = transfer_plan(_proxy(tied_embeddings=True), _blog_target(), TransferOptions(readout_lr=rule))
        lm = tied.groups["lm_head"]
        assert (lm.lr_mult, lm.init_std_mult, lm.wd_mult, lm.eps_mult) == (1, 1, 1, 1), rule
        assert lm.source == SOURCES["lm_head_tied"] and tied.sources["readout_lr"] == SOURCES["lm_head_tied"]
        assert tied.forward_in_model.readout == pytest.approx(1 / 8)
    blog_tied = transfer_plan(
        _proxy(tied_embeddings=True), _blog_target(), TransferOptions(readout_lr="blog")
    )
    mup_tied = transfer_plan(_proxy(tied_embeddings=True), _blog_target())
    assert blog_tied.groups == mup_tied.groups
    assert any("no effect" in n for n in blog_tied.notes)
    proxy = _proxy()
    same = MoETarget.dense(d=128, ffn_width=128, batch_tokens=proxy.batch_tokens, steps=proxy.steps)
    a = transfer_plan(proxy, same, TransferOptions(readout_lr="blog")).groups["lm_head"]
    b = transfer_plan(proxy, same).groups["lm_head"]
    assert (a.lr, a.init_std, a.weight_decay, a.eps) == (b.lr, b.init_std, b.weight_decay, b.eps)


class _Scale(torch.nn.Module):
    """A forward multiplier as a module, so the coordinate check records the model's output after it."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * x


class _ToyLM(torch.nn.Module):
    """Input layer (embedding rule, fixed fan-in), one hidden width x width matrix (the hidden rule), readout to a
    fixed fan-out (lm_head rule, with the readout multiplier the plan leaves in the forward)."""

    def __init__(self, width: int, plan: Plan, d_in: int, d_out: int) -> None:
        super().__init__()
        g = plan.groups
        self.inp = torch.nn.Linear(d_in, width, bias=False)
        self.hid = torch.nn.Linear(width, width, bias=False)
        self.out = torch.nn.Linear(width, d_out, bias=False)
        self.logits = _Scale(plan.forward_in_model.readout)
        with torch.no_grad():
            self.inp.weight.normal_(0.0, g["embedding"].init_std)
            self.hid.weight.normal_(0.0, g["attention"].init_std)
            self.out.weight.normal_(0.0, g["lm_head"].init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.out(F.relu(self.hid(F.relu(self.inp(x))))))

    def param_groups(self, plan: Plan) -> list[dict]:
        rows = (("embedding", self.inp), ("attention", self.hid), ("lm_head", self.out))
        return [
            {
                "params": [m.weight],
                "lr": plan.groups[g].lr,
                "weight_decay": plan.groups[g].weight_decay,
                "eps": plan.groups[g].eps,
            }
            for g, m in rows
        ]


def _readout_coord_check(rule: str, fold: bool, widths=(64, 128, 256, 512), steps: int = 6):
    """Train the toy at each width for ``steps`` AdamW steps under the plan from d* = 64 (absolute lr/wd/eps/init
    from the plan) on a linear teacher, recording the mean |output| and the hidden activations."""
    d_in, d_out, base = 16, 4, widths[0]
    proxy = DenseProxy(
        d=base, ffn_width=base, lr=0.02, weight_decay=0.0, init_std=0.05, batch_tokens=128, steps=steps
    )
    options = TransferOptions(readout_lr=rule, fold_multipliers=fold)
    plans = {
        w: transfer_plan(proxy, MoETarget.dense(d=w, ffn_width=w, batch_tokens=128, steps=steps), options)
        for w in widths
    }
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(d_in, d_out, generator=g) / math.sqrt(d_in)
    xs = [torch.randn(128, d_in, generator=g) for _ in range(steps)]
    batches = [(x, x @ teacher) for x in xs]
    return coord_check(
        {w: (lambda w=w: _ToyLM(w, plans[w], d_in, d_out)) for w in widths},
        batches,
        steps,
        {w: (lambda m, w=w: torch.optim.AdamW(m.param_groups(plans[w]))) for w in widths},
        ["hid", "logits"],
        loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
    )


def test_readout_lr_mup_keeps_the_output_scale_across_widths_and_blog_shrinks_it():
    """Coordinate check on a toy LM-like MLP across d = 64..512 (rho_d up to 8) with the plan's AdamW values: the
    hidden activations are flat under both rules; the output at the last step is flat under "mup" (spread
    < 1.5, our pass threshold) and falls with width under "blog" (its readout update is ∝ 1/rho_d²
    on top of an init term ∝ 1/rho_d): monotonically, to below 1/sqrt(8) of the d* value at rho_d = 8."""
    mup = _readout_coord_check("mup", fold=False)
    blog = _readout_coord_check("blog", fold=False)
    for data in (mup, blog):
        assert data.spread(["hid"]).worst < 1.5
    assert mup.spread(["logits"], steps=[-1]).worst < 1.5
    assert mup.values["64"]["logits"][-1] > 0.3  # trained: the output grew from its init scale (~0.1)
    ratios = blog.ratio_to("64", "logits", step=-1)
    shrink = [ratios[str(w)] for w in (64, 128, 256, 512)]
    assert all(a > b for a, b in zip(shrink, shrink[1:], strict=False)), shrink
    assert shrink[-1] < 1 / math.sqrt(8), shrink
    assert blog.spread(["logits"], steps=[-1]).worst > 2.5
    # folding (init x c, lr x c, wd and eps x 1/c, readout 1 in the forward) trains the same outputs
    folded = _readout_coord_check("mup", fold=True)
    for w in mup.keys:
        for module in ("hid", "logits"):
            assert folded.values[w][module] == pytest.approx(mup.values[w][module], rel=1e-4), (w, module)


def test_sigma0_gamma_moves_lr_in_the_documented_direction():
    """σ0 ∝ 1/sqrt(B·a/N): a sparser target is noisier, so γ > 0 lowers η by (a/N)^(γ/2); λ is untouched."""
    base = transfer_plan(_proxy(), _blog_target())
    for gamma in (0.5, 1.0):
        plan = transfer_plan(_proxy(), _blog_target(), TransferOptions(sigma0_gamma=gamma))
        expected = (8 / 128) ** (gamma / 2)
        assert plan.global_hparams.lr == pytest.approx(base.global_hparams.lr * expected)
        assert plan.global_hparams.lr < base.global_hparams.lr
        assert plan.global_hparams.weight_decay == base.global_hparams.weight_decay
        assert plan.groups["attention"].lr == pytest.approx(base.groups["attention"].lr * expected)
    # all experts active: per-expert batch equals the proxy's, so γ has no effect
    dense_moe = _blog_target(n_experts=8, n_active=8, shared_width=0)
    assert transfer_plan(
        _proxy(), dense_moe, TransferOptions(sigma0_gamma=1.0)
    ).global_hparams.lr == pytest.approx(1e-3)
    assert base.global_hparams.sigma0_factor == 1.0


def test_hybrid_dense_layers_and_groups():
    t = _blog_target(dense_ffn_width=4096, n_group=8, topk_group=4)
    plan = transfer_plan(_proxy(), t)
    assert plan.forward.A_dense == pytest.approx(0.25)
    assert plan.groups["dense_down"].init_std_mult == pytest.approx(math.sqrt(4) / math.sqrt(8))
    assert plan.groups["dense_up"].init_std_mult == pytest.approx(1 / math.sqrt(8))
    no_shared = transfer_plan(_proxy(), _blog_target(shared_width=0))
    assert not {"shared_up", "shared_down", "shared_gate"} & set(no_shared.groups)
    assert no_shared.forward.A_shared is None


# ---------------------------------------------------------------- serialization and summary


def test_json_round_trip_is_exact():
    plan = transfer_plan(
        _proxy(tied_embeddings=True, down_init_std=0.013),
        _blog_target(dense_ffn_width=3000, steps=77_777, n_group=8, topk_group=4),
        TransferOptions(sigma0_gamma=0.37, h_act_convention="gate_up"),
    )
    text = plan.to_json()
    back = Plan.from_json(text)
    assert back == plan
    assert Plan.from_dict(plan.to_dict()) == plan
    assert back.to_json() == text
    assert isinstance(back.proxy.betas, tuple) and isinstance(back.notes, tuple)
    with pytest.raises(ValueError, match="unknown keys"):
        Plan.from_dict({**json.loads(text), "extra": 1})
    for rule in READOUT_LR_RULES:
        p = transfer_plan(_proxy(), _blog_target(), TransferOptions(readout_lr=rule))
        assert p.to_dict()["options"]["readout_lr"] == rule
        assert Plan.from_json(p.to_json()) == p


def test_a_plan_dict_from_before_readout_lr_loads_by_its_stored_lm_head_rule():
    """``to_dict`` always writes ``readout_lr``; a dict without it predates the option (the blog LR rule was the
    only one). It loads as "blog", unless its stored lm_head row shows the LR was not scaled (then "mup"), so the
    options never contradict the stored groups."""

    def without(plan: Plan) -> dict:
        data = json.loads(plan.to_json())
        del data["options"]["readout_lr"]
        return data

    blog = transfer_plan(_proxy(), _blog_target(), TransferOptions(readout_lr="blog"))
    mup = transfer_plan(_proxy(), _blog_target())
    assert Plan.from_dict(without(blog)) == blog
    assert Plan.from_dict(without(mup)) == mup
    proxy = _proxy()
    identity = transfer_plan(
        proxy, MoETarget.dense(d=128, ffn_width=128, batch_tokens=proxy.batch_tokens, steps=proxy.steps)
    )
    assert Plan.from_dict(without(identity)).options.readout_lr == "blog"  # rho_d = 1: the rules agree
    assert TransferOptions().readout_lr == "mup"  # a fresh TransferOptions takes the new default


def test_summary_is_a_readable_table():
    plan = transfer_plan(_proxy(), _blog_target())
    text = plan.summary()
    lines = text.splitlines()
    assert len(lines) > len(plan.groups) + 5
    for name in plan.groups:
        assert any(line.startswith(name + " ") for line in lines), name
    assert "rho_d=8" in text and "R=8" in text and "[BLOG]" in text and "Proposed" in text


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: _blog_target(n_active=9, n_experts=8), "n_active"),
        (lambda: _blog_target(d=0), "MoETarget.d"),
        (lambda: _blog_target(expert_width=-4), "expert_width"),
        (lambda: _blog_target(shared_width=-1), "shared_width"),
        (lambda: _blog_target(dense_ffn_width=0), "dense_ffn_width"),
        (lambda: _blog_target(n_group=3, topk_group=1), "n_group"),
        (lambda: _blog_target(n_group=8), "together"),
        (lambda: _blog_target(n_group=8, topk_group=9), "topk_group"),
        (lambda: _blog_target(n_group=64, topk_group=1), "reachable"),
        (lambda: _blog_target(steps=1.5), "steps"),
        (lambda: _proxy(lr=0.0), "lr"),
        (lambda: _proxy(weight_decay=-0.1), "weight_decay"),
        (lambda: _proxy(init_std=float("nan")), "init_std"),
        (lambda: _proxy(betas=(0.9, 1.0)), "beta2"),
        (lambda: _proxy(betas=(0.9,)), "pair"),
        (lambda: _proxy(ffn_width=0), "ffn_width"),
        (lambda: TransferOptions(eps_width_rule="adam"), "eps_width_rule"),
        (lambda: TransferOptions(wd_coupling="x"), "wd_coupling"),
        (lambda: TransferOptions(h_act_convention="gate"), "h_act_convention"),
        (lambda: TransferOptions(readout_lr="sp"), "readout_lr"),
        (lambda: TransferOptions(sigma0_gamma=float("inf")), "sigma0_gamma"),
        (
            lambda: MoETarget(
                d=64, n_experts=1, n_active=1, expert_width=256, batch_tokens=1, steps=1, dense_ffn_width=128
            ),
            "dense",
        ),
        (lambda: transfer_plan(_proxy(), _proxy()), "MoETarget"),
    ],
)
def test_bad_inputs_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_plan_objects_are_frozen():
    plan = transfer_plan(_proxy(), _blog_target())
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rho_d = 2.0  # type: ignore[misc]


# ---------------------------------------------------------------- Bridge I exactness (our test)


def _swiglu(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def test_bridge_one_all_active_split_equals_the_dense_ffn():
    """A dense SwiGLU FFN of width H = N·h split into N experts (fused [N, 2h, d] / [N, d, h] like transformers v5),
    all active (a = N), zero router (uniform gates 1/a after top-k renormalization), R from the plan (= N) and the
    same A: outputs agree to fp32 tolerance, and so do the weights after one torch.optim.Adam step."""
    d, n, h, tokens = 16, 4, 8, 32
    plan = transfer_plan(
        DenseProxy(
            d=d, ffn_width=n * h, lr=1e-3, weight_decay=0.0, init_std=0.02, batch_tokens=tokens, steps=10
        ),
        MoETarget(d=d, n_experts=n, n_active=n, expert_width=h, batch_tokens=tokens, steps=10),
        TransferOptions(fold_multipliers=False),
    )
    assert plan.forward.R == n and plan.forward.A_routed == pytest.approx(plan.A_proxy)
    big_a, r_scale = plan.forward.A_routed, plan.forward.R

    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, d, generator=g)
    target = torch.randn(tokens, d, generator=g)
    w_gate = torch.nn.Parameter(torch.randn(n * h, d, generator=g) / d**0.5)
    w_up = torch.nn.Parameter(torch.randn(n * h, d, generator=g) / d**0.5)
    w_down = torch.nn.Parameter(torch.randn(d, n * h, generator=g) / (n * h) ** 0.5)

    # the split: expert i owns hidden units [i*h, (i+1)*h)
    gate_up = torch.nn.Parameter(
        torch.cat([w_gate.detach().view(n, h, d), w_up.detach().view(n, h, d)], dim=1).clone()
    )  # [N, 2h, d]
    down = torch.nn.Parameter(
        w_down.detach().view(d, n, h).permute(1, 0, 2).contiguous().clone()
    )  # [N, d, h]
    router = torch.zeros(n, d)  # zero router: uniform scores

    def moe(x):
        probs = torch.softmax(x @ router.T, dim=-1)
        top_w, top_i = probs.topk(n, dim=-1)
        top_w = top_w / top_w.sum(-1, keepdim=True)  # normalized over the active set
        out = torch.zeros_like(x)
        for slot in range(n):
            idx = top_i[:, slot]
            gu = torch.einsum("td,thd->th", x, gate_up[idx])
            act = F.silu(gu[:, :h]) * gu[:, h:]
            out = out + top_w[:, slot : slot + 1] * torch.einsum("th,tdh->td", act, down[idx])
        return big_a * r_scale * out

    def dense(x):
        return big_a * _swiglu(x, w_gate, w_up, w_down)

    y_dense, y_moe = dense(x), moe(x)
    torch.testing.assert_close(y_moe, y_dense, rtol=1e-5, atol=1e-6)
    assert y_dense.abs().mean() > 1e-2  # not a trivially zero output

    before = down.detach().clone()
    opt_dense = torch.optim.Adam([w_gate, w_up, w_down], lr=1e-2)
    opt_moe = torch.optim.Adam([gate_up, down], lr=1e-2)
    ((dense(x) - target) ** 2).mean().backward()
    ((moe(x) - target) ** 2).mean().backward()
    opt_dense.step()
    opt_moe.step()
    assert (down.detach() - before).abs().max() > 5e-3  # the step moved the weights (by about lr)
    new_gate_up = torch.cat([w_gate.detach().view(n, h, d), w_up.detach().view(n, h, d)], dim=1)
    new_down = w_down.detach().view(d, n, h).permute(1, 0, 2)
    torch.testing.assert_close(gate_up.detach(), new_gate_up, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(down.detach(), new_down, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(moe(x), dense(x), rtol=1e-5, atol=1e-6)


def test_bridge_one_fails_without_the_route_scale():
    """The same split with R = 1 (normalized gates average the experts) is off by exactly 1/N: R is needed."""
    d, n, h = 8, 4, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, d, generator=g)
    w_gate, w_up = torch.randn(n * h, d, generator=g), torch.randn(n * h, d, generator=g)
    w_down = torch.randn(d, n * h, generator=g)
    routed_avg = sum(
        (1 / n)
        * _swiglu(x, w_gate[i * h : (i + 1) * h], w_up[i * h : (i + 1) * h], w_down[:, i * h : (i + 1) * h])
        for i in range(n)
    )
    full = _swiglu(x, w_gate, w_up, w_down)
    assert not torch.allclose(routed_avg, full, rtol=1e-3)
    torch.testing.assert_close(n * routed_avg, full, rtol=1e-5, atol=1e-5)
