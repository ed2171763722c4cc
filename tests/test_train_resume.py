"""A run killed with SIGKILL and resumed gives, step for step, the losses of an unbroken run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chinchilla_pipeline.train.metrics import read_metrics
from conftest import CLI, CLI_ENV
from trainkit import (
    MODERN_FIELDS,
    MODERN_MODEL,
    SEED_ORDER,
    assert_same_run,
    kill_after_checkpoint,
    write_curriculum,
    write_model,
)

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
        killed_at = kill_after_checkpoint(_cmd(cfg, tmp_path / "killed"), CLI_ENV, run_dir, KILL_AFTER)  # mid phase a
        assert killed_at < STEPS // 2

        resumed = subprocess.run(_cmd(cfg, tmp_path / "killed"), env=CLI_ENV, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert f"at step {killed_at}" in resumed.stderr
        assert unbroken.wait(timeout=300) == 0, log.read_text()
    finally:
        if unbroken.poll() is None:
            unbroken.kill()
            unbroken.wait()

    assert_same_run(tmp_path / "unbroken/run", run_dir, STEPS)
    assert read_metrics(tmp_path / "unbroken/run/metrics.jsonl", "validation") == read_metrics(
        run_dir / "metrics.jsonl", "validation"
    )


def test_a_checkpoint_from_before_the_run_wide_sampler_resumes_at_the_same_data_position():
    """Before issue 21 each phase had its own sampler (its position counted from the phase's first sequence,
    draws of its own sources); the run-wide sampler takes that state converted, and a changed set of sources
    is one line naming the checkpoint."""
    from types import SimpleNamespace

    from chinchilla_pipeline.errors import UserError
    from chinchilla_pipeline.train.checkpoint import run_wide_sampler_state

    names = ["wiki", "books", "c4", "forums"]
    old = SimpleNamespace(
        sampler={"phase": 1, "position": 24, "names": ["c4", "forums"], "drawn": [16, 8]},
        consumed={"wiki": 107, "books": 53, "c4": 16, "forums": 8},
    )
    starts = {0: 0, 1: 160}  # phase b's first sequence: 20 steps x 8 sequences
    state = run_wide_sampler_state(old, names, starts.__getitem__, Path("step_0000023.pt"))
    assert state == {"position": 184, "drawn": [0, 0, 16, 8], "used": [107, 53, 16, 8], "names": names}
    new = SimpleNamespace(sampler={"phase": 1, **state}, consumed={})  # written since: passed through
    assert run_wide_sampler_state(new, names, starts.__getitem__, Path("x.pt")) == state
    with pytest.raises(UserError, match=r"step_0000023\.pt.*saved with sources"):
        run_wide_sampler_state(
            SimpleNamespace(sampler=state, consumed={}), names[:3], starts.__getitem__, Path("step_0000023.pt")
        )
