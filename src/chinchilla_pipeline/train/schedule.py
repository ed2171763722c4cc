"""The run's trajectory from its configs alone: budget, steps, phases, mixture and learning rate.

Nothing here depends on the machine (world size, micro batch: ``train/layout.py``), so ``--plan_only``,
``chinchilla plan``, preflight, the experiments and the training run all read one ``Schedule``, made once by
``make_schedule``; the lr of a step is a function of it alone (``pretrain.lr_factor``).

Vocabulary, shared with the Chinchilla planner (``chinchilla_pipeline/plan.py``): ``num_tokens`` (D, the
budget), ``num_steps``, ``tokens_per_step`` (the config's ``batch.global_batch_tokens``), and per phase
``phase_steps`` = (first step, end step), end exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..model.config import ModelConfig
from .config import CurriculumConfig
from .mixture import Mixture, blend_sequences, run_mixture


def phase_boundaries(shares: Sequence[float], num_tokens: int, tokens_per_step: int) -> list[tuple[int, int]]:
    """(first step, end step) of each phase, end exclusive: phase i ends at step
    round(cumulative share x num_tokens / tokens_per_step), so each phase is within
    half a step of its share and rounding never accumulates. A phase may come out empty."""
    bounds, start, cum = [], 0, 0.0
    for share in shares:
        cum += share
        end = round(cum * num_tokens / tokens_per_step)
        bounds.append((start, end))
        start = end
    return bounds


@dataclass(frozen=True)
class Schedule:
    """Every number of a run that the configs alone fix (``make_schedule``)."""

    context: int  # tokens per sequence (the model's block_size)
    tokens_per_step: int  # tokens per optimiser step over all ranks (batch.global_batch_tokens)
    num_tokens: int  # the budget D: total_tokens, or tokens_per_param x N
    num_steps: int
    phase_steps: tuple[tuple[int, int], ...]  # (first step, end step) per phase, end exclusive
    warmup_steps: int
    decay_start_step: int  # WSD: the last step at the peak lr + 1
    kind: str  # the lr's shape after warmup: "cosine" | "wsd" (ScheduleConfig.kind)
    min_lr_ratio: float  # the final lr as a share of each group's peak
    mixture: Mixture = field(compare=False, repr=False)  # every source's target weight at every sequence

    @property
    def sequences_per_step(self) -> int:
        return self.tokens_per_step // self.context

    def phase_at(self, step: int) -> int:
        """Index of the phase that trains step ``step``."""
        for i, (a, b) in enumerate(self.phase_steps):
            if a <= step < b:
                return i
        raise ValueError(f"step {step} is outside the run (0..{self.num_steps})")


def make_schedule(cfg: CurriculumConfig, model: ModelConfig, *, path: str | Path = "") -> Schedule:
    """The run's ``Schedule``; a phase without a step or a ramp that does not fit is a ``UserError``."""
    ctx, tps = model.block_size, cfg.batch.global_batch_tokens
    if tps % ctx:
        raise UserError(
            f"{tps} tokens is not a multiple of context {ctx}", path=path, field="batch.global_batch_tokens"
        )
    num_tokens = cfg.total_tokens if cfg.total_tokens is not None else round(cfg.tokens_per_param * model.num_params())
    bounds = phase_boundaries([p.share for p in cfg.phases], num_tokens, tps)
    for p, (start, end) in zip(cfg.phases, bounds):
        if end <= start:
            raise UserError(
                f"phase '{p.name}' gets no step ({p.share} x {num_tokens} tokens < one step of {tps})",
                path=path,
                field="phases",
            )
    try:
        mixture = run_mixture(cfg.phases, bounds, tps // ctx, num_tokens, ctx)
    except ValueError as err:
        raise UserError(str(err), path=path, field="phases.blend_in") from None
    num_steps = bounds[-1][1]
    sched = cfg.schedule
    return Schedule(
        context=ctx,
        tokens_per_step=tps,
        num_tokens=num_tokens,
        num_steps=num_steps,
        phase_steps=tuple(bounds),
        warmup_steps=round(sched.warmup_share * num_steps),
        # an anneal phase (decay_phase, the last) carries the whole decay
        decay_start_step=bounds[-1][0] if sched.decay_phase is not None else round(sched.decay_start_share * num_steps),
        kind=sched.kind,
        min_lr_ratio=cfg.optimizer.min_lr_ratio,
        mixture=mixture,
    )


def describe_schedule(cfg: CurriculumConfig, schedule: Schedule, num_params: int) -> list[str]:
    """The derived numbers of a run, one per line: budget, steps, lr shape, tokens per phase and source."""
    s = schedule
    lines = [
        f"parameters (all, with embeddings): {num_params:,}",
        f"target tokens: {s.num_tokens:,}"
        + ("" if cfg.total_tokens is not None else f" = {cfg.tokens_per_param:g} x {num_params:,}"),
        f"steps: {s.num_steps:,} ({s.num_steps * s.tokens_per_step:,} tokens); warmup {s.warmup_steps}"
        + (f", decay from step {s.decay_start_step}" if s.kind == "wsd" else "")
        + (f" (over phase {cfg.schedule.decay_phase})" if cfg.schedule.decay_phase else ""),
    ]
    for phase, (a, b) in zip(cfg.phases, s.phase_steps):
        tokens = (b - a) * s.tokens_per_step
        total_w = sum(src.weight for src in phase.sources)
        per = ", ".join(f"{src.name} ≈{tokens * src.weight / total_w:,.0f}" for src in phase.sources)
        lines.append(
            f"phase {phase.name}: steps {a:,}..{b:,} = {tokens:,} tokens (share {phase.share:g}: "
            f"{phase.share * s.num_tokens:,.0f}); per source: {per}"
        )
        if phase.blend_in is not None:
            seqs = blend_sequences(phase.blend_in, s.num_tokens, s.context)
            half = seqs // 2 / s.sequences_per_step
            lines.append(
                f"  blend_in {phase.blend_in}: the weights ramp linearly over {seqs * s.context:,} tokens, "
                f"steps {a - half:,.1f}..{a + half:,.1f}, centred on the switch"
            )
    return lines
