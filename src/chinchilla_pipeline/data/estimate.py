"""Dry run: measure tokens per document on a sample and project what a config will produce."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..tokenizer.encoders import open_encoder, resolve_encoder
from ..tokenizer.load import load_tokenizer
from .config import DatasetConfig
from .sources import iter_documents

# max_samples suggested with 25% headroom over target / mean, so max_tokens is the cap that stops
# the run even when the sample's mean overestimates tokens per document.
SAMPLES_HEADROOM = 1.25
# A config whose buffer holds its whole sample (a source in time order) would read all of it before the first
# document: the estimate reads through this many documents instead, from the start of the stream.
ESTIMATE_BUFFER = 10_000


def estimate(
    cfg: DatasetConfig,
    config_path: str | Path,
    tokenizer_dir: str | Path,
    sample_docs: int = 1_000,
    encoder: str | None = None,
) -> dict[str, Any]:
    """Tokenize the first ``sample_docs`` documents of the stream with ``encoder`` (default gigatoken when
    installed, else HF) and project the config's output."""
    tok = load_tokenizer(tokenizer_dir)
    encode = open_encoder(resolve_encoder(encoder), tok.path.read_text(encoding="utf-8"), parallel=True)
    lens: list[int] = []
    buffer = min(cfg.shuffle_buffer, ESTIMATE_BUFFER)
    sampled = cfg.model_copy(update={"shuffle_buffer": buffer})
    for batch in iter_documents(sampled, config_path, batch_docs=min(sample_docs, 1024)):
        batch = batch[: sample_docs - len(lens)]
        lens.extend((encode(batch)[1] + 1).tolist())  # + 1: the end-of-text before each document
        if len(lens) >= sample_docs:
            break
    arr = np.array(lens, dtype=np.float64)
    mean = float(arr.mean()) if lens else 0.0
    by_samples = cfg.max_samples * mean if cfg.max_samples else math.inf
    by_tokens = cfg.max_tokens or math.inf
    projected = min(by_samples, by_tokens)
    target = cfg.target_tokens or cfg.max_tokens
    return {
        "name": cfg.name,
        "num_sample_docs": len(lens),
        "shuffle_buffer": buffer if buffer < cfg.shuffle_buffer else None,
        "tokens_per_doc_mean": round(mean, 1),
        "tokens_per_doc_p50": float(np.median(arr)) if lens else 0.0,
        "projected_train_tokens": None if math.isinf(projected) else int(projected),
        "binding_cap": ("none" if math.isinf(projected) else "max_samples" if by_samples < by_tokens else "max_tokens"),
        "target_tokens": target,
        "max_samples_for_target": math.ceil(target / mean) if target and mean else None,
        "max_samples_suggested": math.ceil(SAMPLES_HEADROOM * target / mean) if target and mean else None,
    }


def format_estimate(e: dict[str, Any]) -> str:
    def n(x):
        return "unbounded" if x is None else f"{x:,}"

    lines = [
        f"{e['name']}: {e['num_sample_docs']:,} documents sampled, {e['tokens_per_doc_mean']:,} tokens/document "
        f"(median {e['tokens_per_doc_p50']:,.0f})",
        f"  projected training tokens: {n(e['projected_train_tokens'])} (cap that binds: {e['binding_cap']})",
    ]
    if e.get("shuffle_buffer"):
        lines.append(
            f"  read with a shuffle buffer of {e['shuffle_buffer']:,} documents, not the config's: from the start of "
            "the stream, not all of it (prepare reads the whole sample first)"
        )
    if e["target_tokens"]:
        lines.append(
            f"  target {e['target_tokens']:,}: needs max_samples >= {n(e['max_samples_for_target'])}, "
            f"suggested {n(e['max_samples_suggested'])} (x{SAMPLES_HEADROOM} headroom, so max_tokens cuts first)"
        )
    return "\n".join(lines)
