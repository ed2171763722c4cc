"""Hugging Face export of a real tiny run (GPT-2's architecture and nanochat's): transformers loads it and
computes the same logits."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.export.huggingface import HF_ARCHITECTURES, export_huggingface, write_huggingface
from chinchilla_pipeline.export.trained import TrainedModel, load_trained
from chinchilla_pipeline.model.config import ModelConfig
from chinchilla_pipeline.model.gpt import GPT
from chinchilla_pipeline.model.nanochat import NanoChat
from chinchilla_pipeline.tokenizer.load import EOT_TOKEN, load_tokenizer
from textrun import make_text_run


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer_dir):
    return make_text_run(tmp_path_factory.mktemp("textrun"), tokenizer_dir)


@pytest.fixture(scope="module")
def nanochat_run(tmp_path_factory, tokenizer_dir):
    """The same run with nanochat's architecture, trained by the real trainer (AdamW)."""
    return make_text_run(tmp_path_factory.mktemp("nanochat"), tokenizer_dir, model_fields={"architecture": "nanochat"})


def _validation_tokens(run, t: int) -> torch.Tensor:
    """Two windows of real held-out text, ``t`` tokens each."""
    tokens = np.asarray(open_prepared(run["run_dir"].parents[1] / "data" / "forums").shards("validation")[0].tokens)
    return torch.from_numpy(tokens[: 2 * t].astype(np.int64)).view(2, t)


def _assert_same_logits(trained: TrainedModel, out_dir, tokens: torch.Tensor) -> None:
    from transformers import AutoModelForCausalLM

    hf, info = AutoModelForCausalLM.from_pretrained(out_dir, output_loading_info=True, dtype=torch.float32)
    assert type(hf).__name__ == HF_ARCHITECTURES[trained.config.architecture]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf.eval()
    with torch.no_grad():
        ours, theirs = trained.model(tokens), hf(tokens).logits
    assert ours.shape == theirs.shape == (*tokens.shape, trained.config.vocab_size)
    assert (ours - theirs).abs().max().item() < 1e-4


def test_exported_model_and_tokenizer_load_and_match(run, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "hf"
    rec = export_huggingface(run["run_dir"], run["tokenizer"], out)
    trained = load_trained(run["run_dir"], run["tokenizer"])
    assert trained.config.padded_vocab_size > trained.config.vocab_size  # the export must slice the padding
    assert rec["step"] == 16 and trained.checkpoint.name == "step_0000016_final-b.pt"  # the latest final one
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] == trained.config.vocab_size and cfg["n_positions"] == trained.config.block_size
    assert cfg["activation_function"] == "gelu_new" and cfg["tie_word_embeddings"] is True
    _assert_same_logits(trained, out, _validation_tokens(run, trained.config.block_size))

    hf_tok = AutoTokenizer.from_pretrained(out)
    ours = load_tokenizer(run["tokenizer"])
    assert hf_tok.eos_token == EOT_TOKEN and hf_tok.eos_token_id == ours.eot_id
    text = "The assert statement checks a condition."
    assert hf_tok(text)["input_ids"] == ours.tokenizer.encode(text, add_special_tokens=False).ids
    assert hf_tok.model_max_length == trained.config.block_size


