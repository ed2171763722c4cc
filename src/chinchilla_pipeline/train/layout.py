"""The run's layout on this machine: ranks, micro batch, gradient accumulation.

The ``Schedule`` (``train/schedule.py``) fixes the sequences per step from the configs alone; the layout
splits them over ``world_size`` ranks x ``grad_accum`` passes of ``micro_batch_size`` sequences, and
never changes the trajectory: the same global batch, so the same steps and lrs.

``"micro_batch_size": "auto"``: on CUDA each rank tries the divisors of its sequences per step, largest
first, with one real training step (the run's model, loss path, dtype and optimiser, eager: a compiled
step needs no more memory) and takes the first whose peak allocation stays under ``HEADROOM`` of the card;
every rank then takes the smallest rank's answer. On CPU memory is not the limit: the largest divisor up
to ``CPU_MICRO_BATCH``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from .config import BatchConfig
from .distributed import Dist
from .schedule import Schedule

CPU_MICRO_BATCH = 16  # "auto" on CPU: the largest divisor of the rank's sequences per step up to this
HEADROOM = 0.90  # of the memory this process can have (free + its own reserved): fragmentation, eval batches
MAX_PROBE = 256  # sequences: the largest micro batch tried (256 x 1,024 tokens; llm.c runs 64 on an H100)


@dataclass(frozen=True)
class Layout:
    """How one step's sequences are split: ``micro_batch_size`` x ``grad_accum`` x ``world_size``."""

    world_size: int
    micro_batch_size: int
    grad_accum: int

    def describe(self, schedule: Schedule, auto: bool) -> str:
        return (
            f"tokens per step: {schedule.tokens_per_step:,} = {self.micro_batch_size} sequences x "
            f"{schedule.context} tokens x {self.grad_accum} accumulation x {self.world_size} ranks"
            + (" (micro_batch_size auto: the CPU rule here; on CUDA the largest that fits)" if auto else "")
        )


def sequences_per_rank(schedule: Schedule, world_size: int, *, path: str | Path = "") -> int:
    """Sequences each rank trains per optimiser step: tokens_per_step / (context x world_size)."""
    per = schedule.context * world_size
    if schedule.tokens_per_step % per:
        raise UserError(
            f"{schedule.tokens_per_step} tokens is not a multiple of context {schedule.context} "
            f"x {world_size} ranks = {per}",
            path=path,
            field="batch.global_batch_tokens",
        )
    return schedule.tokens_per_step // per


def micro_batch_candidates(seqs_per_rank: int, cap: int | None = None) -> list[int]:
    """Every micro batch that divides the rank's sequences per step (so accumulation is whole), largest first."""
    return [d for d in range(min(seqs_per_rank, cap or seqs_per_rank), 0, -1) if seqs_per_rank % d == 0]


def make_layout(
    schedule: Schedule, batch: BatchConfig, world_size: int, *, micro_batch_size: int | None = None, path=""
) -> Layout:
    """The layout for ``world_size`` ranks; ``micro_batch_size`` is an "auto" config's probed value
    (``resolve_layout``), without which "auto" takes the CPU rule. A batch that does not divide: ``UserError``."""
    mb = micro_batch_size or batch.micro_batch_size
    if mb == "auto":
        mb = micro_batch_candidates(sequences_per_rank(schedule, world_size, path=path), CPU_MICRO_BATCH)[0]
    per_micro = mb * schedule.context * world_size
    if schedule.tokens_per_step % per_micro:
        raise UserError(
            f"{schedule.tokens_per_step} tokens is not a multiple of micro_batch_size "
            f"{mb} x context {schedule.context} x {world_size} ranks = {per_micro}",
            path=path,
            field="batch.global_batch_tokens",
        )
    return Layout(world_size=world_size, micro_batch_size=mb, grad_accum=schedule.tokens_per_step // per_micro)


def probe_step(build: Callable, vocab_size: int, context: int, device: torch.device, micro: int) -> int | None:
    """Peak bytes allocated by one eager training step of ``build()`` (``setup.build_training`` with the
    run's recipe) at ``micro`` sequences, or None when it runs out of memory."""
    built = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        built = build(compile_="off")
        batch = torch.randint(0, vocab_size, (micro, context + 1), device=device)
        with built.autocast():
            loss = built.model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        built.optimizer.step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    except torch.cuda.OutOfMemoryError:
        return None
    except RuntimeError as err:  # cuBLAS/cuDNN workspace allocations fail as plain RuntimeErrors
        if "out of memory" in str(err) or "ALLOC_FAILED" in str(err):
            return None
        raise
    finally:
        del built
        torch.cuda.empty_cache()


def resolve_layout(
    schedule: Schedule,
    batch: BatchConfig,
    dist: Dist,
    build: Callable,
    vocab_size: int,
    *,
    path: str | Path = "",
    log: Callable[[str], None] = lambda line: None,
) -> Layout:
    """The layout on ``dist``'s ranks, an "auto" micro batch probed on CUDA (``probe_step``, each probe
    logged). Uses the CUDA RNG (random probe tokens): call it before seeding the run."""
    if batch.micro_batch_size != "auto" or dist.device.type != "cuda":
        return make_layout(schedule, batch, dist.world_size, path=path)
    seqs = sequences_per_rank(schedule, dist.world_size, path=path)
    free, total = torch.cuda.mem_get_info(dist.device)
    budget = HEADROOM * (free + torch.cuda.memory_reserved(dist.device))  # what this process can still have
    found, last = 0, "not probed"
    for micro in micro_batch_candidates(seqs, MAX_PROBE):
        peak = probe_step(build, vocab_size, schedule.context, dist.device, micro)
        last = "out of memory" if peak is None else f"peak {peak / 2**30:.1f} GiB"
        log(f"micro batch {micro}: {last} (budget {budget / 2**30:.1f} GiB of {total / 2**30:.1f} GiB)")
        if peak is not None and peak <= budget:
            found = micro
            break
    if dist.enabled:
        t = torch.tensor(found, device=dist.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        found = int(t.item())
    if not found:  # every rank sees the same MIN: all stop here, before the first step
        raise UserError(
            f"no micro batch fits on {torch.cuda.get_device_name(dist.device)} (on this rank, 1 sequence: {last}; "
            f'budget {budget / 2**30:.1f} GiB): set speed.cross_entropy "chunked" (no B x T x V logits), a '
            "shorter context, or use a card with more memory",
            path=path,
            field="batch.micro_batch_size",
        )
    return make_layout(schedule, batch, dist.world_size, micro_batch_size=found, path=path)
