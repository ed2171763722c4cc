"""Curriculum configs, the derived plan (steps from tokens) and the learning-rate schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.train.config import CurriculumConfig, load_curriculum
from chinchilla_pipeline.train.layout import make_layout
from chinchilla_pipeline.train.pretrain import lr_factor
from chinchilla_pipeline.train.schedule import make_schedule

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "config/curriculum").glob("*.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_curricula_load_and_plan(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # model paths are relative to the working directory
    cfg, model = load_curriculum(path)
    plan = make_schedule(cfg, model)
    layout = make_layout(plan, cfg.batch, 8)
    assert plan.num_tokens == round(cfg.tokens_per_param * model.num_params())
    assert layout.grad_accum * layout.micro_batch_size * plan.context * 8 == plan.tokens_per_step
    for phase, (a, b) in zip(cfg.phases, plan.phase_steps):  # each phase within half a step of its share
        assert abs((b - a) * plan.tokens_per_step - phase.share * plan.num_tokens) <= plan.tokens_per_step


def test_default_curriculum_is_the_seeds(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg, model = load_curriculum(ROOT / "config/curriculum/chinchilla_124m.json")
    assert [p.name for p in cfg.phases] == ["a", "b"] and cfg.total_tokens is None
    assert {s.name: s.weight for s in cfg.phases[0].sources} == {"wikipedia": 2, "books": 1}
    assert {s.name: s.weight for s in cfg.phases[1].sources} == {"c4": 2, "forums": 1}
    plan = make_schedule(cfg, model)
    assert make_layout(plan, cfg.batch, 1).grad_accum == make_layout(plan, cfg.batch, 8).grad_accum * 8


def test_batch_that_does_not_divide_names_the_field(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg, model = load_curriculum(ROOT / "config/curriculum/chinchilla_124m.json")
    with pytest.raises(UserError, match="batch.global_batch_tokens"):
        make_layout(make_schedule(cfg, model), cfg.batch, 3)


def _base(**over):
    cfg = {
        "name": "x",
        "model": "m.json",
        "total_tokens": "1M",
        "phases": [
            {"name": "a", "share": 0.5, "sources": [{"name": "w", "path": "d/w"}]},
            {"name": "b", "share": 0.5, "sources": [{"name": "c", "path": "d/c"}]},
        ],
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize(
    "change, field",
    [
        ({"phases": [{"name": "a", "share": 0.7, "sources": [{"name": "w", "path": "d/w"}]}]}, "phases"),
        ({"phases": [{"name": "a", "share": 0.5, "sources": [{"name": "w", "path": "d/w"}]}] * 2}, "phases"),
        ({"phases": [{"name": "a", "share": 1, "sources": [{"name": "w", "path": "d/w", "weight": 0}]}]}, "weight"),
        ({"schedule": {"kind": "linear"}}, "schedule.kind"),
        ({"batch": {"micro_batch": 4}}, "batch.micro_batch"),
    ],
)
def test_bad_curricula_name_file_and_field(tmp_path, change, field):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_base(**change)))
    with pytest.raises(UserError) as err:
        load_config(CurriculumConfig, path)
    assert str(path) in str(err.value) and field in str(err.value)


def _plan(kind, total_steps=1000, **sched):
    from chinchilla_pipeline.model.config import ModelConfig

    cfg = CurriculumConfig.model_validate(
        _base(
            total_tokens=total_steps * 256,
            schedule={"kind": kind, **sched},
            batch={"global_batch_tokens": 256, "micro_batch_size": 8},
        )
    )
    return cfg, make_schedule(cfg, ModelConfig(name="m", block_size=32, n_layer=1, n_head=1, n_embd=8))


def test_cosine_warms_up_then_decays_to_the_floor():
    cfg, plan = _plan("cosine", warmup_share=0.05)
    lrs = [cfg.optimizer.peak_lr * lr_factor(plan, s) for s in range(plan.num_steps)]
    peak, floor = cfg.optimizer.lr, cfg.optimizer.lr * cfg.optimizer.min_lr_ratio
    assert lrs[0] == pytest.approx(peak / 50) and lrs[49] == pytest.approx(peak)
    assert all(a >= b for a, b in zip(lrs[49:], lrs[50:]))  # monotone after warmup
    assert lrs[-1] == pytest.approx(floor)
    assert lrs[plan.phase_steps[1][0]] < peak  # phase b continues the decay, no restart


def test_wsd_holds_then_decays_from_the_configured_step():
    cfg, plan = _plan("wsd", warmup_share=0.01, decay_start_share=0.8)
    lrs = [cfg.optimizer.peak_lr * lr_factor(plan, s) for s in range(plan.num_steps)]
    peak = cfg.optimizer.lr
    assert plan.decay_start_step == 800
    assert set(lrs[10:800]) == {peak} and lrs[801] < peak
    assert lrs[-1] == pytest.approx(peak * cfg.optimizer.min_lr_ratio)
    assert all(a > b for a, b in zip(lrs[800:], lrs[801:]))
