"""torchrun DDP setup: NCCL on CUDA, gloo on CPU; a single process needs no torchrun.

Under torchrun the process group starts even for one rank (``--nproc_per_node=1``), so that
the DDP path (NCCL on a GPU) runs exactly as it would on eight; a plain ``python`` run has none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UserError

# A collective waits this long for every rank; a failed checkpoint write on rank 0 reaches the others sooner
# (checkpoint.save_on_rank_zero). 30 min: gloo's default, above NCCL's 10.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    launched: bool = False  # started by torchrun: a process group even for one rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """A process group (and DDP) is in use: several ranks, or one rank under torchrun."""
        return self.world_size > 1 or self.launched


def under_torchrun(env: dict[str, str] | None = None) -> bool:
    """True when torchrun (torch.distributed.elastic) started this process: it sets these variables."""
    env = os.environ if env is None else env
    return all(k in env for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"))


def setup_distributed(device: str = "auto") -> Dist:
    """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE; start the process group when launched by torchrun
    (one rank included).

    ``device``: "auto" (CUDA when available), "cuda" or "cpu". Each rank takes
    GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and local >= torch.cuda.device_count():
        raise UserError(
            f"no CUDA device {local} ({torch.cuda.device_count()} visible; torch "
            f"{torch.__version__}, CUDA build: {torch.version.cuda is not None})",
            field="--device",
        )
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    launched = under_torchrun()
    if (world > 1 or launched) and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            device_id=dev if use_cuda else None,
            timeout=PROCESS_GROUP_TIMEOUT,  # NCCL's default is 10 min: rank 0's 1.5 GB checkpoint write may be slower
        )
    return Dist(rank, local, world, dev, launched)


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def teardown(d: Dist, together: bool = True) -> None:
    """Leave the process group; ``together`` first waits for every rank (not after an error on
    one rank only, where the others may never arrive)."""
    if d.enabled and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, d: Dist, speed) -> torch.nn.Module:
    """``model`` under DDP when a process group is in use (``speed``: SpeedConfig's ``ddp_*`` settings), else itself."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(
        model,
        device_ids=[d.local_rank] if d.device.type == "cuda" else None,
        **({} if speed.ddp_bucket_cap_mb is None else {"bucket_cap_mb": speed.ddp_bucket_cap_mb}),
        static_graph=speed.ddp_static_graph,
        gradient_as_bucket_view=speed.ddp_gradient_as_bucket_view,
    )


def all_reduce_mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    return all_reduce_sum(t, d) / d.world_size
