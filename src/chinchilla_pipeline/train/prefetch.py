"""``BatchPrefetcher``: the next step's batch read from the shards (and pinned on CUDA) in a background thread.

The trainer takes step k's picks (``WeightedMultiDatasetSampler.take``: the sampler's state moves exactly
as without prefetching, so checkpoints and epoch events stay where they were), gets their batch here, then
hands step k + 1's picks (``peek``: the state does not move) to ``ahead``; that read overlaps step k's
forward and backward passes. A batch read ahead is used only by the step whose sampler and picks it was
read for; any other step (the first one, a resumed run's) reads its own in the calling thread, as with
prefetching off. Either way the rows are the same bytes, so the losses are the same bitwise.

One batch is in flight at most (a queue of one): 124M on one GPU, 512 sequences x 1,025 tokens x 8 bytes
= 4.2 MB of host memory more.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from .sampler import Pick, WeightedMultiDatasetSampler


class BatchPrefetcher:
    """Batches of sampler picks for ``device``: read in the caller's thread, or ahead in one background thread."""

    def __init__(self, device: torch.device):
        self.device = device
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[WeightedMultiDatasetSampler, list[Pick], Future[torch.Tensor]] | None = None

    def _bind(self) -> None:
        if self.device.type == "cuda":  # CUDA's current device is per thread: this rank's card, not card 0
            torch.cuda.set_device(self.device)

    def load(self, sampler: WeightedMultiDatasetSampler, picks: list[Pick]) -> torch.Tensor:
        """The picks' rows (len(picks), T+1) int64 on the host; pinned on CUDA for a non-blocking copy."""
        batch = torch.from_numpy(sampler.read(picks)[0])
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def ahead(self, sampler: WeightedMultiDatasetSampler, picks: list[Pick]) -> None:
        """Start reading ``picks`` in the background thread, for the ``get`` of the next step."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, "batch-prefetch", initializer=self._bind)
        self._ahead = (sampler, picks, self._pool.submit(self.load, sampler, picks))

    def get(self, sampler: WeightedMultiDatasetSampler, picks: list[Pick]) -> torch.Tensor:
        """The batch of ``picks``: the one read ahead when it was read for them, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is sampler and ahead[1] == picks:
            return ahead[2].result()  # waits only when the read is slower than the step it overlapped
        return self.load(sampler, picks)

    def close(self) -> None:
        """Wait for a read in flight and stop the thread (a later ``ahead`` starts another)."""
        self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
