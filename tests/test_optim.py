"""Muon + AdamW: which parameter goes where, at which lr, with which momentum; its state survives a reload."""

from __future__ import annotations

import pytest
import torch

from chinchilla_pipeline.model.config import ModelConfig
from chinchilla_pipeline.train.config import MuonConfig, OptimizerConfig
from chinchilla_pipeline.train.optim import MuonAdamW, muon_momentum, set_schedule
from chinchilla_pipeline.train.setup import build_training

CPU = torch.device("cpu")
MUON = OptimizerConfig(kind="muon", muon={"momentum_warmup_steps": 10})


def _model(**fields) -> ModelConfig:
    return ModelConfig(name="t", n_layer=2, n_head=2, n_embd=64, block_size=16, vocab_size=100, **fields)


def _groups(opt) -> dict[str, dict]:
    return {g["name"]: g for g in opt.param_groups}


def test_muon_takes_the_block_matrices_and_adamw_the_rest_at_width_scaled_lrs():
    torch.manual_seed(0)
    built = build_training(_model(), MUON, CPU, compile_="off")
    opt, raw = built.optimizer, built.raw
    assert isinstance(opt, MuonAdamW)
    groups = _groups(opt)
    names = {id(p): n for n, p in raw.named_parameters()}
    muon = {names[id(p)] for p in groups["matrices"]["params"]}
    assert muon == {n for n, p in raw.named_parameters() if n.startswith("h.") and p.dim() == 2}
    assert {names[id(p)] for p in groups["embedding"]["params"]} == {"wte.weight"}  # the head is tied to it here
    every = [p for g in opt.param_groups for p in g["params"]]
    assert len(every) == len({id(p) for p in every}) == len(list(raw.parameters()))  # each parameter once
    scale = (64 / 768) ** -0.5
    assert groups["embedding"]["lr"] == pytest.approx(0.3 * scale)
    assert groups["matrices"]["lr"] == 0.02 and groups["other"]["lr"] == MUON.lr


def test_the_schedule_scales_every_group_and_warms_muon_momentum_up():
    torch.manual_seed(0)
    opt = build_training(_model(), MUON, CPU, compile_="off").optimizer
    set_schedule(opt, 0.5, 5, MUON)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.5 * g["base_lr"])
    assert _groups(opt)["matrices"]["momentum"] == pytest.approx(0.90)  # halfway from 0.85 to 0.95
    assert muon_momentum(0, MUON.muon) == 0.85 and muon_momentum(10, MUON.muon) == muon_momentum(99, MUON.muon) == 0.95
    assert muon_momentum(0, MuonConfig(momentum_warmup_steps=0)) == 0.95


def _steps(built, batches, start: int = 0) -> list[float]:
    losses = []
    for step, x in enumerate(batches, start=start):
        set_schedule(built.optimizer, 1.0, step, MUON)
        loss = built.model(x[:, :-1], x[:, 1:])
        loss.backward()
        built.optimizer.step()
        built.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_a_reloaded_muon_adamw_state_continues_bitwise():
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 100, (4, 17), generator=gen) for _ in range(6)]
    torch.manual_seed(0)
    unbroken = build_training(_model(), MUON, CPU, compile_="off")
    expected = _steps(unbroken, batches)

    torch.manual_seed(0)
    first = build_training(_model(), MUON, CPU, compile_="off")
    _steps(first, batches[:3])
    model_state, opt_state = first.raw.state_dict(), first.optimizer.state_dict()
    assert set(opt_state) == {"muon", "adamw"} and opt_state["muon"]["state"]  # momentum buffers saved
    torch.manual_seed(123)  # other initial weights: everything must come from the saved state
    second = build_training(_model(), MUON, CPU, compile_="off")
    second.raw.load_state_dict(model_state)
    second.optimizer.load_state_dict(opt_state)
    assert _steps(second, batches[3:], start=3) == expected[3:]
    for k, v in unbroken.raw.state_dict().items():
        assert torch.equal(v, second.raw.state_dict()[k]), k


def test_an_adamw_state_is_refused_by_muon_adamw():
    torch.manual_seed(0)
    adamw = build_training(_model(), OptimizerConfig(), CPU, compile_="off").optimizer
    muon = build_training(_model(), MUON, CPU, compile_="off").optimizer
    with pytest.raises(ValueError, match="not a Muon"):
        muon.load_state_dict(adamw.state_dict())


def test_muon_settings_need_kind_muon():
    with pytest.raises(ValueError, match='need "kind": "muon"'):
        OptimizerConfig(muon={})
    assert OptimizerConfig(kind="muon").muon == MuonConfig()
