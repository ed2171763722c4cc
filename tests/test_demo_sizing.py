"""``chinchilla demo-size``: a measured throughput becomes a family model at 20 tokens per parameter."""

from __future__ import annotations

import json

import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.model.config import load_model_config
from chinchilla_pipeline.model.family import family_config, model_for_params
from chinchilla_pipeline.plan import DEFAULT_TOKENS_PER_PARAM, params_for_compute


def test_demo_size_writes_a_family_model_sized_by_measured_throughput(tmp_path, tokenizer_dir, capsys):
    out = tmp_path / "model.json"
    tok = tokenizer_dir
    assert (
        main(
            [
                "demo-size",
                "--seconds",
                "200",
                "--tokenizer",
                str(tok),
                "--block_size",
                "32",
                "--micro_batch_size",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    model = load_model_config(out)
    sizing = json.loads((tmp_path / "sizing.json").read_text())
    assert model.block_size == 32 and model.architecture == "nanochat"  # the default recipe's family
    arch = model.architecture
    assert model.n_layer == family_config(model.n_embd, model.vocab_size, 32, architecture=arch).n_layer
    assert sizing["num_params"] == model.num_params()
    assert sizing["num_tokens"] == round(DEFAULT_TOKENS_PER_PARAM * model.num_params())
    # Each probe: C = the measured FLOP/s (parameter share 6N / FLOPs per token) x the 200 s budget, N from
    # C = 6 N D with D = 20 N, then the family width nearest N; the model written is the last probe's choice.
    # Exact on the recorded rates: how fast this machine happens to be (load) does not enter.
    for probe in sizing["probes"]:
        cfg = family_config(probe["probe_width"], model.vocab_size, 32, architecture=arch)
        compute = probe["flops_per_s"] * 6 * cfg.num_params() / cfg.flops_per_token() * 200
        assert probe["target_params"] == pytest.approx(params_for_compute(compute, DEFAULT_TOKENS_PER_PARAM), rel=1e-12)
        assert probe["chosen_width"] == model_for_params(probe["target_params"], model.vocab_size, 32, arch).n_embd
    assert model.n_embd == sizing["probes"][-1]["chosen_width"]
    assert main(["demo-size", "--seconds", "2", "--tokenizer", str(tok), "--out", str(out)]) == 0
    assert "exists" in capsys.readouterr().out  # a run may depend on it: kept
