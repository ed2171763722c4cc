"""Learning rate as a pure function of the global step (one schedule across every phase).

Phase B started on its own computes the same lr for step k as an unbroken run,
because the lr depends on nothing but k and the plan.
"""

from __future__ import annotations

import math

from .config import OptimizerConfig, RunPlan, ScheduleConfig


def lr_factor(step: int, plan: RunPlan, sched: ScheduleConfig, min_lr_ratio: float) -> float:
    """The share of each group's peak lr at optimiser step ``step`` (0-based) of ``plan.total_steps``.

    Warmup: linear from 1/warmup to 1 over ``warmup_steps``. Then
    ``cosine``: half a cosine from 1 down to ``min_lr_ratio`` at the last step;
    ``wsd``: 1 until ``decay_start_step``, then linear down to ``min_lr_ratio`` at the last step.
    """
    floor = min_lr_ratio
    if step < plan.warmup_steps:
        return (step + 1) / plan.warmup_steps
    last = plan.total_steps - 1
    if sched.kind == "cosine":
        span = max(1, last - plan.warmup_steps)
        frac = min(1.0, (step - plan.warmup_steps) / span)
        return floor + 0.5 * (1.0 - floor) * (1.0 + math.cos(math.pi * frac))
    start = max(plan.decay_start_step, plan.warmup_steps)
    if step < start:
        return 1.0
    frac = min(1.0, (step - start) / max(1, last - start))
    return 1.0 - (1.0 - floor) * frac


def lr_at(step: int, plan: RunPlan, sched: ScheduleConfig, opt: OptimizerConfig) -> float:
    """The headline lr at ``step`` (``opt.peak_lr`` x ``lr_factor``): AdamW's, or Muon's matrix lr."""
    return opt.peak_lr * lr_factor(step, plan, sched, opt.min_lr_ratio)
