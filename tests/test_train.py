"""End-to-end curriculum runs of a tiny GPT on tiny real shards (in-process, CPU)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.train.checkpoint import load_checkpoint
from chinchilla_pipeline.train.metrics import read_metrics
from chinchilla_pipeline.train.pretrain import run_pretrain
from chinchilla_pipeline.train.rundir import list_checkpoints
from trainkit import SEED_ORDER, make_domain, write_curriculum, write_model


def _run(cfg, tmp_path, **kw):
    return run_pretrain(cfg, out_dir=tmp_path / "runs", device="cpu", **kw)


def _metrics(tmp_path, kind, name="run"):
    return read_metrics(tmp_path / "runs" / name / "metrics.jsonl", kind)


def test_curriculum_trains_and_records_the_transition(tmp_path):
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=40)
    assert _run(cfg, tmp_path) == 0
    train = _metrics(tmp_path, "train")
    assert sorted(train) == list(range(40))
    first = sum(train[s]["loss"] for s in range(3)) / 3
    end_a = sum(train[s]["loss"] for s in range(17, 20)) / 3
    assert end_a < first - 0.3  # the loss falls (nats/token)
    val = _metrics(tmp_path, "validation")
    assert sorted(val) == [10, 20, 30, 40] and set(val[20]["loss"]) == {"wiki", "books", "c4", "forums"}
    trans = _metrics(tmp_path, "transition")
    assert trans[20]["validation_loss"] == val[20]["loss"]
    summary = trans[40]
    assert summary["before"] == val[20]["loss"] and summary["after"] == val[40]["loss"]
    assert set(summary["forgetting"]) == {"wiki", "books"} and set(summary["gain"]) == {"c4", "forums"}
    assert summary["gain"]["c4"] == pytest.approx(val[20]["loss"]["c4"] - val[40]["loss"]["c4"])
    assert summary["gain"]["c4"] > 0
    # bits per byte beside nats for every domain; trainkit's byte vocabulary: 1 byte per target but end-of-text
    for rec in val.values():
        assert set(rec["bpb"]) == set(rec["loss"]) and rec["bpb_mean"] == pytest.approx(sum(rec["bpb"].values()) / 4)
        assert all(
            rec["loss"][d] / math.log(2) <= b <= 1.02 * rec["loss"][d] / math.log(2) for d, b in rec["bpb"].items()
        )
    assert trans[20]["validation_bpb"] == val[20]["bpb"] and "before_bpb" not in trans[20]
    assert summary["before_bpb"] == val[20]["bpb"] and summary["after_bpb"] == val[40]["bpb"]
    assert set(summary["forgetting_bpb"]) == {"wiki", "books"} and set(summary["gain_bpb"]) == {"c4", "forums"}
    assert summary["gain_bpb"]["c4"] == pytest.approx(val[20]["bpb"]["c4"] - val[40]["bpb"]["c4"])
    # tokens per source: weights 2:1 within each phase, 20 steps x 8 sequences x 32 tokens per phase
    seen = train[39]["tokens_seen"]
    assert seen["wiki"] + seen["books"] == seen["c4"] + seen["forums"] == 20 * 256
    assert abs(seen["wiki"] - 2 * seen["books"]) <= 3 * 32
    # last 2 periodic checkpoints kept, plus each phase's final
    names = [p.name for _, p in list_checkpoints(tmp_path / "runs" / "run")]
    assert names == ["step_0000020_final-a.pt", "step_0000030.pt", "step_0000035.pt", "step_0000040_final-b.pt"]
    state = load_checkpoint(tmp_path / "runs/run/checkpoints/step_0000040_final-b.pt")
    assert state["step"] == 40 and state["tokens_seen"] == seen
    assert set(state["fingerprint"]) == {"model", "recipe", "tokenizer", "data"}


def test_phase_b_alone_refuses_then_phases_in_turn_equal_one_run(tmp_path):
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=20)
    with pytest.raises(UserError, match="make pretrain-curriculum-phase-a"):
        _run(cfg, tmp_path, phase="b")
    assert main(["pretrain", "--config", str(cfg), "--out_dir", str(tmp_path / "runs"), "--phase", "b"]) == 2
    assert _run(cfg, tmp_path, phase="a") == 0
    assert max(_metrics(tmp_path, "train")) == 9  # phase a only
    assert _run(cfg, tmp_path, phase="a") == 0  # done already: nothing to do
    assert _run(cfg, tmp_path, phase="b") == 0
    split = {s: r["loss"] for s, r in _metrics(tmp_path, "train").items()}
    whole = write_curriculum(tmp_path, SEED_ORDER, steps=20, name="whole")
    assert _run(whole, tmp_path) == 0
    assert {s: r["loss"] for s, r in _metrics(tmp_path, "train", "whole").items()} == split  # bitwise


def test_swapped_phase_order(tmp_path):
    swapped = [("b", {"c4": 2, "forums": 1}), ("a", {"wiki": 2, "books": 1})]
    cfg = write_curriculum(tmp_path, swapped, steps=20, schedule={"kind": "wsd", "decay_start_share": 0.5})
    with pytest.raises(UserError, match="run phase 'b' first"):
        _run(cfg, tmp_path, phase="a")
    assert _run(cfg, tmp_path, phase="b") == 0 and _run(cfg, tmp_path, phase="a") == 0
    summary = _metrics(tmp_path, "transition")[20]
    assert summary["after_phase"] == "b"
    assert set(summary["forgetting"]) == {"c4", "forums"} and set(summary["gain"]) == {"wiki", "books"}
    seen = _metrics(tmp_path, "train")[9]["tokens_seen"]
    assert seen["wiki"] == seen["books"] == 0 and seen["c4"] + seen["forums"] == 10 * 256


def test_vocabulary_mismatch_refused(tmp_path):
    make_domain(tmp_path / "data", "wiki", vocab=512)  # shards tokenized with a 512-token vocabulary
    write_model(tmp_path, vocab_size=256)
    cfg = write_curriculum(tmp_path, [("a", {"wiki": 1})], steps=4)
    with pytest.raises(UserError, match=r"vocab_size 512 .* vocab_size 256"):
        _run(cfg, tmp_path)


def test_resume_with_other_data_refused_unless_allowed(tmp_path):
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=20)
    assert _run(cfg, tmp_path, phase="a") == 0
    make_domain(tmp_path / "data", "c4", seed=1)  # phase b's data rebuilt differently
    with pytest.raises(UserError, match=r"data\.c4 .*--allow_changes"):
        _run(cfg, tmp_path, phase="b")
    assert _run(cfg, tmp_path, phase="b", allow_changes=True) == 0


def test_resume_after_moving_the_data_continues_and_a_changed_recipe_is_named(tmp_path):
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=20)
    assert _run(cfg, tmp_path, phase="a") == 0
    shutil.move(tmp_path / "data", tmp_path / "nvme")  # the same datasets, elsewhere
    moved = json.loads(cfg.read_text())
    for phase in moved["phases"]:
        for source in phase["sources"]:
            source["path"] = source["path"].replace(str(tmp_path / "data"), str(tmp_path / "nvme"))
    faster = dict(moved, optimizer={"lr": 1e-2})
    cfg.write_text(json.dumps(faster))
    with pytest.raises(UserError, match=r"different recipe\.optimizer\.lr \(0\.003 -> 0\.01\) than this run"):
        _run(cfg, tmp_path, phase="b")
    cfg.write_text(json.dumps(moved))
    assert _run(cfg, tmp_path, phase="b") == 0  # no --allow_changes: only the paths changed
    split = {s: r["loss"] for s, r in _metrics(tmp_path, "train").items()}
    whole = write_curriculum(tmp_path, SEED_ORDER, steps=20, name="whole")  # rebuilds data/ identically
    assert _run(whole, tmp_path) == 0
    assert {s: r["loss"] for s, r in _metrics(tmp_path, "train", "whole").items()} == split  # bitwise


@pytest.mark.parametrize("enabled, precision, allow", [(True, "high", True), (False, "highest", False)])
def test_tf32_switch_leaves_every_precision_reader_working(enabled, precision, allow):
    """Inductor reads torch.get_float32_matmul_precision() when it compiles for CUDA; after torch 2.9+'s
    per-backend fp32_precision setters that read raises (pytorch#166387). set_tf32 must not cause it."""
    from chinchilla_pipeline.train.setup import set_tf32

    try:
        set_tf32(enabled)
        assert torch.get_float32_matmul_precision() == precision
        assert torch.backends.cuda.matmul.allow_tf32 is allow
        assert torch.backends.cuda.matmul.fp32_precision == ("tf32" if enabled else "ieee")
    finally:
        torch.set_float32_matmul_precision("highest")  # torch's default


def test_a_forced_attention_backend_is_ignored_on_cpu(tmp_path):
    """speed.attention forces an SDPA backend on CUDA only (SpeedConfig); on CPU "cudnn" raised
    "No viable backend" from the first forward pass."""
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=4, speed={"attention": "cudnn"})
    assert _run(cfg, tmp_path) == 0


