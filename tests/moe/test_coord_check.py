"""Coordinate check on small torch MLPs: a µP width scaling (Adam) keeps activations flat across widths, standard
parameterization and a readout without its 1/fan_in LR fan out; tuple outputs, grouping, JSON round trip, plot,
hooks removed (also after an error), and bad arguments refused by name."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hf_fundamentals.moe import CoordData, coord_check, default_module_group

D_IN, D_OUT, BASE, LR = 16, 4, 64, 0.01
WIDTHS = [64, 128, 256, 512, 1024]


class MLP(nn.Module):
    """Input layer (fixed fan-in), one hidden width x width layer, readout (fixed fan-out)."""

    def __init__(self, width: int, readout_std: float) -> None:
        super().__init__()
        self.inp = nn.Linear(D_IN, width, bias=False)
        self.act1 = nn.ReLU()
        self.hid = nn.Linear(width, width, bias=False)
        self.act2 = nn.ReLU()
        self.out = nn.Linear(width, D_OUT, bias=False)
        with torch.no_grad():
            self.inp.weight.normal_(0.0, 1.0 / math.sqrt(D_IN))
            self.hid.weight.normal_(0.0, 1.0 / math.sqrt(width))
            self.out.weight.normal_(0.0, readout_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act2(self.hid(self.act1(self.inp(x)))))


def _batches(n=8):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(128, D_IN, generator=g), torch.randn(128, D_OUT, generator=g)) for _ in range(n)]


def _mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def _family(kind: str):
    """Factories and optimizers per width. mup: Adam µP (TP-V table 3) with a zero readout (as mup's coord
    check does); sp: PyTorch-style init and one global LR; bad_readout: µP except the readout keeps the base LR."""
    factories, optimizers = {}, {}
    for w in WIDTHS:
        r = w / BASE
        if kind == "sp":
            factories[w] = lambda w=w: MLP(w, 1.0 / math.sqrt(w))
            optimizers[w] = lambda m: torch.optim.Adam(m.parameters(), lr=LR)
            continue
        factories[w] = lambda w=w: MLP(w, 0.0)
        readout_lr = LR / r if kind == "mup" else LR
        optimizers[w] = lambda m, r=r, readout_lr=readout_lr: torch.optim.Adam(
            [
                {"params": [m.inp.weight], "lr": LR},
                {"params": [m.hid.weight], "lr": LR / r},
                {"params": [m.out.weight], "lr": readout_lr},
            ]
        )
    return factories, optimizers


def _check(kind: str, steps: int = 6) -> CoordData:
    factories, optimizers = _family(kind)
    return coord_check(factories, _batches(), steps, optimizers, ["act1", "act2", "out"], loss_fn=_mse)


def test_mup_width_scaling_is_flat():
    data = _check("mup")
    assert data.keys == [str(w) for w in WIDTHS] and data.modules == ["act1", "act2", "out"]
    assert data.steps == 6 and all(len(v) == 6 for v in data.losses.values())
    assert data.spread(["act1", "act2"]).worst < 1.5  # hidden coordinates, every step
    # the readout starts at exactly 0 (a zero coordinate is reported as inf, not hidden); after that it is set by
    # the updates and stays within 2x (the narrowest model's finite-width noise)
    assert math.isinf(data.spread().per_module["out"][0])
    assert data.spread(["out"], steps=range(1, 6)).worst < 2.0


def test_standard_parameterization_fans_out_with_width():
    mup = _check("mup").spread(steps=range(1, 6))
    sp = _check("sp").spread(steps=range(1, 6))
    assert sp.worst > 5.0 * mup.worst, (sp.worst, mup.worst)
    assert max(sp.per_module["act2"][1:]) > 2.0  # hidden activations blow up with width under SP + Adam


def test_readout_without_its_width_factor_fans_out():
    bad = _check("bad_readout").spread(steps=range(1, 6))
    assert bad.worst_module == "out" and bad.worst > 3.0, bad
    assert bad.worst > 5.0 * _check("mup").spread(["out"], steps=range(1, 6)).worst


def test_spread_values_and_worst_location():
    data = CoordData(
        keys=["a", "b", "c"],
        modules=["m", "n"],
        steps=2,
        values={"a": {"m": [1.0, 2.0], "n": [1.0, 1.0]}, "b": {"m": [2.0, 2.0]}, "c": {"m": [4.0, 1.0]}},
        losses={"a": [0.0, 0.0], "b": [0.0, 0.0], "c": [0.0, 0.0]},
    )
    s = data.spread()
    assert s.per_module == {"m": [4.0, 2.0], "n": [1.0, 1.0]}  # n: one model only -> 1
    assert (s.worst, s.worst_module, s.worst_step) == (4.0, "m", 0)
    assert data.spread(steps=[-1]).worst == 2.0
    assert data.ratio_to("a", "m", step=0) == {"a": 1.0, "b": 2.0, "c": 4.0}
    with pytest.raises(ValueError, match="unknown modules"):
        data.spread(["zz"])


class _TupleBlock(nn.Module):
    """Returns (output, aux) like attention and routers do; output is 3x its input."""

    def forward(self, x):
        return 3.0 * x, torch.zeros(1)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.blocks = nn.ModuleList([_TupleBlock(), _TupleBlock()])

    def forward(self, x):
        for lin, blk in zip(self.layers, self.blocks, strict=True):
            x, _ = blk(lin(x))
        return SimpleNamespace(loss=x.pow(2).mean())


def test_tuple_outputs_regex_grouping_and_default_loss():
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    data = coord_check(
        {"one": _Net, 2.5: _Net},
        lambda t: {"x": x},
        steps=2,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
        modules=r"^(layers|blocks)\.\d+$",
    )
    assert data.keys == ["one", "2.5"]
    assert set(data.modules) == {"layers.0", "layers.1", "blocks.0", "blocks.1"}
    v = data.values["one"]
    assert v["blocks.0"][0] == pytest.approx(3.0 * v["layers.0"][0])  # the tuple's first tensor, not aux
    assert data.spread().worst == pytest.approx(1.0)  # same seed, lr 0: identical models
    g = data.grouped()
    assert (
        g.modules == ["layers.*", "blocks.*"] and default_module_group("m.layers.12.mlp") == "m.layers.*.mlp"
    )
    assert g.values["one"]["layers.*"][0] == pytest.approx((v["layers.0"][0] + v["layers.1"][0]) / 2)


def test_json_round_trip_and_plot(tmp_path):
    data = _check("mup", steps=3)
    data.meta["key_name"] = "width"
    text = json.dumps(data.to_dict())  # strict JSON: the inf at step 0 is a string
    back = CoordData.from_dict(json.loads(text))
    assert back.keys == data.keys and back.modules == data.modules and back.meta == data.meta
    assert back.values == data.values  # inf survives as float("inf")
    assert math.isinf(back.spread().per_module["out"][0])
    path = data.plot(tmp_path / "coord.png", title="mup MLP")
    assert path.exists() and path.stat().st_size > 5000
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_hooks_removed_after_success_and_after_an_error():
    built = []

    def factory():
        built.append(MLP(8, 0.1))
        return built[-1]

    coord_check({8: factory}, _batches(), 2, lambda m: torch.optim.Adam(m.parameters()), r"act", loss_fn=_mse)
    assert all(not m._forward_hooks for m in built[0].modules())

    def boom(model, batch):
        model(batch[0])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        coord_check(
            {8: factory}, _batches(), 2, lambda m: torch.optim.Adam(m.parameters()), r"act", loss_fn=boom
        )
    assert all(not m._forward_hooks for m in built[1].modules())


def test_bad_arguments_are_refused_by_name():
    opt = lambda m: torch.optim.Adam(m.parameters())  # noqa: E731
    fac = {8: lambda: MLP(8, 0.1)}
    with pytest.raises(ValueError, match="matches no module"):
        coord_check(fac, _batches(), 1, opt, r"attention", loss_fn=_mse)
    with pytest.raises(ValueError, match=r"has no modules \['nope'\]"):
        coord_check(fac, _batches(), 1, opt, ["act1", "nope"], loss_fn=_mse)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        coord_check(fac, _batches(), 0, opt, loss_fn=_mse)
    with pytest.raises(ValueError, match=r"no entry for keys \[8\]"):
        coord_check(fac, _batches(), 1, {9: opt}, loss_fn=_mse)
    with pytest.raises(ValueError, match="non-empty sequence"):
        coord_check(fac, [], 1, opt, loss_fn=_mse)
    with pytest.raises(ValueError, match="collide"):
        coord_check({1: fac[8], "1": fac[8]}, _batches(), 1, opt, loss_fn=_mse)


# ------------------------------------------------------------------ the pass/fail statement (seeds, fixed data)
def _mlp_family(widths, mis_scaled):
    """Toy MLPs 8 -> w -> w -> 1 under Adam: µP-style (hidden/output lr ∝ 1/w, output zero-init) or the
    common mis-scaling (one global lr for every layer)."""
    from hf_fundamentals.moe import coord_check

    def factory(w):
        def make():
            net = nn.Sequential(nn.Linear(8, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 1))
            nn.init.zeros_(net[4].weight)
            nn.init.zeros_(net[4].bias)
            return net

        return make

    def opt_for(w):
        def make(net):
            scale = 1.0 if mis_scaled else 64.0 / w
            return torch.optim.Adam(
                [
                    {"params": net[0].parameters(), "lr": 1e-2},
                    {"params": net[2].parameters(), "lr": 1e-2 * scale},
                    {"params": net[4].parameters(), "lr": 1e-2 * scale},
                ]
            )

        return make

    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 8, generator=gen), torch.randn(32, 1, generator=gen))
    return coord_check(
        {w: factory(w) for w in widths},
        [batch, (batch[0] * 3, batch[1])],  # the second batch is never seen with fix_data
        5,
        {w: opt_for(w) for w in widths},
        ["0", "2", "4"],
        loss_fn=lambda net, b: ((net(b[0]) - b[1]) ** 2).mean(),
        seeds=[0, 1, 2],
        fix_data=True,
    )


def test_coord_statement_fails_a_global_adam_lr_and_passes_the_width_scaled_one():
    from hf_fundamentals.moe import SLOPE_TOLERANCE, coord_verdict

    widths = (64, 128, 256, 512)
    keys = {str(w): w for w in widths}
    good = coord_verdict(_mlp_family(widths, mis_scaled=False), keys, group=None, name="µP-style")
    bad = coord_verdict(_mlp_family(widths, mis_scaled=True), keys, group=None, name="global lr")
    assert good.passed and abs(good.worst_slope) <= SLOPE_TOLERANCE, good.statement
    assert not bad.passed and bad.worst_slope > 0.5 and bad.worst_module in ("2", "4"), bad.statement
    assert good.statement.startswith("µP-style: PASS") and bad.statement.startswith("global lr: FAIL")
    assert set(bad.seed_slopes_at_worst) == {"0", "1", "2"}


def test_seeds_average_and_fix_data_repeats_batch_zero():
    from hf_fundamentals.moe import CoordData

    cd = _mlp_family((64, 128), mis_scaled=False)
    assert cd.meta["seeds"] == [0, 1, 2] and cd.meta["fix_data"] is True
    per = [cd.per_seed[s]["64"]["2"][1] for s in ("0", "1", "2")]
    assert cd.values["64"]["2"][1] == pytest.approx(np.mean(per))
    assert len(set(per)) == 3  # the seeds differ
    back = CoordData.from_dict(json.loads(json.dumps(cd.to_dict())))
    assert back.per_seed == cd.per_seed


def test_coord_verdict_refuses_too_few_keys():
    from hf_fundamentals.moe import coord_verdict

    cd = _mlp_family((64, 128), mis_scaled=False)
    with pytest.raises(ValueError, match="at least two"):
        coord_verdict(cd, {"64": 64})
