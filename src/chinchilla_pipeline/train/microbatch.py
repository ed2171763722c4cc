"""``"micro_batch_size": "auto"``: the largest micro batch that fits the device.

On CUDA each rank tries the divisors of its sequences per step, largest first,
with one real training step (the run's model, loss path, dtype and optimiser,
eager: a compiled step needs no more memory) and takes the first whose peak
allocation stays under ``HEADROOM`` of the card; every rank then takes the
smallest rank's answer. On CPU memory is not the limit: the CPU rule of
``make_plan`` applies (the largest divisor up to 16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from ..model.config import ModelConfig
from .config import CPU_MICRO_BATCH, CurriculumConfig, micro_batch_candidates, sequences_per_rank
from .distributed import Dist
from .setup import build_training

HEADROOM = 0.90  # of the memory this process can have (free + its own reserved): fragmentation, eval batches
MAX_PROBE = 256  # sequences: the largest micro batch tried (256 x 1,024 tokens; llm.c runs 64 on an H100)


def probe_step(model_cfg: ModelConfig, cfg: CurriculumConfig, device: torch.device, micro: int) -> int | None:
    """Peak bytes allocated by one training step at ``micro`` sequences, or None when it runs out of memory."""
    built = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        built = build_training(model_cfg, cfg.optimizer, device, speed=cfg.speed, dtype=cfg.dtype, compile_="off")
        batch = torch.randint(0, model_cfg.vocab_size, (micro, model_cfg.block_size + 1), device=device)
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


def resolve_micro_batch(
    cfg: CurriculumConfig,
    model_cfg: ModelConfig,
    dist: Dist,
    *,
    path: str | Path = "",
    log: Callable[[str], None] = lambda line: None,
) -> int | None:
    """The micro batch an "auto" config resolves to on ``dist.device`` (None when the config gives a number).

    Uses the CUDA RNG (random probe tokens): call it before seeding the run.
    """
    if cfg.batch.micro_batch_size != "auto":
        return None
    seqs = sequences_per_rank(cfg, model_cfg, dist.world_size, path=path)
    if dist.device.type != "cuda":
        return micro_batch_candidates(seqs, CPU_MICRO_BATCH)[0]
    free, total = torch.cuda.mem_get_info(dist.device)
    budget = HEADROOM * (free + torch.cuda.memory_reserved(dist.device))  # what this process can still have
    found, last = 0, "not probed"
    for micro in micro_batch_candidates(seqs, MAX_PROBE):
        peak = probe_step(model_cfg, cfg, dist.device, micro)
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
    return found
