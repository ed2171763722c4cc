"""A run killed with SIGKILL and resumed gives, step for step, the losses of an unbroken run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from chinchilla_pipeline.train.checkpoint import load_checkpoint
from chinchilla_pipeline.train.metrics import read_metrics
from chinchilla_pipeline.train.rundir import list_checkpoints
from conftest import CLI, CLI_ENV
from trainkit import MODERN_FIELDS, MODERN_MODEL, SEED_ORDER, write_curriculum, write_model

STEPS = 120  # phase a: steps 0-59; a checkpoint every 10 steps, the kill after the one at 20 or later
KILL_AFTER = 20


def _cmd(cfg: Path, out: Path) -> list[str]:
    return [*CLI, "pretrain", "--config", str(cfg), "--out_dir", str(out), "--device", "cpu"]


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])  # modern: nanochat model, Muon + AdamW in the checkpoint
def test_kill_9_then_resume_is_bitwise_identical(tmp_path, recipe):
    if recipe == "modern":
        write_model(tmp_path, **MODERN_MODEL)
    cfg = write_curriculum(
        tmp_path,
        SEED_ORDER,
        steps=STEPS,
        checkpoint={"interval_steps": 10, "keep_last": 2},
        eval={"interval_steps": 40, "tokens_per_source": 256},
        log_interval_steps=10,
        **(MODERN_FIELDS if recipe == "modern" else {}),
    )
    # the unbroken run beside the killed one (each one torch thread): the two cores of CI, not one after the other
    log = tmp_path / "unbroken.log"
    with open(log, "w") as f:
        unbroken = subprocess.Popen(_cmd(cfg, tmp_path / "unbroken"), env=CLI_ENV, stdout=f, stderr=subprocess.STDOUT)
    try:
        run_dir = tmp_path / "killed" / "run"
        proc = subprocess.Popen(
            _cmd(cfg, tmp_path / "killed"), env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while not list_checkpoints(run_dir) or list_checkpoints(run_dir)[-1][0] < KILL_AFTER:  # mid phase a
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        killed_at = list_checkpoints(run_dir)[-1][0]
        assert killed_at < STEPS // 2

        resumed = subprocess.run(_cmd(cfg, tmp_path / "killed"), env=CLI_ENV, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert f"at step {killed_at}" in resumed.stderr
        assert unbroken.wait(timeout=300) == 0, log.read_text()
    finally:
        if unbroken.poll() is None:
            unbroken.kill()
            unbroken.wait()

    a = read_metrics(tmp_path / "unbroken/run/metrics.jsonl", "train")
    b = read_metrics(run_dir / "metrics.jsonl", "train")
    assert sorted(a) == sorted(b) == list(range(STEPS))
    assert [a[s]["loss"] for s in range(STEPS)] == [b[s]["loss"] for s in range(STEPS)]
    assert read_metrics(tmp_path / "unbroken/run/metrics.jsonl", "validation") == read_metrics(
        run_dir / "metrics.jsonl", "validation"
    )
    final_a = load_checkpoint(list_checkpoints(tmp_path / "unbroken/run")[-1][1])
    final_b = load_checkpoint(list_checkpoints(run_dir)[-1][1])
    assert all(torch.equal(final_a["model"][k], final_b["model"][k]) for k in final_a["model"])
    assert final_a["tokens_seen"] == final_b["tokens_seen"]
