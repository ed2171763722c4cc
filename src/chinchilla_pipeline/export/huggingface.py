"""Export a checkpoint as a Hugging Face directory (safetensors) with its tokenizer.

A ``gpt2`` model becomes a stock ``GPT2LMHeadModel``, a ``nanochat`` one a stock
``NanoChatForCausalLM``. The result loads with ``AutoModelForCausalLM.from_pretrained(dir)``
and ``AutoTokenizer.from_pretrained(dir)``, so lm-evaluation-harness and other
``transformers`` tools can evaluate it. Mapping from ``model.gpt.GPT``:

- HF's GPT-2 uses ``Conv1D`` (weight stored (in, out)) where we use ``nn.Linear``
  (out, in): every block matrix is transposed.
- Our embedding has ``padded_vocab_size`` rows (4,096 -> 4,096; 50,257 -> 50,304);
  the padding rows are never predicted, so the export keeps the first
  ``vocab_size`` rows and the tokenizer's vocabulary equals the model's.
- Output head tied to the token embedding (``tie_word_embeddings``), so only
  ``transformer.wte.weight`` is stored.
- GELU with the tanh approximation = HF ``gelu_new``; LayerNorm eps read from
  the model (PyTorch's default 1e-5, as GPT-2's); a model built with
  ``bias: false`` gets zero biases, which computes the same function.

Mapping from ``model.nanochat.NanoChat`` (same module names under ``model.``: ``wte`` ->
``embed_tokens``, ``h`` -> ``layers``; no transposes): embedding and untied head both keep
their first ``vocab_size`` rows; RMSNorm eps, RoPE theta and the logit softcap go to
``config.json``; the norms have no weights, so nothing else is stored.

Files: ``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``, then ``export.json`` (provenance), written last.
They are written into ``.<out>.tmp.<pid>`` beside the output, which is renamed
to the output when complete: a failed export (disk full, ...) leaves no partial
directory, and a second export into the same directory waits for no one: it is
refused at once (``lock.output_lock``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..atomic import fsync_dir, write_bytes, write_json
from ..errors import UserError
from ..lock import output_lock
from ..tokenizer.load import EOT_TOKEN, TOKENIZER_FILE
from ..train.rundir import HELLASWAG
from .trained import TrainedModel, load_trained

# what an export directory holds; hellaswag.json is its score (`chinchilla hellaswag`), replaced with it
EXPORT_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "export.json",
    HELLASWAG,
}
# The Hugging Face class each architecture (``ModelConfig.architecture``) is exported as.
HF_ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "nanochat": "NanoChatForCausalLM"}
# Block matrices stored transposed by HF's Conv1D.
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# A nanochat block's matrices, under the same names in both models.
_NANOCHAT_MATRICES = tuple(f"self_attn.{x}_proj" for x in "qkvo") + ("mlp.fc1", "mlp.fc2")


def hf_config(trained: TrainedModel) -> dict[str, Any]:
    """``config.json`` of the HF model (``HF_ARCHITECTURES``) computing the same function as ``trained.model``."""
    if trained.config.architecture == "nanochat":
        return _nanochat_config(trained)
    return _gpt2_config(trained)


def hf_state_dict(trained: TrainedModel) -> dict[str, torch.Tensor]:
    """Our weights under the HF model's names and layouts (float32, contiguous)."""
    if trained.config.architecture == "nanochat":
        return _nanochat_state_dict(trained)
    return _gpt2_state_dict(trained)


def _nanochat_config(trained: TrainedModel) -> dict[str, Any]:
    from transformers import NanoChatConfig

    cfg = trained.config
    eot = trained.tokenizer.eot_id
    hf = NanoChatConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.mlp_width,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.block_size,
        hidden_act="relu2",
        attention_dropout=0.0,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        final_logit_softcapping=cfg.logit_softcap,
        attention_bias=False,
        tie_word_embeddings=False,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=None,  # NanoChatConfig's default (1) would make token 1 the embedding's padding_idx
        architectures=[HF_ARCHITECTURES["nanochat"]],
        dtype="float32",
    )
    return hf.to_dict()


def _nanochat_state_dict(trained: TrainedModel) -> dict[str, torch.Tensor]:
    v = trained.config.vocab_size
    ours = {k: t.detach().float() for k, t in trained.model.state_dict().items()}
    out = {"model.embed_tokens.weight": ours["wte.weight"][:v], "lm_head.weight": ours["lm_head.weight"][:v]}
    for i in range(trained.config.n_layer):
        for name in _NANOCHAT_MATRICES:
            out[f"model.layers.{i}.{name}.weight"] = ours[f"h.{i}.{name}.weight"]
    return {k: t.contiguous() for k, t in out.items()}


