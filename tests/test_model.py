"""The models (GPT-2's, nanochat's): parameter counts (analytic = built), padding, causality, chunked loss;
nanochat's logits against transformers' NanoChatForCausalLM."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chinchilla_pipeline.model import build_model
from chinchilla_pipeline.model.config import ModelConfig, load_model_config
from chinchilla_pipeline.model.gpt import GPT
from chinchilla_pipeline.model.loss import CHUNK_ROWS, chunked_cross_entropy
from chinchilla_pipeline.model.nanochat import NanoChat, rms_norm

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


def _compare_chunked(sliced, chunked, x, y, dtype, chunked_loss):
    """Loss and gradients of ``sliced`` (its forward) and of ``chunked`` through ``chunked_loss(model)``, both
    under ``dtype``'s autocast, asserted equal; returns the chunked loss."""
    losses, grads = [], []
    for model in (sliced, chunked):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(x, y) if model is sliced else chunked_loss(model)
        loss.backward()
        losses.append(loss.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(losses[1], losses[0], **tol)
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], **tol)
    return losses[1], grads[1]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("chunk", [20, CHUNK_ROWS])  # 48 rows: chunks of 20, 20 and 8, or one chunk
def test_chunked_cross_entropy_equals_the_sliced_loss_and_gradients(dtype, chunk):
    cfg = ModelConfig(name="t", n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=300)  # pads to 320
    torch.manual_seed(0)
    sliced = GPT(cfg)
    chunked = GPT(cfg, cross_entropy="chunked")
    chunked.load_state_dict(sliced.state_dict())
    x, y = torch.randint(0, 300, (3, 16)), torch.randint(0, 300, (3, 16))

    def loss(model):
        h = model.ln_f(hidden_states(model, x))
        return chunked_cross_entropy(h.reshape(48, 32), model.lm_head.weight, y.reshape(-1), 300, chunk)

    _, grads = _compare_chunked(sliced, chunked, x, y, dtype, loss)
    assert torch.count_nonzero(grads["wte.weight"][300:]) == 0  # padding rows never learn from the head
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


# --- nanochat (model/nanochat.py) ---

NANO = dict(architecture="nanochat", n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=300)  # pads to 320


def nanochat_cfg(**fields) -> ModelConfig:
    return ModelConfig(name="t", **{**NANO, **fields})


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter N(0, 0.5): nanochat's zero head and projections would hide most of the function."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


@pytest.mark.parametrize(
    "fields",
    [
        {},
        dict(n_layer=3, n_head=4, n_embd=64, vocab_size=256, mlp_hidden=96),  # 256: no padding
        dict(n_layer=1, n_head=1, n_embd=48, vocab_size=100, pad_vocab_multiple=7),
    ],
)
def test_nanochat_counts_match_built_model(fields):
    cfg = nanochat_cfg(**fields)
    model = build_model(cfg)
    assert isinstance(model, NanoChat) and model.lm_head.weight is not model.wte.weight  # untied
    held = sum(p.numel() for p in model.parameters())
    padding = 2 * (cfg.padded_vocab_size - cfg.vocab_size) * cfg.n_embd  # embedding and head rows
    assert held - padding == cfg.num_params() == model.num_params()
    assert cfg.num_non_embedding_params() == held - model.wte.weight.numel() - model.lm_head.weight.numel()
    assert cfg.num_params() - cfg.num_non_embedding_params() == 2 * cfg.vocab_size * cfg.n_embd
    matmul = held - model.wte.weight.numel() - (cfg.padded_vocab_size - cfg.vocab_size) * cfg.n_embd
    assert cfg.flops_per_token() == 6 * matmul + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    assert all(p.dim() == 2 for n, p in model.named_parameters() if n.startswith("h."))  # Muon's matrices
    assert {n for n, _ in model.named_parameters() if not n.startswith("h.")} == {"wte.weight", "lm_head.weight"}


def test_nanochat_124m_is_gpt2_smalls_size():
    cfg = load_model_config(ROOT / "config/models/nanochat_124m.json")
    assert (cfg.architecture, cfg.n_layer, cfg.n_embd, cfg.head_dim, cfg.mlp_width) == ("nanochat", 12, 640, 128, 2624)
    assert cfg.num_params() == 124_294_400 and cfg.num_non_embedding_params() == 59_965_440  # as its _comment says
    assert abs(cfg.num_params() / 124_439_808 - 1) < 0.01
    assert build_model(cfg).num_params() == cfg.num_params()


def test_nanochat_config_rules():
    cfg = nanochat_cfg()
    assert (cfg.bias, cfg.logit_softcap, cfg.rope_theta, cfg.norm_eps, cfg.mlp_width) == (False, 15.0, 1e4, 1e-6, 128)
    assert ModelConfig.model_validate(cfg.model_dump()) == cfg  # a checkpoint's model_config round trip
    gpt2 = ModelConfig(name="t")
    assert ModelConfig.model_validate(gpt2.model_dump()) == gpt2 and gpt2.rope_theta is None
    assert nanochat_cfg(logit_softcap=None).logit_softcap is None  # explicitly uncapped
    with pytest.raises(ValueError, match="rope_theta, norm_eps: for architecture 'nanochat' only"):
        ModelConfig(name="t", rope_theta=1e4, norm_eps=1e-5)
    with pytest.raises(ValueError, match="mlp_hidden: for architecture 'nanochat' only"):
        ModelConfig(name="t", mlp_hidden=64)
    with pytest.raises(ValueError, match="no biases"):
        nanochat_cfg(bias=True)
    with pytest.raises(ValueError, match="no dropout"):
        nanochat_cfg(dropout=0.1)
    with pytest.raises(ValueError, match="even head dimension"):
        nanochat_cfg(n_embd=30, n_head=2)