def test_a_checkpoint_from_before_the_recipe_fields_resumes_a_gpt2_adamw_run_only(tmp_path):
    from chinchilla_pipeline.errors import UserError
    from chinchilla_pipeline.train.checkpoint import check_fingerprint

    old = {"model": {"n_layer": 2}, "recipe": {"optimizer.lr": 1e-3}}
    same = {
        "model": {"n_layer": 2, "architecture": "gpt2"},
        "recipe": {"optimizer.lr": 1e-3, "optimizer.kind": "adamw"},
    }
    assert check_fingerprint(old, same, tmp_path, allow_changes=False) == []
    modern = {"model": {"n_layer": 2, "architecture": "nanochat"}, "recipe": same["recipe"]}
    with pytest.raises(UserError, match=r"model.architecture \(gpt2 -> nanochat\)"):
        check_fingerprint(old, modern, tmp_path, allow_changes=False)


def test_the_schedule_layout_and_phase_check_are_made_once_per_run(tmp_path, monkeypatch):
    """issue 22: one Schedule (configs alone), one Layout (after the probe), one phase check per invocation."""
    from chinchilla_pipeline.train import pretrain

    calls = {"make_schedule": 0, "resolve_layout": 0, "phase_end_step": 0}
    for name in calls:
        real = getattr(pretrain, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(pretrain, name, counted)
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=8)
    assert _run(cfg, tmp_path, phase="a") == 0
    assert calls == {"make_schedule": 1, "resolve_layout": 1, "phase_end_step": 1}
