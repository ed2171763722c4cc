"""How much of one rank's document stream ``prepare`` takes, and why it stops.

The stream's first ``validation_docs`` documents are the validation split. The
training documents that follow are taken whole while both ``max_samples``
(documents) and ``max_tokens`` (tokens, end-of-text included) allow; the first
document over a cap stops the run, and the manifest names that cap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .config import DatasetConfig

SOURCE_EXHAUSTED = "source_exhausted"


def rank_share(total: int | None, rank: int, world_size: int) -> int | None:
    """This rank's part of a global count: ``total // W`` plus one for the first ``total % W`` ranks."""
    if total is None:
        return None
    return total // world_size + (1 if rank < total % world_size else 0)


@dataclass(frozen=True)
class Caps:
    """One rank's share of the config's caps (``None``: no cap)."""

    max_samples: int | None
    max_tokens: int | None
    validation_docs: int

    @classmethod
    def for_rank(cls, cfg: DatasetConfig, rank: int, world_size: int) -> "Caps":
        return cls(
            rank_share(cfg.max_samples, rank, world_size),
            rank_share(cfg.max_tokens, rank, world_size),
            rank_share(cfg.validation_docs, rank, world_size),
        )

    def validation_take(self, num_val: int, available: int) -> int:
        """How many of the next ``available`` documents still belong to the validation split."""
        return max(0, min(self.validation_docs - num_val, available))

    def train_take(self, num_docs: int, num_tokens: int, lens: np.ndarray) -> tuple[int, str | None]:
        """How many leading documents of ``lens`` (tokens each) fit under both caps, given the
        ``num_docs`` documents and ``num_tokens`` tokens already taken; and the cap that refuses
        the next document (``None`` when all fit)."""
        n = len(lens)
        by_samples = n if self.max_samples is None else min(n, self.max_samples - num_docs)
        by_tokens = (
            n
            if self.max_tokens is None
            else int(np.searchsorted(np.cumsum(lens), self.max_tokens - num_tokens, "right"))
        )
        fit = min(by_samples, by_tokens)
        if fit == n:
            return fit, None
        return fit, "max_samples" if by_samples <= by_tokens else "max_tokens"

    def reason_at_end(self, num_docs: int, num_tokens: int) -> str:
        """Why a stream that ran out stopped: a cap it met exactly, else the source."""
        if self.max_samples is not None and num_docs == self.max_samples:
            return "max_samples"
        if self.max_tokens is not None and num_tokens == self.max_tokens:
            return "max_tokens"
        return SOURCE_EXHAUSTED

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)
