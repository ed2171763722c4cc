"""Validation loss on each domain's held-out split, shared among the ranks: nats per token and bits per byte.

Bits per byte (nanochat's ``evaluate_bpb``) = summed token losses (nats) / (ln 2 x the UTF-8 bytes the
target tokens decode to), end-of-text counting 0 bytes: unlike nats per token it does not depend on the
tokenizer, so runs with different vocabularies compare. nanochat also leaves the 0-byte targets' losses out
of the sum; the model gives a window's mean loss only, so here they stay in it (docs/training.md).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np
import torch

from ..data.layout import TOKEN_BYTES_NAME
from ..data.reader import PreparedDataset
from ..errors import UserError
from .distributed import Dist, all_reduce_sum
from .sampler import TokenStream

# What ``Validator.evaluate`` returns: {"loss": {domain: nats/token}, "bpb": {domain: bits/byte}}
Evaluation = dict[str, dict[str, float]]


def shared_token_bytes(datasets: dict[str, PreparedDataset]) -> np.ndarray:
    """The bytes-per-token table every dataset carries (``PreparedDataset.token_bytes``); datasets whose
    tables differ (another tokenizer) are a ``UserError`` naming both."""
    first_name, first = next(iter(datasets.items()))
    table = first.token_bytes()
    for name, ds in datasets.items():
        if not np.array_equal(ds.token_bytes(), table):
            raise UserError(
                f"source '{name}' has another {TOKEN_BYTES_NAME} than '{first_name}' ({first.path}): the sources "
                "must come from one tokenizer",
                path=ds.path / TOKEN_BYTES_NAME,
            )
    return table


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
        table = shared_token_bytes(datasets)  # after the shards: a bad shard is named first
        # UTF-8 bytes of this rank's target tokens per domain: fixed, so counted once on the host.
        self.num_bytes = {name: int(table[rows[:, 1:]].sum(dtype=np.int64)) for name, rows in self.windows.items()}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, autocast: Callable[[], contextlib.AbstractContextManager]) -> Evaluation:
        """Per domain over all ranks' windows: mean next-token cross-entropy (nats/token) and bits per byte."""
        was_training = model.training
        model.eval()
        device = self.dist.device
        sums = torch.zeros(len(self.windows), 3, dtype=torch.float64, device=device)  # (loss x tokens, tokens, bytes)
        sums[:, 2] = torch.tensor(list(self.num_bytes.values()), dtype=torch.float64)
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
        nats, tokens, num_bytes = sums.T.tolist()
        return {
            "loss": {d: s / t for d, s, t in zip(self.windows, nats, tokens)},
            # no byte at all (every target a special token): no rate to give
            "bpb": {d: s / (math.log(2) * b) if b else math.nan for d, s, b in zip(self.windows, nats, num_bytes)},
        }
