"""The GPT: parameter counts (analytic = built), padding, causality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chinchilla_pipeline.model.config import ModelConfig, load_model_config
from chinchilla_pipeline.model.gpt import GPT
from chinchilla_pipeline.model.loss import CHUNK_ROWS, chunked_cross_entropy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "fields",
    [
        dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=256),
        dict(n_layer=3, n_head=4, n_embd=64, block_size=32, vocab_size=300, bias=False),  # 300 pads to 320
        dict(n_layer=1, n_head=1, n_embd=48, block_size=8, vocab_size=100, pad_vocab_multiple=7),
    ],
)
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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("chunk", [20, CHUNK_ROWS])  # 48 rows: chunks of 20, 20 and 8, or one chunk
def test_chunked_cross_entropy_equals_the_sliced_loss_and_gradients(dtype, chunk):
    cfg = ModelConfig(name="t", n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=300)  # pads to 320
    torch.manual_seed(0)
    sliced = GPT(cfg)
    chunked = GPT(cfg, cross_entropy="chunked")
    chunked.load_state_dict(sliced.state_dict())
    x, y = torch.randint(0, 300, (3, 16)), torch.randint(0, 300, (3, 16))
    losses, grads = [], []
    for model in (sliced, chunked):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            if model is sliced:
                loss = model(x, y)
            else:
                h = model.ln_f(hidden_states(model, x))
                loss = chunked_cross_entropy(h.reshape(48, 32), model.lm_head.weight, y.reshape(-1), 300, chunk)
        loss.backward()
        losses.append(loss.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(losses[1], losses[0], **tol)
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], **tol)
    assert torch.count_nonzero(grads[1]["wte.weight"][300:]) == 0  # padding rows never learn from the head
    torch.testing.assert_close(chunked(x, y), sliced(x, y), rtol=1e-5, atol=1e-6)  # GPT.forward's chunked path


def test_chunked_cross_entropy_without_gradients_is_the_same_loss():
    """Under no_grad (validation) the chunked path skips its gradient work and returns the same loss."""
    cfg = ModelConfig(name="t", n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(cfg, cross_entropy="chunked")
    x, y = torch.randint(0, cfg.vocab_size, (3, 16)), torch.randint(0, cfg.vocab_size, (3, 16))
    with_grad = model(x, y)
    with torch.no_grad():
        without = model(x, y)
    assert with_grad.requires_grad and not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach(), rtol=0, atol=0)


def hidden_states(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The blocks' output, before the final LayerNorm (GPT.forward's first half)."""
    x = model.wte(idx) + model.wpe(torch.arange(idx.size(1)))
    for block in model.h:
        x = block(x)
    return x
