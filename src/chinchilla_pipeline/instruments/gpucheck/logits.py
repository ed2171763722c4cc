"""Part (v): a run's export, loaded by transformers, against the model it came from: the same logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def export_logits(run_dir: Path, tokenizer: Path, out_dir: Path, device: torch.device) -> dict[str, Any]:
    """Export the run's final checkpoint; the HF model's logits against ours on ``device``, float32."""
    from transformers import AutoModelForCausalLM

    from ...export.huggingface import export_huggingface
    from ...export.trained import load_trained
    from ...train.setup import set_tf32

    export_huggingface(run_dir, tokenizer, out_dir)
    ours = load_trained(run_dir, tokenizer)
    hf = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).to(device).eval()
    model = ours.model.to(device)
    cfg = ours.config
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=g).to(device)
    if device.type == "cuda":
        set_tf32(False)  # the comparison in true float32 (the check's last part: left so)
    with torch.no_grad():
        a, b = model(idx).float(), hf(idx).logits.float()
    return {
        "shape": list(a.shape),
        "max_abs_diff": float((a - b).abs().max()),
        "logit_scale": float(a.abs().max()),
        "argmax_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
    }
