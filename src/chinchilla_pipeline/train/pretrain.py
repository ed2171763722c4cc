"""``chinchilla pretrain``: one phase (or the whole curriculum) of a run, read top to bottom.

resolve (configs, schedule, the phase to train) -> open data (datasets, sampler, validation windows) ->
build (layout, model, optimiser) -> resume (the latest intact checkpoint) -> loop (step, log, evaluate,
phase end, checkpoint) -> finish.

One optimiser step (``Run.step``): the lr of the global step (``lr_factor``), the rank's sequences
from the run-wide sampler (``train/sampler.py``; their memory-mapped reads done by a background thread
during the step before, ``speed.prefetch``), copied to the device (pinned, non-blocking on CUDA),
``grad_accum`` forward/backward passes of the model (``model/gpt.py`` or ``model/nanochat.py``), clip,
the optimiser (``train/optim.py``). Losses and gradient norms stay on the device until the log interval,
where one all-reduce and one ``tolist`` bring them to the host: no per-step sync.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..hellaswag.data import ensure_data
from ..hellaswag.run import training_hook
from ..lock import output_lock, rank_zero
from ..model.config import ModelConfig
from .checkpoint import (
    TrainState,
    check_fingerprint,
    latest_intact,
    run_wide_sampler_state,
    save_checkpoint,
    save_on_rank_zero,
)
from .config import CurriculumConfig, load_curriculum
from .distributed import Dist, all_reduce_mean, setup_distributed, teardown, wrap_ddp
from .layout import make_layout, resolve_layout
from .metrics import (
    MetricsLog,
    NonFiniteLoss,
    PendingSteps,
    RateMeter,
    describe_transition,
    format_duration,
    mfu,
    peak_flops,
    transition_record,
)
from .optim import set_schedule
from .prefetch import BatchPrefetcher
from .rundir import checkpoint_dir, list_checkpoints
from .sampler import TokenStream, WeightedMultiDatasetSampler
from .schedule import Schedule, describe_schedule, make_schedule
from .setup import build_training, fingerprint, open_domains
from .validation import Validator

Evaluation = dict[str, dict[str, float]]  # {"loss": {domain: nats/token}, "bpb": {domain: bits/byte}}


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

    Resumes from the run's latest checkpoint. Returns 0 when done, 1 when the loss became NaN/inf (the
    message names the step and the last checkpoint). Run under torchrun for DDP. User errors raise
    ``UserError``. ``plan_only`` prints the derived numbers (for WORLD_SIZE ranks) and trains nothing.
    ``wandb``: WandbLogger's arguments (None: off); ``hellaswag``: ``eval.hellaswag_*`` fields that
    replace the config's.
    """
    # --- Resolve: the configs, the schedule (from them alone), the phase's end step --------------------
    cfg, model_cfg = load_curriculum(config_path)
    cfg = cfg.with_eval(hellaswag or {})
    schedule = make_schedule(cfg, model_cfg, path=config_path)
    if plan_only:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        lines = describe_schedule(cfg, schedule, model_cfg.num_params())
        layout = make_layout(schedule, cfg.batch, world, path=config_path)
        lines.insert(2, layout.describe(schedule, auto=cfg.batch.micro_batch_size == "auto"))
        print("\n".join(lines))
        return 0
    if wandb:
        from .wandb_log import require_wandb

        require_wandb()  # one clear line, before any process group or model
    run_dir = Path(out_dir) / cfg.name
    end = phase_end_step(cfg, schedule, run_dir, phase)  # fails at once, before any process group or model
    lock = contextlib.ExitStack()  # one writer per run directory: rank 0 writes, rank 0 holds the lock
    if rank_zero():
        lock.enter_context(output_lock(run_dir, "pretrain"))
        if cfg.eval.hellaswag_path:  # downloaded once, before any rank waits on another
            ensure_data(cfg.eval.hellaswag_path)
    dist = setup_distributed(device)
    run, together = None, False
    try:
        run = Run(
            cfg, model_cfg, schedule, dist, run_dir, config_path=config_path, peak_tflops=peak_tflops, wandb=wandb
        )
        run.resume(end, allow_changes)
        if run.state.step < end:
            run.train(end)
        else:
            run.log.say(
                f"nothing to do: {run_dir} is at step {run.state.step}, "
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
        if run is not None:
            run.log.close()
        teardown(dist, together)
        lock.close()


def phase_end_step(cfg: CurriculumConfig, schedule: Schedule, run_dir: Path, phase: str | None) -> int:
    """The end step of ``phase`` (None: of the run); a phase after the first needs a checkpoint at or beyond
    its first step (the previous phase's final one), else a ``UserError``."""
    if phase is None:
        return schedule.num_steps
    i = cfg.phase_index(phase)
    start, end = schedule.phase_steps[i]
    ckpts = list_checkpoints(run_dir)
    if i > 0 and (not ckpts or ckpts[-1][0] < start):
        prev = cfg.phases[i - 1].name
        raise UserError(
            f"phase '{phase}' continues from the final checkpoint of phase '{prev}' (step {start}), and "
            f"{checkpoint_dir(run_dir)} has none: run phase '{prev}' first "
            f"(make pretrain-curriculum-phase-{prev}, or chinchilla pretrain --phase {prev})"
        )
    return end


def lr_factor(s: Schedule, step: int) -> float:
    """The share of each group's peak lr at optimiser step ``step`` (0-based) of ``s.num_steps``: a function of
    the step alone, so phase B started on its own computes the lr of an unbroken run.

    Warmup: linear from 1/warmup to 1 over ``warmup_steps``. Then ``cosine``: half a cosine from 1 down to
    ``min_lr_ratio`` at the last step; ``wsd``: 1 until ``decay_start_step``, then linear down to
    ``min_lr_ratio`` at the last step.
    """
    floor = s.min_lr_ratio
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    last = s.num_steps - 1
    if s.kind == "cosine":
        frac = min(1.0, (step - s.warmup_steps) / max(1, last - s.warmup_steps))
        return floor + 0.5 * (1.0 - floor) * (1.0 + math.cos(math.pi * frac))
    start = max(s.decay_start_step, s.warmup_steps)
    if step < start:
        return 1.0
    return 1.0 - (1.0 - floor) * min(1.0, (step - start) / max(1, last - start))


@dataclass
class LoopState:
    """What the loop updates, beside the model, the optimiser and the sampler (the data position)."""

    step: int = 0  # optimiser steps done
    phase: int = -1  # the phase of the last step trained (for the log)
    boundary_evals: dict[str, Evaluation] = field(default_factory=dict)  # phase -> validation at its end
    last_eval: Evaluation = field(default_factory=dict)  # the latest validation


class Run:
    """One rank's view of a curriculum run stored in ``run_dir``."""

    def __init__(
        self,
        cfg: CurriculumConfig,
        model_cfg: ModelConfig,
        schedule: Schedule,
        dist: Dist,
        run_dir: Path,
        *,
        config_path: str | Path = "",
        peak_tflops: float | None = None,
        wandb: dict[str, Any] | None = None,
    ):
        self.cfg, self.model_cfg, self.schedule, self.dist, self.run_dir = cfg, model_cfg, schedule, dist, Path(run_dir)
        self.state = LoopState()

        # --- Open the data: bad data fails before any GPU work; the sampler holds the data position ------
        domains = open_domains(cfg.domains(), model_cfg, config_path, model_path=cfg.model)
        streams = {name: TokenStream(ds.shards("train")) for name, ds in domains.items()}
        mix = schedule.mixture  # every source's target weight at every sequence of the run
        self.sampler = WeightedMultiDatasetSampler(
            mix.names, [streams[n] for n in mix.names], mix, context=schedule.context, seed=cfg.seed
        )
        self.fingerprint = fingerprint(cfg, model_cfg, domains)

        # --- Build: the layout ("auto" probed before the seed is set: the probe draws random tokens) ----
        build = partial(build_training, model_cfg, cfg.optimizer, dist.device, speed=cfg.speed, dtype=cfg.dtype)
        probes: list[str] = []
        self.layout = resolve_layout(
            schedule, cfg.batch, dist, build, model_cfg.vocab_size, path=config_path, log=probes.append
        )
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        built = build(compile_=cfg.compile)
        self.raw, self.optimizer, self.autocast = built.raw, built.optimizer, built.autocast
        self.model = wrap_ddp(built.model, dist, cfg.speed)
        micro = self.layout.micro_batch_size
        self.validator = Validator(
            domains, context=schedule.context, max_tokens=cfg.eval.tokens_per_source, micro_batch_size=micro, dist=dist
        )
        self.hellaswag = training_hook(cfg.eval, model_cfg.block_size, dist, self.fingerprint["tokenizer"], micro)
        self.log = MetricsLog(self.run_dir, dist.is_main, wandb=wandb)
        if cfg.batch.micro_batch_size == "auto":
            self.log.say(f"micro_batch_size auto -> {micro} ({'; '.join(probes) or 'CPU rule'})")
        card = peak_tflops * 1e12 if peak_tflops else peak_flops(dist.device)
        self.peak = card * dist.world_size if card else None  # tokens/s below are global: every card's peak
        self.flops_per_token = model_cfg.flops_per_token()
        self.pending = PendingSteps()
        self.rate = RateMeter()
        self.batches = BatchPrefetcher(dist.device)

    # --- Resume ---------------------------------------------------------------------------------------
    def resume(self, end: int, allow_changes: bool = False) -> None:
        """Load the latest intact checkpoint, unless it is already at or past ``end``."""
        ckpts = list_checkpoints(self.run_dir)
        if ckpts and ckpts[-1][0] >= end:
            self.state.step = ckpts[-1][0]  # nothing left to train here: no need to load it
        elif ckpts:
            path, saved = latest_intact([p for _, p in ckpts])  # a corrupt latest one: the one before it
            if path != ckpts[-1][1]:
                self.log.say(f"warning: {ckpts[-1][1].name} fails its checksum; resuming from {path.name}")
            self.load(path, saved, allow_changes)

    def load(self, path: Path, saved: TrainState, allow_changes: bool = False) -> None:
        diffs = check_fingerprint(saved.fingerprint, self.fingerprint, path, allow_changes)
        if diffs:
            self.log.say(f"warning: resuming {path.name} despite a different {', '.join(diffs)} (--allow_changes)")
        self.raw.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        step = int(saved.step)
        self.state = LoopState(step, self.schedule.phase_at(step - 1) if step else -1, saved.boundary_evals)
        torch.set_rng_state(saved.rng["torch"])
        if self.dist.device.type == "cuda" and "cuda" in saved.rng:
            torch.cuda.set_rng_state(saved.rng["cuda"])
        phase_start = lambda i: self.schedule.phase_steps[i][0] * self.schedule.sequences_per_step  # noqa: E731
        self.sampler.load_state_dict(run_wide_sampler_state(saved, self.sampler.names, phase_start, path))
        self.log.say(f"resumed {path} at step {step}")

    # --- Training loop --------------------------------------------------------------------------------
    def train(self, end: int) -> None:
        """Train from the current step to ``end`` with evaluations, checkpoints and phase summaries."""
        s, lay, cfg, st = self.schedule, self.layout, self.cfg, self.state
        n = self.model_cfg.num_params()
        self.log.write(
            {
                "type": "start",
                "step": st.step,
                "end_step": end,
                "world_size": lay.world_size,
                "ddp": self.dist.enabled,
                "micro_batch_size": lay.micro_batch_size,
                "grad_accum": lay.grad_accum,
                "tokens_per_step": s.tokens_per_step,
                "total_steps": s.num_steps,
                "phase_steps": [list(p) for p in s.phase_steps],
                "num_params": n,
                "time": time.time(),
            }
        )
        self.log.say(
            f"{self.model_cfg.name}: {n:,} parameters; {s.tokens_per_step:,} tokens/step = {lay.micro_batch_size} "
            f"seq x {s.context} tokens x {lay.grad_accum} accum x {lay.world_size} ranks; steps {st.step}..{end} "
            f"of {s.num_steps}"
        )
        self.rate.reset()
        while st.step < end:
            i = s.phase_at(st.step)
            if st.phase != i:
                st.phase = i
                self.log.write({"type": "phase_start", "step": st.step, "phase": cfg.phases[i].name})
            self.step(read_ahead=cfg.speed.prefetch and st.step + 1 < end)  # never past this invocation
            phase_end = st.step == s.phase_steps[i][1]
            if st.step % cfg.log_interval_steps == 0 or phase_end or st.step == end:
                self.flush(end)
            if st.step % cfg.eval.interval_steps == 0 or phase_end:
                self.evaluate()
            if phase_end:
                self.finish_phase(i)
            elif st.step % cfg.checkpoint.interval_steps == 0:
                self.save()
        self.batches.close()  # an exception leaves at most one read to finish; the thread ends with the run

    def step(self, read_ahead: bool = False) -> None:
        """One optimiser step over the global batch; no host synchronisation. ``read_ahead``: start reading
        the next step's batch in the background thread."""
        lay, dev, opt = self.layout, self.dist.device, self.cfg.optimizer
        factor = lr_factor(self.schedule, self.state.step)
        set_schedule(self.optimizer, factor, self.state.step, opt)
        n, rank, world = self.schedule.sequences_per_step, self.dist.rank, self.dist.world_size
        picks = self.sampler.take(n, rank, world)  # the sampler now holds the state a checkpoint after this step saves
        batch = self.batches.get(self.sampler, picks)  # read ahead during the step before, or now
        if read_ahead:
            self.batches.ahead(self.sampler, self.sampler.peek(n, rank, world))  # overlaps this step's passes
        if dev.type == "cuda":
            batch = batch.to(dev, non_blocking=True)
        total = torch.zeros((), device=dev)
        mb = lay.micro_batch_size
        for m in range(lay.grad_accum):
            chunk = batch[m * mb : (m + 1) * mb]
            last = m == lay.grad_accum - 1
            with self.model.no_sync() if self.dist.enabled and not last else contextlib.nullcontext():
                with self.autocast():
                    loss = self.model(chunk[:, :-1], chunk[:, 1:])
                (loss / lay.grad_accum).backward()
            total += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), opt.grad_clip or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending.add(self.state.step, opt.peak_lr * factor, total / lay.grad_accum, norm)
        self.state.step += 1
        self.rate.tick()

    def flush(self, end: int) -> None:
        """Log the pending steps (one all-reduce of their losses); ``NonFiniteLoss`` on NaN/inf."""
        rows = self.pending.gather(partial(all_reduce_mean, d=self.dist))
        if not rows:
            return
        sec = self.rate.seconds_per_step()
        tok_s = self.schedule.tokens_per_step / sec
        m = mfu(self.flops_per_token, tok_s, self.peak)
        phase = self.cfg.phases[self.state.phase].name
        for k, (step, lr, loss, norm) in enumerate(rows):
            rec = {"type": "train", "step": step, "loss": loss, "lr": lr, "grad_norm": norm}
            if k == len(rows) - 1:
                sampler = self.sampler
                rec.update(
                    tokens_per_s=tok_s,
                    mfu=m,
                    tokens_seen=self.tokens_seen(),
                    # the mixture's weight of each source at the last sequence drawn (the report's target)
                    target_weights=dict(zip(sampler.names, sampler.mixture.weights_at(sampler.position - 1))),
                    phase=phase,
                )
            self.log.write(rec)
        for ev in self.sampler.epoch_events:
            self.log.write({"type": "epoch", "step": self.state.step, **ev})
            self.log.say(f"source '{ev['source']}' exhausted: starting epoch {ev['epoch']} (reshuffled)")
        self.sampler.epoch_events.clear()
        _, lr, loss, norm = rows[-1]
        self.log.say(
            f"[{phase}] step {self.state.step}/{self.schedule.num_steps} loss {loss:.4f} lr {lr:.2e} gnorm {norm:.3f} "
            f"{tok_s:,.0f} tok/s"
            + (f" mfu {100 * m:.1f}%" if m is not None else "")
            + f" eta {format_duration(sec * (end - self.state.step))}"
        )
        self.rate.reset()

    def tokens_seen(self) -> dict[str, int]:
        """Training tokens (inputs) drawn from each source over all phases."""
        return {k: v * self.schedule.context for k, v in self.sampler.consumed().items()}

    # --- Evaluation, phase ends, checkpoints ------------------------------------------------------------
    def evaluate(self) -> Evaluation:
        """Validation ({"loss": nats/token, "bpb": bits/byte} per domain) and HellaSwag when configured."""
        result = self.validator.evaluate(self.raw, self.autocast)
        bpb, step = result["bpb"], self.state.step
        self.log.write({"type": "validation", "step": step, **result, "bpb_mean": sum(bpb.values()) / len(bpb)})
        self.log.say(
            f"validation at step {step} (nats/token, bits/byte): "
            + ", ".join(f"{k} {v:.4f} {bpb[k]:.4f}" for k, v in result["loss"].items())
        )
        self.state.last_eval = result
        if self.hellaswag is not None:
            hs = self.hellaswag.evaluate(self.raw, self.autocast)
            self.log.write({"type": "hellaswag", "step": step, **hs})
            self.log.say(
                f"hellaswag at step {step}: acc_norm {hs['acc_norm']:.4f} acc {hs['acc']:.4f} ({hs['num_items']} items)"
            )
        self.rate.reset()
        return result

    def finish_phase(self, i: int) -> None:
        """The boundary's validation and what the phase changed on every domain; the phase's final checkpoint."""
        name, st = self.cfg.phases[i].name, self.state
        st.boundary_evals[name] = {unit: dict(v) for unit, v in st.last_eval.items()}
        phases = [(p.name, [src.name for src in p.sources]) for p in self.cfg.phases]
        record = transition_record(phases, i, st.boundary_evals, st.step)
        self.log.write(record)
        self.log.say(describe_transition(record))
        self.save(final_of=name)

    def save(self, final_of: str | None = None) -> None:
        """Checkpoint this step (rank 0 writes, the others wait); pending losses are checked first."""
        self.flush(self.schedule.num_steps)
        save_on_rank_zero(self.dist, partial(self._write_checkpoint, final_of), self.state.step)
        self.rate.reset()

    def _write_checkpoint(self, final_of: str | None) -> None:
        """Rank 0: this step's ``TrainState``, written atomically, and its ``checkpoint`` record."""
        rng = {"torch": torch.get_rng_state()}
        if self.dist.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.dist.device)
        saved = TrainState(
            step=self.state.step,
            model=self.raw.state_dict(),
            optimizer=self.optimizer.state_dict(),
            sampler={"phase": self.state.phase, **self.sampler.state_dict()},  # the data position; phase: for readers
            consumed=self.sampler.consumed(),
            tokens_seen=self.tokens_seen(),
            boundary_evals=self.state.boundary_evals,
            rng=rng,
            fingerprint=self.fingerprint,
            world_size=self.dist.world_size,
            model_config=self.model_cfg.model_dump(),
        )
        path = save_checkpoint(self.run_dir, saved, keep_last=self.cfg.checkpoint.keep_last, final_of=final_of)
        self.log.write({"type": "checkpoint", "step": self.state.step, "path": str(path)})
