"""``config/models/*.json``: the model's shape, and its parameter and FLOP counts.

Two architectures (``architecture``):

- ``gpt2``: GPT-2 (``model/gpt.py``): learned positions, LayerNorm, GELU MLP of 4 x n_embd, biases,
  head tied to the token embedding.
- ``nanochat``: karpathy/nanochat's model as Hugging Face's ``NanoChatForCausalLM`` computes it
  (``model/nanochat.py``): RoPE, QK-norm, parameter-free RMSNorm, ReLU² MLP, no biases, untied
  head, logits soft-capped by ``cap · tanh(z / cap)``.

Counts are analytic (no model is built) so the planner can size budgets
cheaply; ``tests/test_model.py`` checks them against a built model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from ..schema import StrictModel, load_config

# nanochat's values for the fields GPT-2 has no use for, filled in when a nanochat config leaves them out
# (karpathy/nanochat nanochat/gpt.py as of Dec 2025, the model HF's port computes; rms_norm_eps is HF's default).
NANOCHAT_DEFAULTS: dict[str, Any] = {"logit_softcap": 15.0, "rope_theta": 10_000.0, "norm_eps": 1e-6, "bias": False}
NANOCHAT_ONLY = ("mlp_hidden", "logit_softcap", "rope_theta", "norm_eps")
Architecture = Literal["gpt2", "nanochat"]


class ModelConfig(StrictModel):
    """A decoder-only transformer: GPT-2's (the default) or nanochat's (``architecture: "nanochat"``)."""

    name: str = Field(min_length=1)
    architecture: Architecture = "gpt2"
    n_layer: PositiveInt = 12
    n_head: PositiveInt = 12
    n_embd: PositiveInt = 768
    block_size: PositiveInt = 1024  # context length in tokens
    vocab_size: PositiveInt = 50_257  # the tokenizer's; must equal the shards' manifest vocab_size
    # Embedding rows are padded to a multiple of this for fast matmuls (50,257 -> 50,304);
    # the padding rows are never a target and are left out of every parameter count.
    pad_vocab_multiple: PositiveInt = 64
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm; nanochat none (default false there)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # 0 for pretraining, as llm.c; gpt2 only
    # nanochat only (null on gpt2; filled from NANOCHAT_DEFAULTS when a nanochat config leaves them out):
    mlp_hidden: PositiveInt | None = None  # MLP width; null = 4 x n_embd
    logit_softcap: PositiveFloat | None = None  # 15: logits = 15·tanh(z/15); null on nanochat = no cap
    rope_theta: PositiveFloat | None = None  # RoPE base, 10,000
    norm_eps: PositiveFloat | None = None  # RMSNorm epsilon, 1e-6

    @model_validator(mode="before")
    @classmethod
    def _nanochat_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("architecture") == "nanochat":
            return {**NANOCHAT_DEFAULTS, **data}
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.architecture == "gpt2":
            given = [f for f in NANOCHAT_ONLY if getattr(self, f) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: for architecture 'nanochat' only, leave out of a gpt2 config "
                    "(GPT-2's MLP is 4 x n_embd, its LayerNorm eps 1e-5, no RoPE, no softcap)"
                )
            return self
        if self.bias:
            raise ValueError("architecture 'nanochat' has no biases: set bias to false or leave it out")
        if self.dropout:
            raise ValueError("architecture 'nanochat' has no dropout (NanoChatForCausalLM has none): set dropout to 0")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"nanochat's RoPE needs an even head dimension, got n_embd / n_head = {self.head_dim}")
        return self

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: ``mlp_hidden``, or 4 x n_embd (always 4 x n_embd for gpt2)."""
        return self.mlp_hidden or 4 * self.n_embd

    def num_non_embedding_params(self) -> int:
        """Parameters of the blocks and the final norm: none of the token embedding, position embedding
        or output head (Kaplan's N; GPT-2's head is the tied embedding, nanochat's a matrix of its own)."""
        d, m = self.n_embd, self.mlp_width
        if self.architecture == "nanochat":  # q, k, v, o (d x d each) + fc1, fc2; parameter-free norms
            return self.n_layer * (4 * d * d + 2 * d * m)
        b = int(self.bias)
        ln = 2 * d if self.bias else d  # weight (+ bias)
        attn = d * 3 * d + b * 3 * d + d * d + b * d
        mlp = d * m + b * m + m * d + b * d
        return self.n_layer * (2 * ln + attn + mlp) + ln  # + final LayerNorm

    def num_embedding_params(self) -> int:
        """Token embedding + (gpt2) position embedding or (nanochat) untied head, real vocabulary rows only."""
        if self.architecture == "nanochat":
            return 2 * self.vocab_size * self.n_embd
        return (self.vocab_size + self.block_size) * self.n_embd

    def num_params(self) -> int:
        """All parameters, embeddings included, with the real vocabulary (Chinchilla's N).

        GPT-2 small: 124,439,808 (its head is tied to the token embedding and adds nothing).
        ``config/models/nanochat_124m.json``: 124,294,400 (its head adds 50,257 x 640).
        """
        return self.num_non_embedding_params() + self.num_embedding_params()

    def flops_per_token(self) -> int:
        """Training FLOPs per token, as nanoGPT's ``estimate_mfu`` / nanochat's ``estimate_flops``: 6N + 12·L·H·Q·T.

        N counts the weights that multiply activations: the blocks and the output head (gpt2: the
        tied embedding), not the lookups (nanochat's token embedding, GPT-2's position embedding).
        12·L·H·Q·T is attention's QK^T and AV (forward + backward), with H·Q = n_embd and T = block_size.
        """
        n = self.num_non_embedding_params() + self.vocab_size * self.n_embd
        return 6 * n + 12 * self.n_layer * self.n_embd * self.block_size


def load_model_config(path: str | Path) -> ModelConfig:
    """Read and validate a model config; errors name the file and the field."""
    return load_config(ModelConfig, path)
