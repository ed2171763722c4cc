"""Sample text from a checkpoint with the project's own model (no KV cache).

Each new token re-runs the model on the last ``block_size`` tokens: O(T²) per
sample, which is fine for the demo's 128-token context and a few dozen tokens
(a 370K-parameter model writes 64 tokens in well under a second on a CPU).
Sampling draws from one ``torch.Generator`` seeded by ``seed``, so the same
seed, prompt and checkpoint give the same text.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import UserError
from .trained import TrainedModel, load_trained


@torch.no_grad()
def sample_tokens(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    block_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + max_new_tokens).

    ``temperature`` 0 or ``top_k`` 1 is greedy decoding (argmax, no randomness).
    Otherwise logits are divided by ``temperature``, all but the ``top_k`` largest
    are dropped (None: keep all), and the next token is drawn from the softmax.
    """
    gen = torch.Generator(device=idx.device).manual_seed(seed)
    greedy = temperature == 0 or top_k == 1
    for _ in range(max_new_tokens):
        logits = model(idx[:, -block_size:])[:, -1, :].float()  # (B, vocab)
        if greedy:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.size(-1):
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def check_options(max_new_tokens: int, temperature: float, top_k: int | None, num_samples: int) -> None:
    if max_new_tokens < 1:
        raise UserError(f"expected at least 1, got {max_new_tokens}", field="--max_new_tokens")
    if not (temperature >= 0 and math.isfinite(temperature)):  # nan fails both
        raise UserError(f"expected a finite number >= 0 (0 = greedy), got {temperature}", field="--temperature")
    if top_k is not None and top_k < 1:
        raise UserError(f"expected >= 1 (1 = greedy), got {top_k}", field="--top_k")
    if num_samples < 1:
        raise UserError(f"expected at least 1, got {num_samples}", field="--num_samples")


def generate_text(
    trained: TrainedModel,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_k: int | None = 40,
    seed: int = 0,
    num_samples: int = 1,
) -> list[str]:
    """``num_samples`` continuations of ``prompt`` (the prompt not repeated).

    The prompt follows an end-of-text token, as every training document does,
    so it reads as the start of a document. A continuation stops at the first
    end-of-text it produces (the model ending the document).
    """
    check_options(max_new_tokens, temperature, top_k, num_samples)
    tok = trained.tokenizer
    ids = [tok.eot_id] + tok.tokenizer.encode(prompt, add_special_tokens=False).ids
    idx = torch.tensor([ids] * num_samples, dtype=torch.long)
    out = sample_tokens(
        trained.model,
        idx,
        max_new_tokens,
        block_size=trained.config.block_size,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
    )
    # Decode prompt and continuation together (a byte-level token may carry the space or the
    # bytes that join them), then drop the prompt's own text.
    head = tok.tokenizer.decode(ids)
    texts = []
    for row in out[:, len(ids) :].tolist():
        if tok.eot_id in row:
            row = row[: row.index(tok.eot_id)]
        texts.append(tok.tokenizer.decode(ids + row)[len(head) :])
    return texts


def generate_from_checkpoint(checkpoint: str | Path, tokenizer: str | Path, prompt: str, **options) -> list[str]:
    """Load ``checkpoint`` (a file or a run directory) and call ``generate_text``."""
    return generate_text(load_trained(checkpoint, tokenizer), prompt, **options)
