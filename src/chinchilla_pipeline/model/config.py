"""``config/models/*.json``: the GPT's shape, and its parameter and FLOP counts.

Counts are analytic (no model is built) so the planner can size budgets
cheaply; ``tests/test_model.py`` checks them against a built model.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt, model_validator

from ..schema import StrictModel, load_config


class ModelConfig(StrictModel):
    """A GPT-2 decoder: pre-LayerNorm blocks, GELU MLP of width 4 x n_embd, tied embeddings."""

    name: str = Field(min_length=1)
    n_layer: PositiveInt = 12
    n_head: PositiveInt = 12
    n_embd: PositiveInt = 768
    block_size: PositiveInt = 1024  # context length in tokens
    vocab_size: PositiveInt = 50_257  # the tokenizer's; must equal the shards' manifest vocab_size
    # Embedding rows are padded to a multiple of this for fast matmuls (50,257 -> 50,304);
    # the padding rows are never a target and are left out of every parameter count.
    pad_vocab_multiple: PositiveInt = 64
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # 0 for pretraining, as llm.c

    @model_validator(mode="after")
    def _check_heads(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    def num_non_embedding_params(self) -> int:
        """Parameters outside the token and position embeddings (Kaplan's N)."""
        d, b = self.n_embd, int(self.bias)
        ln = 2 * d if self.bias else d  # weight (+ bias)
        attn = d * 3 * d + b * 3 * d + d * d + b * d
        mlp = d * 4 * d + b * 4 * d + 4 * d * d + b * d
        return self.n_layer * (2 * ln + attn + mlp) + ln  # + final LayerNorm

    def num_params(self) -> int:
        """All parameters, embeddings included, with the real vocabulary (Chinchilla's N).

        The output head is tied to the token embedding, so it adds nothing.
        GPT-2 small: 124,439,808.
        """
        return self.num_non_embedding_params() + (self.vocab_size + self.block_size) * self.n_embd

    def flops_per_token(self) -> int:
        """Training FLOPs per token, as nanoGPT's ``estimate_mfu``: 6N + 12·L·H·Q·T.

        N counts the weights that multiply activations: all parameters except the
        position embedding (a lookup). 12·L·H·Q·T is attention's QK^T and AV
        (forward + backward), with H·Q = n_embd and T = block_size.
        """
        n = self.num_params() - self.block_size * self.n_embd
        return 6 * n + 12 * self.n_layer * self.n_embd * self.block_size


def load_model_config(path: str | Path) -> ModelConfig:
    """Read and validate a model config; errors name the file and the field."""
    return load_config(ModelConfig, path)
