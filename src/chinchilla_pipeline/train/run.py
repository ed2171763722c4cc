"""``chinchilla pretrain``: one phase (or the whole curriculum) of a run, resumed where it stopped."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ..errors import UserError
from ..hellaswag.data import ensure_data
from ..lock import output_lock, rank_zero
from .checkpoint import list_checkpoints
from .config import CurriculumConfig, EvalConfig, RunPlan, load_curriculum, make_plan
from .distributed import setup_distributed, teardown
from .mixture import blend_sequences
from .trainer import NonFiniteLoss, Trainer, check_phase_ready
from .wandb_log import require_wandb


def describe_plan(cfg: CurriculumConfig, plan: RunPlan, num_params: int) -> str:
    """The derived numbers of a run, one per line: budget, steps and tokens per phase and source."""
    lines = [
        f"parameters (all, with embeddings): {num_params:,}",
        f"target tokens: {plan.target_tokens:,}"
        + ("" if cfg.total_tokens is not None else f" = {cfg.tokens_per_param:g} x {num_params:,}"),
        f"tokens per step: {plan.tokens_per_step:,} = {plan.micro_batch_size} sequences x {plan.context} "
        f"tokens x {plan.grad_accum} accumulation x {plan.world_size} ranks"
        + (
            " (micro_batch_size auto: the CPU rule here; on CUDA the largest that fits)"
            if cfg.batch.micro_batch_size == "auto"
            else ""
        ),
        f"steps: {plan.total_steps:,} ({plan.total_steps * plan.tokens_per_step:,} tokens); warmup "
        f"{plan.warmup_steps}"
        + (f", decay from step {plan.decay_start_step}" if cfg.schedule.kind == "wsd" else "")
        + (f" (over phase {cfg.schedule.decay_phase})" if cfg.schedule.decay_phase else ""),
    ]
    for phase, (a, b) in zip(cfg.phases, plan.phase_steps):
        tokens = (b - a) * plan.tokens_per_step
        total_w = sum(s.weight for s in phase.sources)
        per = ", ".join(f"{s.name} ≈{tokens * s.weight / total_w:,.0f}" for s in phase.sources)
        lines.append(
            f"phase {phase.name}: steps {a:,}..{b:,} = {tokens:,} tokens (share {phase.share:g}: "
            f"{phase.share * plan.target_tokens:,.0f}); per source: {per}"
        )
        if phase.blend_in is not None:
            seqs = blend_sequences(phase.blend_in, plan.target_tokens, plan.context)
            half = seqs // 2 / plan.sequences_per_step
            lines.append(
                f"  blend_in {phase.blend_in}: the weights ramp linearly over {seqs * plan.context:,} tokens, "
                f"steps {a - half:,.1f}..{a + half:,.1f}, centred on the switch"
            )
    return "\n".join(lines)


def run_pretrain(
    config_path: str | Path,
    *,
    phase: str | None = None,
    out_dir: str | Path = "runs",
    allow_changes: bool = False,
    device: str = "auto",
    peak_tflops: float | None = None,
    plan_only: bool = False,
    wandb: dict | None = None,
    hellaswag: dict | None = None,
) -> int:
    """Train ``phase`` (None: every remaining phase) of the run ``<out_dir>/<config name>``.

    Resumes from the run's latest checkpoint. Returns 0 when done, 1 when the
    loss became NaN/inf (the message names the step and the last checkpoint).
    Run under torchrun for DDP. User errors raise ``UserError``. ``plan_only``
    prints the derived numbers (for WORLD_SIZE ranks) and trains nothing. ``wandb``: WandbLogger's
    arguments (None: off); ``hellaswag``: ``eval.hellaswag_*`` fields that replace the config's.
    """
    cfg, model_cfg = load_curriculum(config_path)
    cfg = with_eval_overrides(cfg, hellaswag or {})
    if wandb:
        require_wandb()  # one clear line, before any process group or model
    run_dir = Path(out_dir) / cfg.name
    world = int(os.environ.get("WORLD_SIZE", "1"))
    plan = make_plan(cfg, model_cfg, world, path=config_path)
    if plan_only:
        print(describe_plan(cfg, plan, model_cfg.num_params()))
        return 0
    check_phase_ready(cfg, plan, run_dir, phase)  # fails at once, before any process group or model
    lock = contextlib.ExitStack()  # one writer per run directory: rank 0 writes, rank 0 holds the lock
    if rank_zero():
        lock.enter_context(output_lock(run_dir, "pretrain"))
        if cfg.eval.hellaswag_path:  # downloaded once, before any rank waits on another
            ensure_data(cfg.eval.hellaswag_path)
    dist = setup_distributed(device)
    trainer, together = None, False
    try:
        trainer = Trainer(cfg, model_cfg, dist, run_dir, config_path=config_path, peak_tflops=peak_tflops, wandb=wandb)
        end = trainer.resume(phase, allow_changes)
        if trainer.step < end:
            trainer.train(end)
        else:
            trainer.log.say(
                f"nothing to do: {run_dir} is at step {trainer.step}, "
                f"{'phase ' + repr(phase) if phase else 'the run'} ends at step {end}"
            )
        together = True
        return 0
    except NonFiniteLoss as err:  # raised on every rank alike (losses are all-reduced)
        together = True
        ckpts = list_checkpoints(run_dir)
        last = f"{ckpts[-1][1]} (step {ckpts[-1][0]})" if ckpts else "none"
        if dist.is_main:
            print(f"error: {err}; last checkpoint: {last}", file=sys.stderr)
        return 1
    finally:
        if trainer is not None:
            trainer.log.close()
        teardown(dist, together)
        lock.close()


def with_eval_overrides(cfg: CurriculumConfig, fields: dict) -> CurriculumConfig:
    """``cfg`` with the ``eval`` fields given (None values ignored), validated again."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        return cfg
    merged = {**cfg.eval.model_dump(), **fields}
    if merged.get("hellaswag_path") is not None and merged.get("hellaswag_tokenizer") is None:
        raise UserError(
            "--hellaswag_path needs --hellaswag_tokenizer (the run's tokenizer directory)",
            field="--hellaswag_tokenizer",
        )
    return cfg.model_copy(update={"eval": EvalConfig.model_validate(merged)})
