"""The training loop of a curriculum run: phases, evaluation, checkpoints, resume.

Hot path per optimiser step: draw the rank's sequences (integer bookkeeping;
their memory-mapped reads were done by a background thread during the step
before, ``speed.prefetch``), copy them to the device (pinned, non-blocking on
CUDA), ``grad_accum`` forward/backward passes, clip, the optimiser step. Losses and
gradient norms stay on the device until the log interval, where one
all-reduce and one ``tolist`` bring them to the host: no per-step sync.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import UserError
from ..hellaswag.run import training_hook
from ..model.config import ModelConfig
from .checkpoint import TrainState, check_fingerprint, latest_intact, list_checkpoints, save_checkpoint
from .config import CurriculumConfig, RunPlan, make_plan, plan_mixture
from .distributed import Dist, all_reduce_sum
from .metrics import MetricsLog, RateMeter, format_duration, mfu, peak_flops, transition_summary
from .microbatch import resolve_micro_batch
from .optim import set_schedule
from .prefetch import BatchPrefetcher
from .sampler import TokenStream, WeightedMultiDatasetSampler
from .schedule import lr_factor
from .setup import build_training, fingerprint, open_domains
from .validation import Validator


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the run stops before writing any later checkpoint."""


def check_phase_ready(cfg: CurriculumConfig, plan: RunPlan, run_dir: Path, phase: str | None) -> int:
    """The end step of ``phase`` (None: of the run); a phase after the first needs a checkpoint
    at or beyond its first step (the previous phase's final one), else a ``UserError``."""
    if phase is None:
        return plan.total_steps
    i = cfg.phase_index(phase)
    start, end = plan.phase_steps[i]
    ckpts = list_checkpoints(run_dir)
    if i > 0 and (not ckpts or ckpts[-1][0] < start):
        prev = cfg.phases[i - 1].name
        raise UserError(
            f"phase '{phase}' continues from the final checkpoint of phase '{prev}' (step {start}), and "
            f"{Path(run_dir) / 'checkpoints'} has none: run phase '{prev}' first "
            f"(make pretrain-curriculum-phase-{prev}, or chinchilla pretrain --phase {prev})"
        )
    return end


