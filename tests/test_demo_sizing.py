"""``chinchilla demo-size``: a measured throughput becomes a family model at 20 tokens per parameter."""

from __future__ import annotations

import json

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.model.config import load_model_config
from chinchilla_pipeline.model.family import family_config


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
    assert model.block_size == 32
    assert model.n_layer == family_config(model.n_embd, model.vocab_size, 32).n_layer
    assert sizing["num_params"] == model.num_params()
    assert sizing["num_tokens"] == round(20 * model.num_params())
    # C = 6 N D equals the measured FLOP/s x the time budget, up to the choice of a whole family width
    flops = sizing["probes"][-1]["flops_per_s"] * 200
    assert 0.2 < 6 * sizing["num_params"] * sizing["num_tokens"] / flops < 5
    assert main(["demo-size", "--seconds", "2", "--tokenizer", str(tok), "--out", str(out)]) == 0
    assert "exists" in capsys.readouterr().out  # a run may depend on it: kept
