"""Sampling from a real tiny run (GPT-2's architecture and nanochat's): seeded, greedy equals argmax, long
prompts cropped to the context."""

from __future__ import annotations

import pytest
import torch

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.export.generate import generate_text, sample_tokens
from chinchilla_pipeline.export.trained import load_trained
from chinchilla_pipeline.model.nanochat import NanoChat
from textrun import make_text_run

PROMPT = "The assert statement"


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer_dir):
    return make_text_run(tmp_path_factory.mktemp("textrun"), tokenizer_dir)


@pytest.fixture(scope="module")
def trained(run):
    return load_trained(run["run_dir"], run["tokenizer"])


@pytest.fixture(scope="module")
def nanochat(tmp_path_factory, tokenizer_dir):
    run = make_text_run(tmp_path_factory.mktemp("nanochat"), tokenizer_dir, model_fields={"architecture": "nanochat"})
    return load_trained(run["run_dir"], run["tokenizer"])


def test_nanochat_checkpoint_samples_seeded_greedy_and_cropped(nanochat):
    assert isinstance(nanochat.model, NanoChat)
    opts = {"max_new_tokens": 16, "temperature": 1.0, "top_k": None, "num_samples": 2}
    first = generate_text(nanochat, PROMPT, seed=0, **opts)
    assert generate_text(nanochat, PROMPT, seed=0, **opts) == first and first[0] != first[1]
    tok, block = nanochat.tokenizer, nanochat.config.block_size
    seq = [tok.eot_id] + tok.tokenizer.encode(PROMPT, add_special_tokens=False).ids
    start = torch.tensor([seq])
    with torch.no_grad():
        for _ in range(8):
            seq.append(int(nanochat.model(torch.tensor([seq[-block:]]))[0, -1].argmax()))
    assert torch.equal(sample_tokens(nanochat.model, start, 8, block_size=block, temperature=0), torch.tensor([seq]))
    long = torch.randint(1, nanochat.config.vocab_size, (2, block + 10), generator=torch.Generator().manual_seed(0))
    out = sample_tokens(nanochat.model, long, 5, block_size=block, temperature=0.8, top_k=40, seed=0)
    assert out.shape == (2, block + 15) and torch.equal(out[:, : block + 10], long)


def test_same_seed_same_text_other_seed_other_text(trained):
    opts = {"max_new_tokens": 24, "temperature": 1.0, "top_k": None, "num_samples": 2}
    first = generate_text(trained, PROMPT, seed=0, **opts)
    assert generate_text(trained, PROMPT, seed=0, **opts) == first
    assert len(first) == 2 and first[0] != first[1]  # two samples of one call differ
    assert any(generate_text(trained, PROMPT, seed=s, **opts) != first for s in (1, 2, 3))


def test_greedy_is_argmax_decoding(trained):
    tok = trained.tokenizer
    ids = [tok.eot_id] + tok.tokenizer.encode(PROMPT, add_special_tokens=False).ids
    seq = list(ids)
    with torch.no_grad():
        for _ in range(12):
            logits = trained.model(torch.tensor([seq[-trained.config.block_size :]]))
            seq.append(int(logits[0, -1].argmax()))
    argmax = torch.tensor([seq])
    start = torch.tensor([ids])
    block = trained.config.block_size
    assert torch.equal(sample_tokens(trained.model, start, 12, block_size=block, temperature=0), argmax)
    assert torch.equal(
        sample_tokens(trained.model, start, 12, block_size=block, temperature=0.8, top_k=1, seed=5), argmax
    )
    greedy = [generate_text(trained, PROMPT, max_new_tokens=12, temperature=0, seed=s)[0] for s in (0, 1)]
    assert greedy[0] == greedy[1]


def test_top_k_samples_only_among_the_k_likeliest(trained):
    start = torch.tensor([[trained.tokenizer.eot_id]])
    with torch.no_grad():
        top3 = set(trained.model(start)[0, -1].topk(3).indices.tolist())
    firsts = {
        int(
            sample_tokens(
                trained.model, start, 1, block_size=trained.config.block_size, temperature=5.0, top_k=3, seed=s
            )[0, 1]
        )
        for s in range(40)
    }
    assert firsts <= top3 and len(firsts) > 1


def test_prompt_longer_than_the_context_is_cropped(trained):
    block = trained.config.block_size
    start = torch.randint(1, trained.config.vocab_size, (2, block + 10), generator=torch.Generator().manual_seed(0))
    out = sample_tokens(trained.model, start, 5, block_size=block, temperature=0.8, top_k=40, seed=0)
    assert out.shape == (2, block + 15) and torch.equal(out[:, : block + 10], start)


def test_cli_generate(run, capsys):
    args = [
        "generate",
        "--checkpoint",
        str(run["run_dir"]),
        "--tokenizer",
        str(run["tokenizer"]),
        "--prompt",
        PROMPT,
        "--max_new_tokens",
        "8",
        "--num_samples",
        "3",
        "--seed",
        "4",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count(f"(seed 4)\n{PROMPT}") == 3
    assert main(args) == 0 and capsys.readouterr().out == out
    assert main(args + ["--temperature", "-1"]) == 2
    assert "--temperature" in capsys.readouterr().err
    with pytest.raises(UserError, match="--top_k"):
        generate_text(load_trained(run["run_dir"], run["tokenizer"]), PROMPT, top_k=0)
