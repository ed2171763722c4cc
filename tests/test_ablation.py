"""Curriculum ablation: generated variants differ only in phase structure; results aggregate over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.instruments.experiments.ablation import (
    AblationConfig,
    VariantConfig,
    aggregate,
    format_table,
    run_ablation,
    run_configs,
    variant_phases,
)
from chinchilla_pipeline.instruments.experiments.runs import overall_proportions, summarize
from chinchilla_pipeline.model.config import ModelConfig
from chinchilla_pipeline.schema import load_config, read_json
from chinchilla_pipeline.train.config import CurriculumConfig
from chinchilla_pipeline.train.schedule import make_schedule
from trainkit import SEED_ORDER, write_curriculum

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    {"name": "hq_first", "order": "as_base"},
    {"name": "hq_last", "order": "reversed"},
    {"name": "mixed", "order": "mixed"},
]


def _ablation(tmp_path, **fields):
    base = write_curriculum(tmp_path, SEED_ORDER, steps=16)
    cfg = {
        "base": str(base),
        "width": 16,
        "block_size": 32,
        "tokens_per_param": 0.4,
        "seeds": [1, 2],
        "variants": VARIANTS,
        **fields,
    }
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(cfg))
    return path


def test_shipped_config_is_valid_and_its_base_loads():
    cfg = load_config(AblationConfig, ROOT / "config/demo/ablation.json")
    base = load_config(CurriculumConfig, ROOT / cfg.base)
    assert [v.name for v in cfg.variants] == ["hq_first", "hq_first_blend", "mixed", "hq_last", "hq_first_anneal"]
    assert len(cfg.seeds) >= 3 and len(base.phases) == 2
    assert base.optimizer.kind == "muon" and cfg.architecture == "nanochat"  # the default recipe


def test_variants_share_tokens_schedule_and_overall_proportions(tmp_path):
    path = _ablation(tmp_path)
    cfg = load_config(AblationConfig, path)
    base = read_json(cfg.base)
    runs = run_configs(cfg, base, "m.json", 10_000, [1, 2])
    assert [(v, s) for v, s, _ in runs] == [(v["name"], s) for s in (1, 2) for v in VARIANTS]
    datas = [d for _, _, d in runs]
    for key in ("batch", "optimizer", "schedule", "eval", "total_tokens"):
        assert all(d[key] == datas[0][key] for d in datas), key
    assert datas[0]["total_tokens"] == 4_000  # 0.4 tokens/param x 10,000 parameters
    assert {d["seed"] for d in datas} == {1, 2} and len({d["name"] for d in datas}) == 6
    want = overall_proportions(base["phases"])
    assert want == pytest.approx({"wiki": 1 / 3, "books": 1 / 6, "c4": 1 / 3, "forums": 1 / 6})
    by_name = {d["name"]: d for d in datas}
    first, last, mixed = (by_name[f"{v}_seed1"]["phases"] for v in ("hq_first", "hq_last", "mixed"))
    assert [p["name"] for p in first] == ["a", "b"] and [p["name"] for p in last] == ["b", "a"]
    assert len(mixed) == 1 and {s["name"]: s["weight"] for s in mixed[0]["sources"]} == pytest.approx(want)
    for phases in (first, last, mixed):
        assert overall_proportions(phases) == pytest.approx(want)
        CurriculumConfig.model_validate({**by_name["hq_first_seed1"], "phases": phases})
    # Each source gets the same tokens in every variant, within the trainer's step rounding.
    model = ModelConfig(name="m", n_layer=1, n_head=1, n_embd=16, block_size=32, vocab_size=256)
    for d in datas:
        plan = make_schedule(CurriculumConfig.model_validate(d), model)
        assert plan.num_steps == 4_000 // 256 + (4_000 % 256 >= 128)


def test_schedule_override_reaches_every_variant(tmp_path):
    cfg = load_config(AblationConfig, _ablation(tmp_path, schedule={"kind": "wsd", "decay_start_share": 0.8}))
    runs = run_configs(cfg, read_json(cfg.base), "m.json", 10_000, [1])
    assert {d["schedule"]["kind"] for _, _, d in runs} == {"wsd"}
    assert {d["schedule"]["decay_start_share"] for _, _, d in runs} == {0.8}


def test_mixed_merges_a_source_present_in_two_phases():
    phases = [
        {"name": "a", "share": 0.25, "sources": [{"name": "x", "path": "px", "weight": 1}]},
        {
            "name": "b",
            "share": 0.75,
            "sources": [{"name": "x", "path": "px", "weight": 1}, {"name": "y", "path": "py", "weight": 2}],
        },
    ]
    (mixed,) = variant_phases(phases, VariantConfig(name="m", order="mixed"))
    assert {s["name"]: s["weight"] for s in mixed["sources"]} == pytest.approx({"x": 0.5, "y": 0.5})


def test_aggregate_mean_spread_and_paired_difference():
    finals = {
        "first": {1: {"a": 3.0, "b": 5.0}, 2: {"a": 4.0, "b": 6.0}},
        "other": {1: {"a": 2.0, "b": 5.0}, 2: {"a": 4.0, "b": 5.0}},
    }
    s = aggregate(finals)
    assert (
        s["first"]["domains"]["a"]
        == summarize([3.0, 4.0])
        == {"mean": 3.5, "std": pytest.approx(0.7071068), "min": 3.0, "max": 4.0, "n": 2}
    )
    assert s["first"]["average"]["mean"] == 4.5 and s["other"]["average"]["mean"] == 4.0
    assert s["other"]["average_minus_first"]["mean"] == pytest.approx(-0.5)  # seed 1: -0.5, seed 2: -0.5
    assert s["other"]["average_minus_first"]["std"] == pytest.approx(0.0)
    table = format_table(s, "first")
    assert "| other | 2 | 3.0000 ± 1.4142 (2.0000–4.0000)" in table and "-0.5000 ± 0.0000" in table
    assert table.splitlines()[2].endswith("| reference |")


def test_blend_and_anneal_variants_keep_every_source_s_tokens(tmp_path):
    path = _ablation(
        tmp_path,
        schedule={"kind": "wsd", "decay_start_share": 0.5},
        variants=[
            *VARIANTS,
            {"name": "blend", "order": "as_base", "blend_in": "25%"},
            {"name": "anneal", "order": "as_base", "anneal_share": 0.2, "blend_in": 512},
        ],
    )
    cfg = load_config(AblationConfig, path)
    base = read_json(cfg.base)
    by_name = {v: d for v, _, d in run_configs(cfg, base, "m.json", 40_000, [1])}
    blend, anneal = by_name["blend"]["phases"], by_name["anneal"]["phases"]
    assert [p.get("blend_in") for p in blend] == [None, "25%"]
    assert [(p["name"], p["share"]) for p in anneal] == [("a", pytest.approx(0.3)), ("b", 0.5), ("anneal", 0.2)]
    assert anneal[2]["sources"] == base["phases"][0]["sources"] and anneal[2]["blend_in"] == 512
    assert (
        by_name["anneal"]["schedule"]["decay_phase"] == "anneal"
        and by_name["blend"]["schedule"].get("decay_phase") is None
    )
    want = overall_proportions(base["phases"])
    model = ModelConfig(name="m", n_layer=1, n_head=1, n_embd=16, block_size=32, vocab_size=256)
    for variant in ("blend", "anneal"):
        assert overall_proportions(by_name[variant]["phases"]) == pytest.approx(want)
        plan = make_schedule(CurriculumConfig.model_validate(by_name[variant]), model)
        if variant == "anneal":
            assert plan.decay_start_step == plan.phase_steps[2][0]
    cosine = _ablation(tmp_path, variants=[*VARIANTS, {"name": "anneal", "order": "as_base", "anneal_share": 0.2}])
    with pytest.raises(UserError, match="WSD"):
        run_configs(load_config(AblationConfig, cosine), base, "m.json", 40_000, [1])
    with pytest.raises(UserError, match="as_base"):
        load_config(
            AblationConfig,
            _ablation(tmp_path, variants=[*VARIANTS, {"name": "x", "order": "reversed", "anneal_share": 0.1}]),
        )


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(UserError, match="variants"):
        load_config(AblationConfig, _ablation(tmp_path, variants=VARIANTS[:1]))
    with pytest.raises(UserError, match="order"):
        load_config(AblationConfig, _ablation(tmp_path, variants=[*VARIANTS[:2], {"name": "x", "order": "random"}]))


def test_ablation_end_to_end_then_rerun_skips(tmp_path, capsys):
    path = _ablation(tmp_path)
    out = tmp_path / "abl"
    result = run_ablation(path, out, device="cpu")
    assert set(result["summary"]) == {"hq_first", "hq_last", "mixed"}
    assert result["tokens_to_reach_first"]["hq_first"]["not_reached"] == 0  # it reaches its own final value
    assert all(r["average"]["n"] == 2 for r in result["summary"].values())
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    assert md.count("| variant | seeds | wiki | books | c4 | forums | average |") == 2 and "bits per byte" in md
    assert "Tokens to reach `hq_first`'s final mean bpb" in md
    assert set(result["summary_bpb"]) == set(result["summary"])
    final = result["final_validation"]["hq_first"]["1"]  # trainkit's byte vocabulary: 1 byte per target token
    assert result["final_validation_bpb"]["hq_first"]["1"] == pytest.approx(
        {d: v / math.log(2) for d, v in final.items()}, rel=0.05
    )
    assert len(result["seconds_this_invocation"]) == 6
    exposure = result["source_exposure"]  # wiki: 1/3 of the tokens, over its 40 x 200-token documents
    assert exposure["wiki"]["tokens"] == pytest.approx(result["total_tokens"] / 3)
    assert exposure["wiki"]["epochs"] == pytest.approx(result["total_tokens"] / 3 / 8_000)
    capsys.readouterr()
    again = run_ablation(path, out, device="cpu")
    assert capsys.readouterr().out.count("finished, skipped") == 6
    assert again["summary"] == result["summary"] and again["seconds_this_invocation"] == {}
    # Changing a setting under the same run names is refused instead of mixing results.
    changed = json.loads(path.read_text())
    changed["tokens_per_param"] = 0.5
    path.write_text(json.dumps(changed))
    with pytest.raises(UserError, match="other settings"):
        run_ablation(path, out, device="cpu")