def nanochat_hf(cfg: ModelConfig, model: NanoChat):
    """transformers' NanoChatForCausalLM with ``model``'s weights (padding rows dropped), written out here by hand."""
    from transformers import NanoChatConfig, NanoChatForCausalLM

    hf_cfg = NanoChatConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.mlp_width,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        final_logit_softcapping=cfg.logit_softcap,
        pad_token_id=None,
    )
    hf = NanoChatForCausalLM(hf_cfg).eval()
    v = cfg.vocab_size
    sd = {"model.embed_tokens.weight": model.wte.weight[:v], "lm_head.weight": model.lm_head.weight[:v]}
    for k, p in model.h.state_dict().items():
        sd[f"model.layers.{k}"] = p
    hf.load_state_dict(sd, strict=True)
    return hf


@pytest.mark.parametrize("fields", [{}, dict(n_head=4, mlp_hidden=80, rope_theta=500.0, logit_softcap=None)])
def test_nanochat_computes_hf_nanochat_for_causal_lm(fields):
    cfg = nanochat_cfg(**fields)
    torch.manual_seed(0)
    model = randomized(build_model(cfg)).eval()
    hf = nanochat_hf(cfg, model)
    idx = torch.randint(0, cfg.vocab_size, (3, cfg.block_size))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert ours.shape == theirs.shape == (3, cfg.block_size, cfg.vocab_size)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert ours.abs().max() > 1  # weights large enough that the comparison means something
    with torch.no_grad():  # a shorter sequence uses the first rows of the RoPE tables
        assert (model(idx[:, :5]) - hf(idx[:, :5]).logits).abs().max().item() < 1e-4


def test_nanochat_loss_covers_the_real_vocabulary_only_and_attention_is_causal():
    cfg = nanochat_cfg()
    torch.manual_seed(0)
    model = randomized(build_model(cfg)).eval()
    idx, tgt = torch.randint(0, 300, (2, 16)), torch.randint(0, 300, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 300) and logits.abs().max() <= cfg.logit_softcap
    torch.testing.assert_close(model(idx, tgt), F.cross_entropy(logits.reshape(-1, 300), tgt.reshape(-1)))
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 300
    after = model(changed)
    assert torch.equal(after[:, :10], logits[:, :10])
    assert not torch.allclose(after[:, 10:], logits[:, 10:])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("chunk", [20, CHUNK_ROWS])
def test_nanochat_chunked_cross_entropy_with_softcap_equals_the_sliced_path(dtype, chunk):
    """Loss and every gradient, the softcap applied inside each chunk (its tanh' in the backward)."""
    cfg = nanochat_cfg()
    torch.manual_seed(0)
    sliced = randomized(build_model(cfg))
    chunked = build_model(cfg, cross_entropy="chunked")
    chunked.load_state_dict(sliced.state_dict())
    x, y = torch.randint(0, 300, (3, 16)), torch.randint(0, 300, (3, 16))
    hidden = {}

    def loss(model):
        hidden["h"] = h = nanochat_final_hidden(model, x)
        return chunked_cross_entropy(h.reshape(48, 32), model.lm_head.weight, y.reshape(-1), 300, chunk, softcap=15.0)

    capped, grads = _compare_chunked(sliced, chunked, x, y, dtype, loss)
    assert torch.count_nonzero(grads["lm_head.weight"][300:]) == 0  # padding rows never learn
    torch.testing.assert_close(chunked(x, y), sliced(x, y), rtol=1e-5, atol=1e-6)  # NanoChat.forward's chunked path
    h, w = hidden["h"].detach().reshape(48, 32).float(), chunked.lm_head.weight.detach().float()
    uncapped = chunked_cross_entropy(h, w, y.reshape(-1), 300, chunk)
    assert (uncapped - capped.float()).abs() > 0.1  # the cap changes the loss at these logit sizes


def test_nanochat_zero_initialised_head_and_projections_train():
    """nanochat starts with the head, o_proj and fc2 at zero (loss ln V); AdamW moves them all and the loss falls."""
    cfg = nanochat_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    zero = ["lm_head.weight"] + [f"h.{i}.{m}.weight" for i in range(2) for m in ("self_attn.o_proj", "mlp.fc2")]
    params = dict(model.named_parameters())
    assert all(torch.count_nonzero(params[k]) == 0 for k in zero)
    assert torch.std(params["wte.weight"]).item() == pytest.approx(1.0, abs=0.05)
    x = torch.randint(0, 300, (4, 16))
    y = (x * 7 + 3) % 300  # a learnable map
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model(x, y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] == pytest.approx(math.log(300), rel=1e-5)
    assert losses[-1] < losses[0] - 0.5
    assert all(torch.count_nonzero(params[k]) > 0 for k in zero)
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in model.parameters())


def nanochat_final_hidden(model: NanoChat, idx: torch.Tensor) -> torch.Tensor:
    """The final RMSNorm's output (NanoChat.forward before the head)."""
    t, eps = idx.size(1), model.cfg.norm_eps
    x = rms_norm(model.wte(idx), eps)
    for block in model.h:
        x = block(x, model.cos[:t], model.sin[:t])
    return rms_norm(x, eps)
