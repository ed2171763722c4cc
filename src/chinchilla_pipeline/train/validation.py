"""Validation loss on each domain's held-out split, shared among the ranks."""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch

from ..data.reader import PreparedDataset
from ..errors import UserError
from .distributed import Dist, all_reduce_sum
from .sampler import TokenStream


class Validator:
    """Fixed validation windows per domain: the first ``max_tokens`` of the split in
    non-overlapping windows of T + 1 tokens; window j goes to rank j mod world.
    The same windows at every evaluation, so losses are comparable across steps."""

    def __init__(
        self, datasets: dict[str, PreparedDataset], *, context: int, max_tokens: int, micro_batch_size: int, dist: Dist
    ):
        self.context, self.micro, self.dist = context, micro_batch_size, dist
        self.windows: dict[str, np.ndarray] = {}
        for name, ds in datasets.items():
            stream = TokenStream(ds.shards("validation"))
            n = min(max_tokens // context, (stream.num_tokens - 1) // context)
            if n < 1:
                raise UserError(
                    f"validation split has {stream.num_tokens} tokens, fewer than context + 1 = {context + 1}",
                    path=ds.path,
                )
            mine = range(dist.rank, n, dist.world_size)
            self.windows[name] = (
                np.stack([stream.read(j * context, context + 1) for j in mine])
                if len(mine)
                else np.zeros((0, context + 1), np.int64)
            )

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, autocast: Callable[[], contextlib.AbstractContextManager]
    ) -> dict[str, float]:
        """Mean next-token cross-entropy (nats/token) per domain, over all ranks' windows."""
        was_training = model.training
        model.eval()
        device = self.dist.device
        sums = torch.zeros(len(self.windows), 2, dtype=torch.float64, device=device)  # (loss x tokens, tokens)
        for i, rows in enumerate(self.windows.values()):
            for lo in range(0, rows.shape[0], self.micro):
                batch = torch.from_numpy(rows[lo : lo + self.micro]).to(device, non_blocking=True)
                with autocast():
                    loss = model(batch[:, :-1], batch[:, 1:])
                n = batch.shape[0] * self.context
                sums[i, 0] += loss.double() * n
                sums[i, 1] += n
        all_reduce_sum(sums, self.dist)
        model.train(was_training)
        values = (sums[:, 0] / sums[:, 1]).tolist()
        return dict(zip(self.windows, values))
