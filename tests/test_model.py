"""The GPT: parameter counts (analytic = built), padding, causality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chinchilla_pipeline.model.config import ModelConfig, load_model_config
from chinchilla_pipeline.model.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("fields", [
    dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=256),
    dict(n_layer=3, n_head=4, n_embd=64, block_size=32, vocab_size=300, bias=False),  # 300 pads to 320
    dict(n_layer=1, n_head=1, n_embd=48, block_size=8, vocab_size=100, pad_vocab_multiple=7),
])
def test_counts_match_built_model(fields):
    cfg = ModelConfig(name="t", **fields)
    model = GPT(cfg)
    held = sum(p.numel() for p in model.parameters())
    padding = (cfg.padded_vocab_size - cfg.vocab_size) * cfg.n_embd
    assert held - padding == cfg.num_params() == model.num_params()
    embeddings = model.wte.weight.numel() - padding + model.wpe.weight.numel()
    assert cfg.num_non_embedding_params() == held - model.wte.weight.numel() - model.wpe.weight.numel()
    assert cfg.num_params() - cfg.num_non_embedding_params() == embeddings


def test_gpt2_small_is_124m_with_gpt2_vocabulary():
    cfg = load_model_config(ROOT / "config/models/gpt2_124m.json")
    assert cfg.vocab_size == 50_257 and cfg.padded_vocab_size % 64 == 0
    model = GPT(cfg)
    assert model.num_params() == cfg.num_params()
    assert 124_000_000 <= cfg.num_params() < 125_000_000
    assert model.lm_head.weight is model.wte.weight  # tied


@pytest.mark.parametrize("path", sorted((ROOT / "config/models").glob("*.json")), ids=lambda p: p.name)
def test_shipped_model_configs_load(path):
    cfg = load_model_config(path)
    assert cfg.num_params() > cfg.num_non_embedding_params() > 0


def test_loss_covers_the_real_vocabulary_only_and_attention_is_causal():
    torch.manual_seed(0)
    cfg = ModelConfig(name="t", n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=250)  # padded to 256
    model = GPT(cfg).eval()
    idx = torch.randint(0, 250, (2, 16))
    tgt = torch.randint(0, 250, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 250)
    assert torch.allclose(model(idx, tgt), F.cross_entropy(logits.reshape(-1, 250), tgt.reshape(-1)))
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 250
    after = model(changed)
    assert torch.equal(after[:, :10], logits[:, :10])  # the past does not see the future
    assert not torch.allclose(after[:, 10:], logits[:, 10:])


def test_invalid_heads_refused():
    with pytest.raises(ValueError, match="multiple of n_head"):
        ModelConfig(name="t", n_embd=30, n_head=4)


def test_flops_per_token_of_gpt2_small_is_nanogpts():
    # nanoGPT's estimate_mfu: 6 N (without the position embedding) + 12 L H Q T.
    cfg = load_model_config(ROOT / "config/models/gpt2_124m.json")
    n = cfg.num_params() - cfg.block_size * cfg.n_embd
    assert cfg.flops_per_token() == 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    assert n == 123_653_376  # GPT-2 small without its 1,024 x 768 position embedding
