"""Learning rate as a pure function of the global step (one schedule across every phase).

Phase B started on its own computes the same lr for step k as an unbroken run,
because the lr depends on nothing but k and the plan.
"""

from __future__ import annotations

import math

from .config import OptimizerConfig, RunPlan, ScheduleConfig


def lr_at(step: int, plan: RunPlan, sched: ScheduleConfig, opt: OptimizerConfig) -> float:
    """lr for optimiser step ``step`` (0-based) of ``plan.total_steps``.

    Warmup: linear from lr/warmup to lr over ``warmup_steps``. Then
    ``cosine``: half a cosine from lr down to min_lr at the last step;
    ``wsd``: lr held until ``decay_start_step``, then linear down to min_lr at the last step.
    """
    peak, floor = opt.lr, opt.lr * opt.min_lr_ratio
    if step < plan.warmup_steps:
        return peak * (step + 1) / plan.warmup_steps
    last = plan.total_steps - 1
    if sched.kind == "cosine":
        span = max(1, last - plan.warmup_steps)
        frac = min(1.0, (step - plan.warmup_steps) / span)
        return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * frac))
    start = max(plan.decay_start_step, plan.warmup_steps)
    if step < start:
        return peak
    frac = min(1.0, (step - start) / max(1, last - start))
    return peak - (peak - floor) * frac