class Trainer:
    """One rank's view of a curriculum run stored in ``run_dir``."""

    def __init__(
        self,
        cfg: CurriculumConfig,
        model_cfg: ModelConfig,
        dist: Dist,
        run_dir: Path,
        *,
        config_path: str | Path = "",
        peak_tflops: float | None = None,
        wandb: dict[str, Any] | None = None,
    ):
        self.cfg, self.model_cfg, self.dist, self.run_dir = cfg, model_cfg, dist, Path(run_dir)
        self.domains = open_domains(cfg, model_cfg, config_path)  # bad data fails before any GPU work
        self.streams = {name: TokenStream(ds.shards("train")) for name, ds in self.domains.items()}
        probes: list[str] = []
        # "auto" resolved before the seed is set (the probe draws random tokens)
        micro = resolve_micro_batch(cfg, model_cfg, dist, path=config_path, log=probes.append)
        self.plan = make_plan(cfg, model_cfg, dist.world_size, path=config_path, micro_batch_size=micro)
        self.fingerprint = fingerprint(cfg, model_cfg, self.domains)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        speed = cfg.speed
        built = build_training(
            model_cfg, cfg.optimizer, dist.device, speed=speed, dtype=cfg.dtype, compile_=cfg.compile
        )
        self.raw, self.optimizer, self.autocast = built.raw, built.optimizer, built.autocast
        self.model = (
            DDP(
                built.model,
                device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
                **({} if speed.ddp_bucket_cap_mb is None else {"bucket_cap_mb": speed.ddp_bucket_cap_mb}),
                static_graph=speed.ddp_static_graph,
                gradient_as_bucket_view=speed.ddp_gradient_as_bucket_view,
            )
            if dist.enabled
            else built.model
        )
        self.validator = Validator(
            self.domains,
            context=self.plan.context,
            max_tokens=cfg.eval.tokens_per_source,
            micro_batch_size=self.plan.micro_batch_size,
            dist=dist,
        )
        self.hellaswag = training_hook(
            cfg.eval, model_cfg.block_size, dist, self.fingerprint["tokenizer"], self.plan.micro_batch_size
        )
        self.log = MetricsLog(self.run_dir, dist.is_main, wandb=wandb)
        if micro is not None:
            self.log.say(f"micro_batch_size auto -> {micro} ({'; '.join(probes) or 'CPU rule'})")
        card = peak_tflops * 1e12 if peak_tflops else peak_flops(dist.device)
        self.peak = card * dist.world_size if card else None  # tokens/s below are global: every card's peak
        self.flops_per_token = model_cfg.flops_per_token()
        self.step = 0
        self.phase = -1  # the phase of the last step trained
        mixture = plan_mixture(cfg, self.plan)  # every source's target weight at every sequence of the run
        self.sampler = WeightedMultiDatasetSampler(
            mixture.names, [self.streams[n] for n in mixture.names], mixture, context=self.plan.context, seed=cfg.seed
        )
        # phase -> {"loss": {domain: nats/token}, "bpb": {domain: bits/byte}} at its end
        self.boundary_evals: dict[str, dict[str, dict[str, float]]] = {}
        self.last_eval: dict[str, dict[str, float]] = {}  # the latest evaluation, same shape
        self._pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self._rate = RateMeter()
        self.batches = BatchPrefetcher(dist.device)

    # --- resume ---------------------------------------------------------------
    def resume(self, phase: str | None, allow_changes: bool = False) -> int:
        """Load the latest checkpoint that this invocation may continue; returns the end step.

        ``phase`` None trains to the end of the run. A phase after the first
        needs the previous phase's final checkpoint (or a later one).
        """
        end = check_phase_ready(self.cfg, self.plan, self.run_dir, phase)
        ckpts = list_checkpoints(self.run_dir)
        if ckpts and ckpts[-1][0] >= end:
            self.step = ckpts[-1][0]  # nothing left to train here: no need to load it
        elif ckpts:
            path, state = latest_intact([p for _, p in ckpts])  # a corrupt latest one: the one before it
            if path != ckpts[-1][1]:
                self.log.say(f"warning: {ckpts[-1][1].name} fails its checksum; resuming from {path.name}")
            self.load(path, allow_changes, state)
        return end

    def load(self, path: Path, allow_changes: bool, state: TrainState | None = None) -> None:
        state = state or TrainState.load(path)
        diffs = check_fingerprint(state.fingerprint, self.fingerprint, path, allow_changes)
        if diffs:
            self.log.say(f"warning: resuming {path.name} despite a different {', '.join(diffs)} (--allow_changes)")
        self.raw.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.step = int(state.step)
        self.phase = self.plan.phase_at(self.step - 1) if self.step else -1
        self.boundary_evals = state.boundary_evals
        torch.set_rng_state(state.rng["torch"])
        if self.dist.device.type == "cuda" and "cuda" in state.rng:
            torch.cuda.set_rng_state(state.rng["cuda"])
        sampler = state.sampler if "used" in state.sampler else self._one_phase_state(state)
        if sampler["names"] != self.sampler.names:
            raise UserError(
                f"was saved with sources {sampler['names']}, the config now has {self.sampler.names}", path=path
            )
        self.sampler.load_state_dict(sampler)
        self.log.say(f"resumed {path} at step {self.step}")

    def _one_phase_state(self, state: TrainState) -> dict[str, Any]:
        """A checkpoint from before the run-wide sampler (one sampler per phase, its position counted from
        the phase's start) as the run-wide sampler's state. Those curricula had hard switches only."""
        old = state.sampler
        start = self.plan.phase_steps[old["phase"]][0] * self.plan.sequences_per_step
        drawn = dict(zip(old["names"], old["drawn"]))
        return {
            "position": start + int(old["position"]),
            "drawn": [int(drawn.get(n, 0)) for n in self.sampler.names],
            "used": [int(state.consumed.get(n, 0)) for n in self.sampler.names],
            "names": self.sampler.names,
        }

    # --- loop -------------------------------------------------------------------
    def train(self, end: int) -> None:
        """Train from ``self.step`` to ``end`` with evaluations, checkpoints and summaries."""
        plan, cfg = self.plan, self.cfg
        self.log.write(
            {
                "type": "start",
                "step": self.step,
                "end_step": end,
                "world_size": self.dist.world_size,
                "ddp": self.dist.enabled,
                "micro_batch_size": plan.micro_batch_size,
                "grad_accum": plan.grad_accum,
                "tokens_per_step": plan.tokens_per_step,
                "total_steps": plan.total_steps,
                "phase_steps": [list(p) for p in plan.phase_steps],
                "num_params": self.model_cfg.num_params(),
                "time": time.time(),
            }
        )
        self.log.say(
            f"{self.model_cfg.name}: {self.model_cfg.num_params():,} parameters; "
            f"{plan.tokens_per_step:,} tokens/step = {plan.micro_batch_size} seq x {plan.context} tokens"
            f" x {plan.grad_accum} accum x {self.dist.world_size} ranks; steps {self.step}..{end} "
            f"of {plan.total_steps}"
        )
        self._rate.reset()
        while self.step < end:
            i = plan.phase_at(self.step)
            if self.phase != i:
                self.phase = i
                self.log.write({"type": "phase_start", "step": self.step, "phase": cfg.phases[i].name})
            self.train_step(read_ahead=cfg.speed.prefetch and self.step + 1 < end)  # never past this invocation
            phase_end = self.step == plan.phase_steps[i][1]
            if self.step % cfg.log_interval_steps == 0 or phase_end or self.step == end:
                self.flush(end)
            if self.step % cfg.eval.interval_steps == 0 or phase_end:
                self.evaluate()
            if phase_end:
                self.finish_phase(i)
            elif self.step % cfg.checkpoint.interval_steps == 0:
                self.save()
        self.batches.close()  # an exception leaves at most one read to finish; the thread ends with the trainer

    def train_step(self, read_ahead: bool = False) -> None:
        """One optimiser step over the global batch; no host synchronisation. ``read_ahead``: start reading
        the next step's batch in the background thread (same phase only)."""
        plan, dev = self.plan, self.dist.device
        opt = self.cfg.optimizer
        factor = lr_factor(self.step, plan, self.cfg.schedule, opt.min_lr_ratio)
        set_schedule(self.optimizer, factor, self.step, opt)
        lr = opt.peak_lr * factor
        n, rank, world = plan.sequences_per_step, self.dist.rank, self.dist.world_size
        picks = self.sampler.take(n, rank, world)  # the sampler now holds the state a checkpoint after this step saves
        batch = self.batches.get(self.sampler, picks)  # read ahead during the step before, or now
        if read_ahead:
            self.batches.ahead(self.sampler, self.sampler.peek(n, rank, world))  # overlaps this step's passes
        if dev.type == "cuda":
            batch = batch.to(dev, non_blocking=True)
        total = torch.zeros((), device=dev)
        mb = plan.micro_batch_size
        for m in range(plan.grad_accum):
            chunk = batch[m * mb : (m + 1) * mb]
            sync = self.model.no_sync() if self.dist.enabled and m < plan.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    loss = self.model(chunk[:, :-1], chunk[:, 1:])
                (loss / plan.grad_accum).backward()
            total += loss.detach()
        clip = self.cfg.optimizer.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._pending.append((self.step, lr, total / plan.grad_accum, norm))
        self.step += 1
        self._rate.tick()

    def flush(self, end: int) -> None:
        """Bring the pending steps' losses to the host (one all-reduce), log them, stop on NaN/inf."""
        if not self._pending:
            return
        losses = all_reduce_sum(torch.stack([p[2] for p in self._pending]).float(), self.dist) / self.dist.world_size
        values = torch.stack([losses, torch.stack([p[3].float() for p in self._pending])]).tolist()
        for (step, _, _, _), loss, norm in zip(self._pending, *values):
            if loss != loss or abs(loss) == float("inf"):
                raise NonFiniteLoss(f"loss is {loss} at step {step}; stopping without writing a checkpoint")
            if norm != norm or abs(norm) == float("inf"):  # the update already spread it to the weights
                raise NonFiniteLoss(f"gradient norm is {norm} at step {step}; stopping without writing a checkpoint")
        sec = self._rate.seconds_per_step()
        tok_s = self.plan.tokens_per_step / sec
        last = len(self._pending) - 1
        for k, ((step, lr, _, _), loss, norm) in enumerate(zip(self._pending, *values)):
            rec = {"type": "train", "step": step, "loss": loss, "lr": lr, "grad_norm": norm}
            if k == last:
                rec.update(
                    tokens_per_s=tok_s,
                    mfu=mfu(self.flops_per_token, tok_s, self.peak),
                    tokens_seen=self.tokens_seen(),
                    # the mixture's weight of each source at the last sequence drawn (the report's target)
                    target_weights=dict(
                        zip(self.sampler.names, self.sampler.mixture.weights_at(self.sampler.position - 1))
                    ),
                    phase=self.cfg.phases[self.phase].name,
                )
            self.log.write(rec)
        for ev in self.sampler.epoch_events:
            self.log.write({"type": "epoch", "step": self.step, **ev})
            self.log.say(f"source '{ev['source']}' exhausted: starting epoch {ev['epoch']} (reshuffled)")
        self.sampler.epoch_events.clear()
        m = mfu(self.flops_per_token, tok_s, self.peak)
        self.log.say(
            f"[{self.cfg.phases[self.phase].name}] step {self.step}/{self.plan.total_steps} "
            f"loss {values[0][last]:.4f} lr {self._pending[last][1]:.2e} gnorm {values[1][last]:.3f} "
            f"{tok_s:,.0f} tok/s"
            + (f" mfu {100 * m:.1f}%" if m is not None else "")
            + f" eta {format_duration(sec * (end - self.step))}"
        )
        self._pending.clear()
        self._rate.reset()

    def tokens_seen(self) -> dict[str, int]:
        """Training tokens (inputs) drawn from each source over all phases."""
        return {k: v * self.plan.context for k, v in self.sampler.consumed().items()}

    # --- evaluation, checkpoints, transitions ---------------------------------
    def evaluate(self) -> dict[str, dict[str, float]]:
        """Validation ({"loss": nats/token, "bpb": bits/byte} per domain) and HellaSwag when configured."""
        result = self.validator.evaluate(self.raw, self.autocast)
        bpb = result["bpb"]
        self.log.write({"type": "validation", "step": self.step, **result, "bpb_mean": sum(bpb.values()) / len(bpb)})
        self.log.say(
            f"validation at step {self.step} (nats/token, bits/byte): "
            + ", ".join(f"{k} {v:.4f} {bpb[k]:.4f}" for k, v in result["loss"].items())
        )
        self.last_eval = result
        if self.hellaswag is not None:
            hs = self.hellaswag.evaluate(self.raw, self.autocast)
            self.log.write({"type": "hellaswag", "step": self.step, **hs})
            self.log.say(
                f"hellaswag at step {self.step}: acc_norm {hs['acc_norm']:.4f} acc {hs['acc']:.4f} "
                f"({hs['num_items']} items)"
            )
        self._rate.reset()
        return result

    def finish_phase(self, i: int) -> None:
        """Record the boundary's validation (nats and bits per byte), write the phase's final checkpoint and
        its summary."""
        name = self.cfg.phases[i].name
        self.boundary_evals[name] = {unit: dict(v) for unit, v in self.last_eval.items()}
        record: dict[str, Any] = {
            "type": "transition",
            "step": self.step,
            "phase": name,
            "validation_loss": self.boundary_evals[name]["loss"],
            "validation_bpb": self.boundary_evals[name]["bpb"],
        }
        if i > 0 and self.cfg.phases[i - 1].name in self.boundary_evals:
            prev = self.cfg.phases[i - 1].name
            earlier = [s.name for p in self.cfg.phases[:i] for s in p.sources]
            record.update(
                after_phase=prev,
                **transition_summary(
                    self.boundary_evals[prev],
                    self.boundary_evals[name],
                    earlier,
                    [s.name for s in self.cfg.phases[i].sources],
                ),
            )
        self.log.write(record)

        def changes(key: str) -> str:  # "d +0.0123 (+0.0178 bpb)", nats first; bits/byte where recorded
            bpb = record.get(f"{key}_bpb", {})
            return ", ".join(
                f"{d} {v:+.4f}" + (f" ({bpb[d]:+.4f} bpb)" if d in bpb else "") for d, v in record[key].items()
            )

        self.log.say(
            f"phase '{name}' done at step {self.step}"
            + (
                f"; validation loss after phase '{record['after_phase']}' -> after '{name}': "
                + ", ".join(f"{d} {record['before'][d]:.4f} -> {v:.4f}" for d, v in record["after"].items())
                + "; forgetting "
                + changes("forgetting")
                + "; gain "
                + changes("gain")
                if "after_phase" in record
                else ""
            )
        )
        self.save(final_of=name)

    def save(self, final_of: str | None = None) -> None:
        """Checkpoint (rank 0 writes, others wait); pending losses are checked first.

        A write that fails on rank 0 (disk full, read-only) stops every rank at once: the ranks
        agree on the outcome with one all-reduce instead of a barrier the others would wait at
        until the process group's timeout (30 minutes).
        """
        self.flush(self.plan.total_steps)
        failure: Exception | None = None
        if self.dist.is_main:
            try:
                self._write_checkpoint(final_of)
            except Exception as err:  # noqa: BLE001 - raised again below, after the other ranks know
                failure = err
        failed = all_reduce_sum(torch.tensor([float(failure is not None)], device=self.dist.device), self.dist)
        if failure is not None:
            raise failure
        if failed.item():
            raise UserError(
                f"rank 0 could not write the checkpoint of step {self.step} (its error says why); this rank stops too"
            )
        self._rate.reset()

    def _write_checkpoint(self, final_of: str | None) -> None:
        """Rank 0: this step's ``TrainState``, written atomically, and its ``checkpoint`` record."""
        rng = {"torch": torch.get_rng_state()}
        if self.dist.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.dist.device)
        state = TrainState(
            step=self.step,
            model=self.raw.state_dict(),
            optimizer=self.optimizer.state_dict(),
            sampler={"phase": self.phase, **self.sampler.state_dict()},
            consumed=self.sampler.consumed(),
            tokens_seen=self.tokens_seen(),
            boundary_evals=self.boundary_evals,
            rng=rng,
            fingerprint=self.fingerprint,
            world_size=self.dist.world_size,
            model_config=self.model_cfg.model_dump(),
        )
        path = save_checkpoint(self.run_dir, state, keep_last=self.cfg.checkpoint.keep_last, final_of=final_of)
        self.log.write({"type": "checkpoint", "step": self.step, "path": str(path)})