def _gpt2_config(trained: TrainedModel) -> dict[str, Any]:
    from transformers import GPT2Config

    cfg, model = trained.config, trained.model
    eot = trained.tokenizer.eot_id
    hf = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=4 * cfg.n_embd,
        activation_function="gelu_new",
        layer_norm_epsilon=model.ln_f.eps,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
        architectures=[HF_ARCHITECTURES["gpt2"]],
        dtype="float32",
    )
    return hf.to_dict()


def _gpt2_state_dict(trained: TrainedModel) -> dict[str, torch.Tensor]:
    cfg = trained.config
    ours = {k: v.detach().float() for k, v in trained.model.state_dict().items()}
    out = {"transformer.wte.weight": ours["wte.weight"][: cfg.vocab_size], "transformer.wpe.weight": ours["wpe.weight"]}
    d = cfg.n_embd
    widths = {"ln_1": d, "ln_2": d, "attn.c_attn": 3 * d, "attn.c_proj": d, "mlp.c_fc": 4 * d, "mlp.c_proj": d}
    for i in range(cfg.n_layer):
        for name, width in widths.items():
            key = f"h.{i}.{name}"
            w = ours[f"{key}.weight"]
            out[f"transformer.{key}.weight"] = w.t() if name in _CONV1D else w
            out[f"transformer.{key}.bias"] = ours.get(f"{key}.bias", torch.zeros(width))
    out["transformer.ln_f.weight"] = ours["ln_f.weight"]
    out["transformer.ln_f.bias"] = ours.get("ln_f.bias", torch.zeros(d))
    return {k: v.contiguous() for k, v in out.items()}


def tokenizer_config(trained: TrainedModel) -> dict[str, Any]:
    """The tokenizer's own ``tokenizer_config.json``, with end-of-text as eos/bos and the context as max length."""
    src = trained.tokenizer.path.parent / "tokenizer_config.json"
    cfg = json.loads(src.read_text(encoding="utf-8")) if src.is_file() else {}
    cfg.setdefault("eos_token", EOT_TOKEN)
    cfg.setdefault("bos_token", EOT_TOKEN)
    cfg["model_max_length"] = trained.config.block_size  # harnesses truncate inputs to this
    return cfg


def write_huggingface(trained: TrainedModel, out_dir: str | Path) -> dict[str, Any]:
    """Write the HF directory of a loaded model (into a temporary directory renamed into place, replacing
    an earlier export); returns the provenance record (``export.json``)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory: choose another --out_dir", path=out)
    others = sorted(set(os.listdir(out)) - EXPORT_FILES) if out.is_dir() else []
    if others:
        raise UserError(
            f"holds other files ({', '.join(others[:3])}); the export replaces the whole directory: "
            "choose an empty or export directory",
            path=out,
        )
    final, out = out, out.parent / f".{out.name}.tmp.{os.getpid()}"
    for stale in final.parent.glob(f".{final.name}.tmp.*"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    try:
        record = _write_files(trained, out)
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return record


def _write_files(trained: TrainedModel, out: Path) -> dict[str, Any]:
    from safetensors.torch import save as save_safetensors

    write_json(out / "config.json", hf_config(trained))
    write_bytes(out / "model.safetensors", save_safetensors(hf_state_dict(trained), metadata={"format": "pt"}))
    write_bytes(out / TOKENIZER_FILE, trained.tokenizer.path.read_bytes())
    write_json(out / "tokenizer_config.json", tokenizer_config(trained))
    record = {
        "checkpoint": str(trained.checkpoint),
        "step": trained.step,
        "model_config": trained.config.model_dump(),
        "num_params": trained.config.num_params(),
        "tokens_seen": trained.tokens_seen,
        "tokenizer_sha256": trained.tokenizer.sha256,
        "architecture": HF_ARCHITECTURES[trained.config.architecture],
    }
    write_json(out / "export.json", record)
    return record


def export_huggingface(checkpoint: str | Path, tokenizer: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Export ``checkpoint`` (a file, or a run directory: its latest final checkpoint) to ``out_dir``."""
    trained = load_trained(checkpoint, tokenizer)
    with output_lock(out_dir, "export"):
        return write_huggingface(trained, out_dir)
