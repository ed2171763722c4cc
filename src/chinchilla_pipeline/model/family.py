"""One family of models indexed by width, so that a parameter count picks one model.

Depth and heads grow with the width (one layer per 32 of width, at least 2; heads of 16), as
the demo, the curriculum ablation and the IsoFLOP study need models of many sizes of one shape.
Either architecture (``ModelConfig.architecture``) has the same shape: same depth, width and heads,
so the same attention FLOPs; nanochat's members take nanochat's defaults (no biases, MLP 4 x width;
its RoPE needs an even head dimension: 16 is).
"""

from __future__ import annotations

import math

from .config import Architecture, ModelConfig

HEAD_DIM = 16  # small heads keep several heads even at width 32
WIDTHS = range(32, 2049, 16)  # the widths model_for_params chooses from: 32 .. 2,048


def family_config(
    width: int, vocab_size: int, block_size: int, name: str | None = None, architecture: Architecture = "gpt2"
) -> ModelConfig:
    """The family member of a given width: one layer per 32 of width (at least 2), heads of 16."""
    return ModelConfig(
        name=name or (f"gpt_w{width}" if architecture == "gpt2" else f"{architecture}_w{width}"),
        architecture=architecture,
        n_layer=max(2, width // 32),
        n_head=max(1, width // HEAD_DIM),
        n_embd=width,
        block_size=block_size,
        vocab_size=vocab_size,
    )


def model_for_params(
    num_params: float, vocab_size: int, block_size: int, architecture: Architecture = "gpt2"
) -> ModelConfig:
    """The family member whose parameter count (embeddings included) is closest to ``num_params``
    on a log scale."""

    def miss(width: int) -> float:
        return abs(
            math.log(family_config(width, vocab_size, block_size, architecture=architecture).num_params() / num_params)
        )

    return family_config(min(WIDTHS, key=miss), vocab_size, block_size, architecture=architecture)
