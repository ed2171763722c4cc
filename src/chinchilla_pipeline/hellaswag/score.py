"""Completion-style HellaSwag scoring, the variant of llm.c and build-nanogpt (``hellaswag.py``).

Each item becomes four rows, context tokens followed by one ending's tokens (the
ending encoded with a leading space, as a continuation of the context). The model
scores every ending token given everything before it; per row:

- ``sum``: the summed cross-entropy (nats) of the ending's tokens;
- ``mean``: ``sum`` / the number of ending tokens.

``acc_norm`` counts the items whose lowest-``mean`` ending is the labelled one,
``acc`` those whose lowest-``sum`` ending is. The published GPT-2 124M figures
(29.4% acc_norm; llm.c's 124M at 10B tokens ~29.9%; GPT-3 124M 33.7%) are
this ``acc_norm``. lm-evaluation-harness's ``hellaswag`` task differs: it
prefixes the activity label, normalises by the ending's length in characters, and
reports GPT-2 124M at 31.1% acc_norm.

No end-of-text token is put before the context (as the references). A row longer
than the model's context keeps the ending whole and drops the context's first
tokens (``truncated`` counts such items). Rows are padded on the right: a causal
model's loss at a position does not depend on what follows it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from .data import Item

Encode = Callable[[str], list[int]]
Logits = Callable[[torch.Tensor], torch.Tensor]  # (rows, T) int64 -> (rows, T, vocab)


@dataclass(frozen=True)
class Rendered:
    """An item's four token rows and, per row, where its ending starts (index of its first token)."""

    rows: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    label: int
    truncated: bool


def render(item: Item, encode: Encode, block_size: int) -> Rendered:
    """The four rows ``context + ending`` of ``item``, each at most ``block_size`` tokens."""
    ctx = encode(item.ctx)
    if not ctx:
        raise ValueError("an item's context encodes to no token")
    rows, starts, truncated = [], [], False
    for ending in item.endings:
        full = encode(" " + ending)
        keep = max(1, min(len(ctx), block_size - len(full)))  # context tokens kept: its tail, at least one
        end = full[: block_size - keep]
        truncated |= keep < len(ctx) or len(end) < len(full)
        rows.append(tuple(ctx[len(ctx) - keep :] + end))
        starts.append(keep)
    return Rendered(tuple(rows), tuple(starts), item.label, truncated)


def ending_losses(
    logits_fn: Logits,
    batch: Sequence[Rendered],
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss (nats) and token count of every ending in ``batch``: two (len(batch), 4) float64 tensors."""
    rows = [r for item in batch for r in item.rows]
    starts = [s for item in batch for s in item.starts]
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)  # True on ending tokens
    for i, (r, s) in enumerate(zip(rows, starts)):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, s : len(r)] = True
    tokens, mask = tokens.to(device), mask.to(device)
    with autocast():
        logits = logits_fn(tokens)
    # Position t predicts token t + 1: the loss of ending token j is read at position j - 1.
    loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    target_mask = mask[:, 1:]
    sums = (loss.view(len(rows), -1) * target_mask).sum(dim=1, dtype=torch.float64)
    counts = target_mask.sum(dim=1).to(torch.float64)
    return sums.view(-1, 4).cpu(), counts.view(-1, 4).cpu()


@dataclass
class Tally:
    """Counts over scored items; ``acc_norm`` is the lowest mean loss, ``acc`` the lowest summed loss."""

    num_items: int = 0
    correct_norm: int = 0
    correct: int = 0
    truncated: int = 0
    predictions: list[tuple[int, int]] = field(default_factory=list)  # (by mean, by sum) per item

    def add(self, batch: Sequence[Rendered], sums: torch.Tensor, counts: torch.Tensor) -> None:
        by_mean = (sums / counts).argmin(dim=1).tolist()
        by_sum = sums.argmin(dim=1).tolist()
        for item, pm, ps in zip(batch, by_mean, by_sum):
            self.num_items += 1
            self.correct_norm += pm == item.label
            self.correct += ps == item.label
            self.truncated += item.truncated
            self.predictions.append((pm, ps))

    def summary(self) -> dict[str, float | int]:
        """acc_norm, acc, their standard errors sqrt(p(1-p)/n), and the counts."""
        n = max(self.num_items, 1)
        acc_norm, acc = self.correct_norm / n, self.correct / n
        return {
            "acc_norm": acc_norm,
            "acc": acc,
            "acc_norm_stderr": math.sqrt(acc_norm * (1 - acc_norm) / n),
            "acc_stderr": math.sqrt(acc * (1 - acc) / n),
            "num_items": self.num_items,
            "correct_norm": self.correct_norm,
            "correct": self.correct,
            "truncated": self.truncated,
        }


def batches(rendered: Sequence[Rendered], items_per_batch: int) -> Iterable[Sequence[Rendered]]:
    for lo in range(0, len(rendered), items_per_batch):
        yield rendered[lo : lo + items_per_batch]


@torch.no_grad()
def score(
    logits_fn: Logits,
    rendered: Sequence[Rendered],
    device: torch.device,
    *,
    items_per_batch: int = 8,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    progress: bool = False,
) -> Tally:
    """Score ``rendered`` items in batches of ``items_per_batch`` x 4 rows; one forward pass per batch."""
    from tqdm import tqdm

    tally = Tally()
    with tqdm(total=len(rendered), unit="item", desc="hellaswag", disable=not progress) as bar:
        for batch in batches(rendered, items_per_batch):
            tally.add(batch, *ending_losses(logits_fn, batch, device, autocast))
            bar.update(len(batch))
            bar.set_postfix(acc_norm=f"{tally.correct_norm / tally.num_items:.4f}")
    return tally
