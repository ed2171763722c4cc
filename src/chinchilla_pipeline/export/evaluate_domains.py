"""Evaluate a checkpoint on every domain's whole validation split (the demo's "evaluate" stage).

The trainer's own evaluations read at most ``eval.tokens_per_source`` tokens per
domain to stay cheap during training; this reads the whole split once, at the
end, and writes ``<run_dir>/evaluation.json`` (beside the checkpoint when it is
not in a run's ``checkpoints/``), which ``report`` adds as a table. Per domain: loss in
nats/token, perplexity, and bits per byte (``train/validation.py``).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_json
from ..errors import UserError
from ..schema import load_config
from ..train.config import CurriculumConfig
from ..train.distributed import Dist
from ..train.rundir import EVALUATION, result_dir
from ..train.setup import open_domains
from ..train.validation import Validator
from .trained import load_trained


def evaluate_checkpoint(
    checkpoint: str | Path, tokenizer: str | Path, curriculum: str | Path, micro_batch_size: int = 16
) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per byte of the checkpoint on each curriculum domain's
    validation split, and their means over the domains."""
    trained = load_trained(checkpoint, tokenizer)
    cfg = load_config(CurriculumConfig, curriculum)  # its sources; the model config is the checkpoint's
    domains = open_domains(cfg.domains(), trained.config, curriculum, model_path=f"{checkpoint} (model_config)")
    for name, ds in domains.items():
        if ds.manifest["tokenizer_sha256"] != trained.tokenizer.sha256:
            raise UserError(
                f"dataset {name!r} was tokenized with another tokenizer than the checkpoint's "
                f"({ds.manifest['tokenizer_sha256'][:12]} vs {trained.tokenizer.sha256[:12]})",
                path=curriculum,
            )
    sizes = {name: ds.num_tokens("validation") for name, ds in domains.items()}
    validator = Validator(
        domains,
        context=trained.config.block_size,
        max_tokens=max(sizes.values()),
        micro_batch_size=micro_batch_size,
        dist=Dist(0, 0, 1, torch.device("cpu")),
    )
    ev = validator.evaluate(trained.model, contextlib.nullcontext)
    losses, bpb = ev["loss"], ev["bpb"]
    context = trained.config.block_size
    result = {
        "checkpoint": str(trained.checkpoint),
        "step": trained.step,
        "curriculum": str(curriculum),
        "domains": {
            d: {
                "loss": loss,
                "perplexity": math.exp(loss),
                "bpb": bpb[d],
                "num_tokens": len(validator.windows[d]) * context,
            }
            for d, loss in losses.items()
        },
        "mean_loss": sum(losses.values()) / len(losses),
        "mean_bpb": sum(bpb.values()) / len(bpb),
    }
    ckpt_dir = trained.checkpoint.parent
    write_json(result_dir(ckpt_dir) / EVALUATION, result)
    return result


def format_evaluation(result: dict[str, Any]) -> str:
    lines = [
        f"{result['checkpoint']} (step {result['step']:,}), whole validation splits:",
        f"{'domain':<14}{'tokens':>10}{'nats/token':>12}{'perplexity':>12}{'bits/byte':>11}",
    ]
    for d, r in result["domains"].items():
        lines.append(f"{d:<14}{r['num_tokens']:>10,}{r['loss']:>12.4f}{r['perplexity']:>12.2f}{r['bpb']:>11.4f}")
    mean = result["mean_loss"]
    lines.append(f"{'mean':<14}{'':>10}{mean:>12.4f}{math.exp(mean):>12.2f}{result['mean_bpb']:>11.4f}")
    return "\n".join(lines)
