"""compare-recipes: lrs tuned on a seed of their own, the same tokens for every recipe, bpb tables over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chinchilla_pipeline.instruments.experiments.recipes import (
    CompareConfig,
    run_compare,
    scaled_optimizer,
    tokens_to_reach,
)
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.train.config import CurriculumConfig, OptimizerConfig
from trainkit import MODERN_FIELDS, SEED_ORDER, write_curriculum

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_tunes_on_a_seed_it_does_not_report():
    cfg = load_config(CompareConfig, ROOT / "config/demo/recipes.json")
    load_config(CurriculumConfig, ROOT / cfg.base)
    assert [r.architecture for r in cfg.recipes] == ["gpt2", "nanochat"] and len(cfg.seeds) == 3
    assert cfg.tuning_seed not in cfg.seeds
    assert [r.optimizer.kind for r in cfg.recipes] == ["adamw", "muon"]


def test_a_tuning_seed_among_the_seeds_is_refused():
    recipe = {"name": "a", "architecture": "gpt2", "optimizer": {}, "schedule": {}, "lr_multipliers": [1]}
    with pytest.raises(ValueError, match="tuning_seed 1 must not be one of the seeds"):
        CompareConfig(base="b.json", tuning_seed=1, seeds=[1, 2], recipes=[recipe, {**recipe, "name": "b"}])


def test_a_multiplier_scales_every_peak_lr():
    muon = scaled_optimizer(OptimizerConfig(kind="muon"), 2.0)
    assert muon["lr"] == 2 * 6e-4 and muon["muon"]["matrix_lr"] == 0.04
    assert muon["muon"]["embedding_lr"] == 0.6 and muon["muon"]["head_lr"] == 0.016
    assert muon["muon"]["momentum"] == 0.95  # not a learning rate
    assert scaled_optimizer(OptimizerConfig(), 0.5) == {**OptimizerConfig().model_dump(exclude_none=True), "lr": 3e-4}


def test_tokens_to_reach_interpolates_between_evaluations():
    curve = [(0, 5.0), (10, 3.0), (20, 2.0)]
    assert tokens_to_reach(curve, 2.5, 100) == pytest.approx(1500)  # halfway between steps 10 and 20
    assert tokens_to_reach(curve, 3.0, 100) == 1000
    assert tokens_to_reach(curve, 1.0, 100) is None


def test_compare_runs_every_recipe_and_seed_and_writes_the_table(tmp_path):
    base = write_curriculum(tmp_path, SEED_ORDER, steps=8)
    modern = {**MODERN_FIELDS["optimizer"]}
    cfg = {
        "base": str(base),
        "width": 16,
        "block_size": 32,
        "tokens_per_param": 0.05,
        "eval_interval_steps": 2,
        "tuning_seed": 0,
        "seeds": [1, 2],
        "recipes": [
            {
                "name": "gpt2",
                "architecture": "gpt2",
                "optimizer": {"lr": 3e-3},
                "schedule": {"kind": "cosine", "warmup_share": 0.1},
                "lr_multipliers": [1, 2],
            },
            {
                "name": "modern",
                "architecture": "nanochat",
                "optimizer": modern,
                "schedule": MODERN_FIELDS["schedule"],
                "lr_multipliers": [1],
            },
        ],
    }
    path = tmp_path / "recipes.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    result = run_compare(path, out, device="cpu")
    runs = sorted(p.name for p in out.iterdir() if (p / "metrics.jsonl").is_file())
    tuned = result["tuned"]["gpt2"]
    assert tuned == min([1, 2], key=lambda m: result["tuning"]["gpt2"][f"{m:g}"])
    assert set(runs) == {
        "gpt2_lr1_seed0",
        "gpt2_lr2_seed0",
        *(f"gpt2_lr{tuned:g}_seed{s}" for s in (1, 2)),
        *(f"modern_lr1_seed{s}" for s in (0, 1, 2)),
    }
    # both recipes trained the same tokens; every domain has a bpb mean over the 2 seeds
    assert len({json.loads((out / "configs" / f"{r}.json").read_text())["total_tokens"] for r in runs}) == 1
    for name in ("gpt2", "modern"):
        row = result["summary"][name]
        assert set(row["bpb"]) == {"wiki", "books", "c4", "forums"} and row["bpb_mean"]["n"] == 2
    table = (out / "results.md").read_text()
    assert "mean bpb" in table and "Tuning on seed 0" in table and (out / "recipes.png").stat().st_size > 0
    assert result["tokens_to_reach"]["better"] in ("gpt2", "modern")
