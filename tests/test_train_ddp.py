"""torchrun DDP on CPU (gloo): 2 processes train like 1 on the same global batch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chinchilla_pipeline.train.checkpoint import load_checkpoint
from chinchilla_pipeline.train.metrics import read_metrics
from chinchilla_pipeline.train.rundir import list_checkpoints
from conftest import CLI_ENV, CLI_MODULE
from trainkit import MODERN_FIELDS, MODERN_MODEL, SEED_ORDER, write_curriculum, write_model

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists() and not shutil.which("torchrun"), reason="torchrun not installed")
# 2: gradient accumulation under no_sync; modern: nanochat model, Muon after the all-reduce on every rank
@pytest.mark.parametrize("micro_batch_size, accum, recipe", [(4, 1, "gpt2"), (2, 2, "gpt2"), (4, 1, "modern")])
def test_two_ranks_match_one_rank(tmp_path, micro_batch_size, accum, recipe):
    if recipe == "modern":
        write_model(tmp_path, **MODERN_MODEL)
    cfg = write_curriculum(
        tmp_path,
        SEED_ORDER,
        steps=20,
        checkpoint={"interval_steps": 10, "keep_last": 1},
        batch={"global_batch_tokens": 256, "micro_batch_size": micro_batch_size},
        **(MODERN_FIELDS if recipe == "modern" else {}),
    )
    args = [*CLI_MODULE, "pretrain", "--config", str(cfg), "--device", "cpu"]
    one = subprocess.run(
        [sys.executable, *args, "--out_dir", str(tmp_path / "one")], env=CLI_ENV, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-4000:]
    two = subprocess.run(
        [
            str(TORCHRUN if TORCHRUN.exists() else "torchrun"),
            "--standalone",
            "--nproc_per_node=2",
            *args,
            "--out_dir",
            str(tmp_path / "two"),
        ],
        env=CLI_ENV,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-4000:]
    assert f"x {accum} accum x 2 ranks" in two.stderr  # the same 256-token global batch, split over 2 ranks

    a = read_metrics(tmp_path / "one/run/metrics.jsonl", "train")
    b = read_metrics(tmp_path / "two/run/metrics.jsonl", "train")
    assert sorted(a) == sorted(b) == list(range(20))
    for s in range(20):
        assert b[s]["loss"] == pytest.approx(a[s]["loss"], rel=1e-5, abs=1e-5)
    va = read_metrics(tmp_path / "one/run/metrics.jsonl", "validation")
    vb = read_metrics(tmp_path / "two/run/metrics.jsonl", "validation")
    for step in va:
        assert vb[step]["loss"] == pytest.approx(va[step]["loss"], rel=1e-5)
    fa = load_checkpoint(list_checkpoints(tmp_path / "one/run")[-1][1])
    fb = load_checkpoint(list_checkpoints(tmp_path / "two/run")[-1][1])
    assert fa["tokens_seen"] == fb["tokens_seen"] and fb["world_size"] == 2


@pytest.mark.skipif(not TORCHRUN.exists() and not shutil.which("torchrun"), reason="torchrun not installed")
def test_a_checkpoint_rank_0_cannot_write_stops_every_rank_at_once(tmp_path):
    """Rank 0's failed write reaches rank 1 through the all-reduce: both exit, none waits for the timeout."""
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=20, checkpoint={"interval_steps": 10, "keep_last": 1})
    (tmp_path / "two" / "run").mkdir(parents=True)
    (tmp_path / "two" / "run" / "checkpoints").write_text("a file where the checkpoint directory goes\n")
    two = subprocess.run(
        [
            str(TORCHRUN if TORCHRUN.exists() else "torchrun"),
            "--standalone",
            "--nproc_per_node=2",
            *CLI_MODULE,
            *["pretrain", "--config", str(cfg), "--device", "cpu"],
            *["--out_dir", str(tmp_path / "two")],
        ],
        env=CLI_ENV,
        capture_output=True,
        text=True,
        timeout=180,  # the process group's own timeout is 30 minutes: waiting for it would fail here
    )
    assert two.returncode != 0
    errors = [line for line in two.stderr.splitlines() if line.startswith("error: ")]
    assert any("checkpoints" in line for line in errors), two.stderr[-3000:]  # rank 0: the path, what to do
    assert any("rank 0 could not write the checkpoint of step 10" in line for line in errors)  # rank 1
    assert "chinchilla_pipeline/" not in two.stderr  # no traceback from our ranks (torchrun prints its own)
