"""nanochat's model (karpathy/nanochat), computing exactly what HF ``NanoChatForCausalLM`` computes.

token embedding -> RMSNorm -> n_layer x [x + o(attn(norm(x))); x + fc2(relu(fc1(norm(x)))²)] -> RMSNorm
-> untied head -> logits ``cap · tanh(z / cap)`` (cap 15). Every RMSNorm is parameter-free:
x · rsqrt(mean(x²) + eps), in float32, cast back. Attention: separate q, k, v and o matrices
(Muon orthogonalises each), RoPE with HF's NanoChat ``rotate_half`` (``cat(x2, -x1)``: nanochat's
own rotation), then RMSNorm of q and k over the head dimension (RoPE before the norm, as both
nanochat and HF), causal SDPA with scale head_dim^-0.5. No biases, no dropout, n_kv_head = n_head.

Initialisation as karpathy/nanochat ``nanochat/gpt.py`` ``_init_weights`` (Oct-Dec 2025, up to commit
e1770a3; 48abd7d then moved to a uniform variant): Linear weights N(0, std) with std = 1/sqrt(fan_in) ·
min(1, sqrt(fan_out / fan_in)) (arXiv:2310.17813), the embedding N(0, 1), the head and both
residual projections (o_proj, fc2) zero. The zeros still train: the head's gradient is
hidden^T · (softmax - one-hot), nonzero from the first step, and once it moves the blocks get theirs.

Same interface as ``model/gpt.py``'s ``GPT``; ``wte`` and ``lm_head`` have ``padded_vocab_size`` rows.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .loss import chunked_cross_entropy


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's ``NanoChatRMSNorm``: no weight, computed in float32, returned in ``x``'s dtype."""
    f = x.float()
    return (f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF NanoChat's (not Llama's ``cat(-x2, x1)``): y = x·cos + rotate_half(x)·sin is nanochat's rotation."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2, -x1), dim=-1)


def rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (block_size, head_dim) float32: inv_freq = 1/θ^(2i/d), each frequency twice (HF's layout)."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    freqs = torch.arange(cfg.block_size, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.n_embd
        self.n_head, self.head_dim, self.eps = cfg.n_head, cfg.head_dim, cfg.norm_eps
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (
            p(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # HF casts them to the activations' dtype (bf16 under autocast)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        q, k = rms_norm(q, self.eps), rms_norm(k, self.eps)  # QK-norm after RoPE
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.n_embd, cfg.mlp_width, bias=False)
        self.fc2 = nn.Linear(cfg.mlp_width, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)).square())  # HF's "relu2"


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(rms_norm(x, self.eps), cos, sin)
        return x + self.mlp(rms_norm(x, self.eps))


class NanoChat(nn.Module):
    """nanochat's decoder; ``forward(idx, targets)`` returns the mean cross-entropy, as ``GPT``.

    Logits are soft-capped (``cfg.logit_softcap``) then, without targets, returned for the real
    ``vocab_size`` columns in float32 (nanochat caps in float32). ``cross_entropy``: "sliced" or
    "chunked" (``model/loss.py``, the cap applied inside each chunk).
    """

    def __init__(self, cfg: ModelConfig, cross_entropy: str = "sliced"):
        super().__init__()
        if cfg.architecture != "nanochat":
            raise ValueError(f"NanoChat builds architecture 'nanochat', got {cfg.architecture!r}")
        self.cfg = cfg
        self.cross_entropy = cross_entropy
        self.wte = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)  # rebuilt from the config: not in checkpoints
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        nn.init.zeros_(self.lm_head.weight)
        for block in self.h:
            nn.init.zeros_(block.self_attn.o_proj.weight)
            nn.init.zeros_(block.mlp.fc2.weight)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            fan_out, fan_in = m.weight.shape
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in)))
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 1.0)

    def num_params(self) -> int:
        """Parameters actually held, minus the vocabulary padding rows of ``wte`` and ``lm_head``
        (equals ``cfg.num_params()``)."""
        held = sum(p.numel() for p in self.parameters())
        return held - 2 * (self.cfg.padded_vocab_size - self.cfg.vocab_size) * self.cfg.n_embd

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """``idx``, ``targets``: (B, T) int64. Returns the loss (scalar) or, without targets, logits."""
        t = idx.size(1)
        assert t <= self.cfg.block_size, f"sequence of {t} tokens > block_size {self.cfg.block_size}"
        eps, cap, v = self.cfg.norm_eps, self.cfg.logit_softcap, self.cfg.vocab_size
        cos, sin = self.cos[:t], self.sin[:t]
        x = rms_norm(self.wte(idx), eps)
        for block in self.h:
            x = block(x, cos, sin)
        x = rms_norm(x, eps)
        if targets is not None and self.cross_entropy == "chunked":
            return chunked_cross_entropy(
                x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1), v, softcap=cap
            )
        logits = self.lm_head(x)[..., :v].float()
        if cap is not None:
            logits = cap * torch.tanh(logits / cap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1))
