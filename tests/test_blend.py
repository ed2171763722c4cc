"""Ramped phase transitions (``blend_in``): exact over every prefix, seeded, rank-independent, resumable."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.train.checkpoint import load_checkpoint
from chinchilla_pipeline.train.config import PhaseConfig, load_curriculum
from chinchilla_pipeline.train.metrics import read_metrics
from chinchilla_pipeline.train.mixture import run_mixture
from chinchilla_pipeline.train.rundir import list_checkpoints
from chinchilla_pipeline.train.sampler import WeightedMultiDatasetSampler
from chinchilla_pipeline.train.schedule import make_schedule
from conftest import CLI, CLI_ENV
from test_sampler import arange_stream
from trainkit import (
    MODERN_FIELDS,
    MODERN_MODEL,
    SEED_ORDER,
    assert_same_run,
    kill_after_checkpoint,
    write_curriculum,
    write_model,
)

CTX = 8


def phases(spec):
    """[(weights {source: w}, blend_in or None)] as equal-share PhaseConfigs."""
    return [
        PhaseConfig(
            name=f"p{i}",
            share=1 / len(spec),
            sources=[{"name": n, "path": "x", "weight": w} for n, w in ws.items()],
            blend_in=blend,
        )
        for i, (ws, blend) in enumerate(spec)
    ]


def expected_targets(spec, bounds, per_step, target_tokens):
    """Each source's target after every sequence, computed from the definition, one sequence at a time:
    phase weights, linear ramps centred on blended boundaries (t = (j + 0.5) / L), counts restarting at
    hard boundaries."""
    names = list(dict.fromkeys(n for ws, _ in spec for n in ws))
    total = bounds[-1][1] * per_step
    w = np.zeros((total, len(names)))
    for (ws, _), (a, b) in zip(spec, bounds):
        for n, x in ws.items():
            w[a * per_step : b * per_step, names.index(n)] = x / sum(ws.values())
    restart = np.zeros(total, dtype=bool)
    for (_, blend), (a, _) in zip(spec, bounds):
        start = a * per_step
        if blend is None:
            restart[start] = True
            continue
        tokens = float(blend[:-1]) / 100 * target_tokens if isinstance(blend, str) else blend
        half = round(tokens / (2 * CTX))
        before, after = w[start - 1].copy(), w[start].copy()
        for j in range(2 * half):
            t = (j + 0.5) / (2 * half)
            w[start - half + j] = (1 - t) * before + t * after
    out, acc = np.zeros_like(w), np.zeros(len(names))
    for p in range(total):
        acc = np.zeros(len(names)) if restart[p] else acc
        acc = acc + w[p]
        out[p] = acc
    return names, out, restart


CASES = [  # (phases, steps, sequences per step)
    ([({"a": 2, "b": 1}, None), ({"c": 2, "d": 1}, "20%")], 50, 8),
    ([({"a": 2, "b": 1}, None), ({"c": 2, "d": 1}, "100%")], 40, 4),  # the ramp spans both phases whole
    ([({"a": 1}, None), ({"a": 1, "b": 1}, 96), ({"b": 3, "c": 1}, None)], 60, 4),  # shared source, then hard
    ([({"a": 0.97, "b": 0.03}, None), ({"c": 0.5, "b": 0.5}, "30%"), ({"a": 1, "c": 2}, "30%")], 90, 4),
    ([({"a": 1, "b": 1, "c": 1, "d": 1}, None), ({"d": 5, "a": 1}, 16)], 32, 16),  # a 2-sequence ramp
    ([({"c": 3, "b": 0.36, "a": 3, "d": 0.09, "e": 0.4}, None)], 41, 8),  # fixed: largest deficit overshoots 1.03
]


@pytest.mark.parametrize("spec, steps, per_step", CASES)
def test_every_prefix_within_one_sequence_of_the_ramped_target(tmp_path, spec, steps, per_step):
    cfg = phases(spec)
    bounds = [(i * steps // len(spec), (i + 1) * steps // len(spec)) for i in range(len(spec))]
    target_tokens = steps * per_step * CTX
    mixture = run_mixture(cfg, bounds, per_step, target_tokens, CTX)
    names, target, restart = expected_targets(spec, bounds, per_step, target_tokens)
    assert mixture.names == names
    streams = [arange_stream(tmp_path, n, 40, base=1000 * (i + 1)) for i, n in enumerate(names)]
    sampler = WeightedMultiDatasetSampler(names, streams, mixture, context=CTX, seed=3)
    sources = np.array(sampler.next_sources(steps * per_step))
    counts, acc = np.zeros_like(target), np.zeros(len(names))
    for p, s in enumerate(sources):
        acc = np.zeros(len(names)) if restart[p] else acc
        acc[s] += 1
        counts[p] = acc
    assert np.abs(counts - target).max() <= 1.0
    assert np.allclose([mixture.targets(p)[0] for p in range(len(sources))], target, atol=1e-9)
    # the ramps are symmetric: each source gets its hard-switch sequences to within one per boundary
    hard_counts = np.zeros(len(names))
    for (ws, _), (a, b) in zip(spec, bounds):
        for n, x in ws.items():
            hard_counts[names.index(n)] += (b - a) * per_step * x / sum(ws.values())
    assert np.abs(np.bincount(sources, minlength=len(names)) - hard_counts).max() <= len(spec)


def test_seeded_and_independent_of_the_rank_count(tmp_path):
    spec, per_step = CASES[3][0], 4
    bounds = [(0, 30), (30, 60), (60, 90)]
    mixture = run_mixture(phases(spec), bounds, per_step, 90 * per_step * CTX, CTX)
    streams = [arange_stream(tmp_path, n, 25, base=1000 * (i + 1)) for i, n in enumerate(mixture.names)]

    def sampler(seed):
        return WeightedMultiDatasetSampler(mixture.names, streams, mixture, context=CTX, seed=seed)

    single, again, other = sampler(1), sampler(1), sampler(2)
    ranks = {world: [sampler(1) for _ in range(world)] for world in (2, 4)}
    for _ in range(90):
        rows, src = single.next_step(per_step)
        assert np.array_equal(rows, again.next_step(per_step)[0])
        for world, group in ranks.items():
            parts = [r.next_step(per_step, rank=k, world=world) for k, r in enumerate(group)]
            assert np.array_equal(np.concatenate([p[0] for p in parts]), rows)
            assert np.array_equal(np.concatenate([p[1] for p in parts]), src)
    assert not np.array_equal(sampler(1).next_step(64)[0], other.next_step(64)[0])


def test_a_state_taken_mid_ramp_restores_the_same_stream(tmp_path):
    spec, per_step = CASES[0][0], 8
    mixture = run_mixture(phases(spec), [(0, 25), (25, 50)], per_step, 50 * per_step * CTX, CTX)
    streams = [arange_stream(tmp_path, n, 30, base=1000 * (i + 1)) for i, n in enumerate(mixture.names)]
    a = WeightedMultiDatasetSampler(mixture.names, streams, mixture, context=CTX, seed=1)
    a.next_sources(23 * per_step)  # inside the window (steps 20..30)
    state = a.state_dict()
    expected = [a.next_step(per_step)[0] for _ in range(27)]
    b = WeightedMultiDatasetSampler(mixture.names, streams, mixture, context=CTX, seed=1)
    b.load_state_dict(state)
    assert all(np.array_equal(e, b.next_step(per_step)[0]) for e in expected)


def test_a_ramp_that_does_not_fit_is_one_line_naming_the_field(tmp_path):
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=40)
    data = json.loads(cfg.read_text())
    data["phases"][1]["blend_in"] = "150%"
    cfg.write_text(json.dumps(data))
    with pytest.raises(UserError, match="blend_in") as err:
        load_curriculum(cfg)
    assert "\n" not in str(err.value)
    data["phases"][1]["blend_in"] = 256 * 30  # 30 steps of ramp, 15 on each side of a 20-step phase: fits
    cfg.write_text(json.dumps(data))
    make_schedule(*load_curriculum(cfg))
    data["phases"][1]["blend_in"] = 256 * 42
    cfg.write_text(json.dumps(data))
    with pytest.raises(UserError, match="shorten blend_in"):
        make_schedule(*load_curriculum(cfg))
    data["phases"][0]["blend_in"] = "10%"
    cfg.write_text(json.dumps(data))
    with pytest.raises(UserError, match="no phase to blend in from"):
        make_schedule(*load_curriculum(cfg))


def _cmd(cfg, out):
    return [*CLI, "pretrain", "--config", str(cfg), "--out_dir", str(out), "--device", "cpu"]


STEPS = 80


def test_kill_9_mid_ramp_then_resume_is_bitwise_identical(tmp_path):
    """The modern recipe with the seed's phases, blended over the middle half of the run (steps 20..60),
    killed with SIGKILL inside the ramp, resumed: equal to an unbroken run."""
    write_model(tmp_path, **MODERN_MODEL)
    cfg = write_curriculum(
        tmp_path,
        SEED_ORDER,
        steps=STEPS,
        checkpoint={"interval_steps": 4, "keep_last": 2},
        eval={"interval_steps": 40, "tokens_per_source": 256},
        log_interval_steps=4,
        **MODERN_FIELDS,
    )
    data = json.loads(cfg.read_text())
    data["phases"][1]["blend_in"] = "50%"
    cfg.write_text(json.dumps(data))
    unbroken = subprocess.run(_cmd(cfg, tmp_path / "unbroken"), env=CLI_ENV, capture_output=True, text=True)
    assert unbroken.returncode == 0, unbroken.stderr

    run_dir = tmp_path / "killed" / "run"
    killed_at = kill_after_checkpoint(_cmd(cfg, tmp_path / "killed"), CLI_ENV, run_dir, 28)  # inside the ramp
    assert 20 < killed_at < 60, killed_at
    state = load_checkpoint(list_checkpoints(run_dir)[-1][1])["sampler"]
    used = dict(zip(state["names"], state["used"]))
    assert state["position"] == killed_at * 8 and used["wiki"] > 0 and used["c4"] > 0  # both phases: mid-blend

    resumed = subprocess.run(_cmd(cfg, tmp_path / "killed"), env=CLI_ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at}" in resumed.stderr
    assert_same_run(tmp_path / "unbroken/run", run_dir, STEPS)


def test_an_anneal_phase_carries_the_whole_decay_and_its_final_checkpoint_is_averaged(tmp_path):
    from chinchilla_pipeline.train.average import average_checkpoints, averaged_from
    from chinchilla_pipeline.train.pretrain import run_pretrain

    phases = [*SEED_ORDER, ("anneal", {"wiki": 2, "books": 1})]
    cfg = write_curriculum(
        tmp_path, phases, steps=30, schedule={"kind": "wsd", "warmup_share": 0.0, "decay_phase": "anneal"}
    )
    assert run_pretrain(cfg, out_dir=tmp_path / "runs", device="cpu") == 0
    run = tmp_path / "runs" / "run"
    lr = {s: r["lr"] for s, r in read_metrics(run / "metrics.jsonl", "train").items()}
    assert len({lr[s] for s in range(21)}) == 1  # held through phases a and b (steps 0..19), anneal starts at 20
    assert all(lr[s] > lr[s + 1] for s in range(20, 29)) and lr[29] == pytest.approx(lr[0] * 0.1)
    averaged = average_checkpoints(run, last=2, phase="anneal")  # test_average: evaluate and export take it
    assert [c["step"] for c in averaged_from(averaged)["checkpoints"]] == [25, 30]
