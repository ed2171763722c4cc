"""The models (GPT-2's and nanochat's), their config, and ``build_model`` to pick one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

    from .config import ModelConfig


def build_model(cfg: ModelConfig, cross_entropy: str = "sliced") -> nn.Module:
    """``GPT`` (``model/gpt.py``) or ``NanoChat`` (``model/nanochat.py``) per ``cfg.architecture``, on CPU,
    float32, freshly initialised from the current torch RNG state. ``cross_entropy``: "sliced" or "chunked"."""
    if cfg.architecture == "nanochat":
        from .nanochat import NanoChat

        return NanoChat(cfg, cross_entropy=cross_entropy)
    from .gpt import GPT  # imported here: ``model.config`` users need no torch

    return GPT(cfg, cross_entropy=cross_entropy)