def test_nanochat_run_exports_as_nanochat_for_causal_lm(nanochat_run, tmp_path, capsys):
    from transformers import AutoTokenizer

    out = tmp_path / "hf"
    cli = ["export", "--checkpoint", str(nanochat_run["run_dir"]), "--tokenizer", str(nanochat_run["tokenizer"])]
    assert main([*cli, "--out_dir", str(out)]) == 0
    assert f"{out}: NanoChatForCausalLM, " in capsys.readouterr().out  # the line names the class written
    rec = json.loads((out / "export.json").read_text())
    trained = load_trained(nanochat_run["run_dir"], nanochat_run["tokenizer"])
    mc = trained.config
    assert isinstance(trained.model, NanoChat) and rec["architecture"] == "NanoChatForCausalLM"
    assert rec["num_params"] == mc.num_params() == trained.model.num_params()
    assert mc.padded_vocab_size > mc.vocab_size  # the export must slice embedding and head
    # trained: the zero-initialised head and residual projections have moved
    block = trained.model.h[0]
    for w in (trained.model.lm_head.weight, block.self_attn.o_proj.weight, block.mlp.fc2.weight):
        assert torch.count_nonzero(w) > 0
    cfg = json.loads((out / "config.json").read_text())
    eot = trained.tokenizer.eot_id
    assert cfg["model_type"] == "nanochat" and cfg["architectures"] == ["NanoChatForCausalLM"]
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]) == (mc.vocab_size, 32, 128)
    assert (cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (2, 2, 2)
    assert cfg["max_position_embeddings"] == mc.block_size and cfg["rms_norm_eps"] == mc.norm_eps == 1e-6
    assert cfg["rope_parameters"] == {"rope_type": "default", "rope_theta": 10_000.0}
    assert cfg["final_logit_softcapping"] == 15.0 and cfg["tie_word_embeddings"] is False
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (eot, eot, None)
    _assert_same_logits(trained, out, _validation_tokens(nanochat_run, mc.block_size))
    hf_tok = AutoTokenizer.from_pretrained(out)
    text = "The assert statement checks a condition."
    assert hf_tok(text)["input_ids"] == trained.tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
    assert hf_tok.eos_token_id == eot and hf_tok.model_max_length == mc.block_size


def test_bias_free_model_exports_with_zero_biases(run, tmp_path):
    """GPT-2 has biases everywhere; a model without them exports zeros and computes the same function."""
    tok = load_tokenizer(run["tokenizer"])
    cfg = ModelConfig(
        name="nobias",
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=32,
        vocab_size=tok.vocab_size,
        pad_vocab_multiple=96,
        bias=False,
    )
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    trained = TrainedModel(
        model=model, config=cfg, tokenizer=tok, checkpoint=tmp_path / "none.pt", step=0, tokens_seen={}
    )
    write_huggingface(trained, tmp_path / "hf")
    _assert_same_logits(trained, tmp_path / "hf", _validation_tokens(run, 32))


def test_model_config_comes_from_the_checkpoint(run):
    trained = load_trained(run["run_dir"], run["tokenizer"])
    assert trained.config.model_dump() == ModelConfig.model_validate(json.loads(run["model"].read_text())).model_dump()


def test_other_tokenizer_refused(run, tmp_path):
    tok = tmp_path / "tok"
    shutil.copytree(run["tokenizer"], tok)
    (tok / "tokenizer.json").write_text(json.dumps(json.loads((tok / "tokenizer.json").read_text()), indent=1))
    with pytest.raises(UserError, match="not the tokenizer"):
        load_trained(run["run_dir"], tok)


def test_cli_export_and_errors(run, tmp_path, capsys):
    out = tmp_path / "hf"
    args = ["export", "--checkpoint", str(run["run_dir"]), "--tokenizer", str(run["tokenizer"]), "--out_dir", str(out)]
    assert main(args) == 0
    assert json.loads((out / "export.json").read_text())["architecture"] == "GPT2LMHeadModel"
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "export.json",
    }
    (out / "hellaswag.json").write_text("{}")  # what `chinchilla hellaswag` leaves in an export it scored
    assert main(args) == 0 and not (out / "hellaswag.json").exists()  # exported again: the old score goes
    assert main(args[:-1] + [str(tmp_path / "hf2"), "--tokenizer", str(tmp_path / "none")]) == 2  # no tokenizer
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "missing"),
                "--tokenizer",
                str(run["tokenizer"]),
                "--out_dir",
                str(out),
            ]
        )
        == 2
    )
    assert "no such checkpoint" in capsys.readouterr().err


def test_evaluate_reads_whole_validation_splits_and_the_report_shows_it(run, tmp_path, capsys):
    from chinchilla_pipeline.export.evaluate_domains import evaluate_checkpoint
    from chinchilla_pipeline.report.build import make_report

    run_dir = tmp_path / "run"
    shutil.copytree(run["run_dir"], run_dir)
    result = evaluate_checkpoint(run_dir, run["tokenizer"], run["config"])
    trained = load_trained(run_dir, run["tokenizer"])
    t = trained.config.block_size
    for domain, r in result["domains"].items():
        val = open_prepared(run["config"].parent / "data" / domain).num_tokens("validation")
        assert r["num_tokens"] == (val - 1) // t * t  # every whole window of the split
        assert 0 < r["loss"] < math.log(trained.config.vocab_size) + 1 and r["perplexity"] == math.exp(r["loss"])
        ds = open_prepared(run["config"].parent / "data" / domain)  # the targets' bytes, from the dataset's table
        targets = np.asarray(ds.shards("validation")[0].tokens[1 : r["num_tokens"] + 1])
        num_bytes = int(ds.token_bytes()[targets].sum())
        assert r["bpb"] == pytest.approx(r["loss"] * r["num_tokens"] / (math.log(2) * num_bytes), rel=1e-9)
    assert result["mean_bpb"] == pytest.approx(sum(r["bpb"] for r in result["domains"].values()) / 2)
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["domains"] == result["domains"]
    report = make_report(run_dir).read_text()
    assert "Whole validation splits" in report and f"{result['mean_loss']:.4f}" in report
    assert f"| {result['mean_bpb']:.4f} |" in report
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run_dir),
                "--tokenizer",
                str(run["tokenizer"]),
                "--config",
                str(run["config"]),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "whole validation splits" in out and "bits/byte" in out
