"""GPT-2 small in plain PyTorch: SDPA attention, tied embeddings, padded vocabulary.

Same layout and initialisation as GPT-2 / nanoGPT (weights N(0, 0.02), the
residual projections scaled by 1/sqrt(2·n_layer)), so 124M means GPT-2's 124M.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .loss import chunked_cross_entropy


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.c_proj.residual_scale = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.c_proj.residual_scale = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx, targets)`` returns the mean cross-entropy.

    The output head shares the token embedding's weight. Logits cover the padded
    vocabulary for speed, but the loss is taken over the real ``vocab_size``
    columns only, so padding never changes it. ``cross_entropy``: "sliced" (logits,
    then ``F.cross_entropy``) or "chunked" (``model/loss.py``: no B x T x V tensor).
    """

    def __init__(self, cfg: ModelConfig, cross_entropy: str = "sliced"):
        super().__init__()
        self.cfg = cfg
        self.cross_entropy = cross_entropy
        self.wte = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        std = 0.02
        if isinstance(m, nn.Linear):
            if getattr(m, "residual_scale", False):
                std /= math.sqrt(2 * self.cfg.n_layer)
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)

    def num_params(self) -> int:
        """Parameters actually held, minus the vocabulary padding rows (equals ``cfg.num_params()``)."""
        held = sum(p.numel() for p in self.parameters())  # tied weight counted once
        return held - (self.cfg.padded_vocab_size - self.cfg.vocab_size) * self.cfg.n_embd

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """``idx``, ``targets``: (B, T) int64. Returns the loss (scalar) or, without targets, logits."""
        t = idx.size(1)
        assert t <= self.cfg.block_size, f"sequence of {t} tokens > block_size {self.cfg.block_size}"
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        v = self.cfg.vocab_size
        if targets is not None and self.cross_entropy == "chunked":
            h = self.ln_f(x)
            return chunked_cross_entropy(h.reshape(-1, h.size(-1)), self.lm_head.weight, targets.reshape(-1), v)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits[..., :v]
        return F.cross_entropy(logits[..., :v].reshape(-1, v), targets.reshape(-1))
