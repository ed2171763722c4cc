"""A trained model from a checkpoint: which file, its model config, which tokenizer.

A checkpoint carries its model config (``model_config``) and a fingerprint
holding the sha256 of the tokenizer its data was made with; the tokenizer
given is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..model.config import ModelConfig
from ..tokenizer.load import LoadedTokenizer, load_tokenizer


@dataclass
class TrainedModel:
    """A checkpoint's weights on CPU, float32, in eval mode, with its config and tokenizer."""

    model: Any  # model.gpt.GPT or model.nanochat.NanoChat (model.build_model)
    config: ModelConfig
    tokenizer: LoadedTokenizer
    checkpoint: Path
    step: int
    tokens_seen: dict[str, int]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's latest phase-final checkpoint."""
    from ..train.rundir import list_finals

    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError("no such checkpoint file or run directory", path=path)
    finals = list_finals(path)
    if not finals:
        raise UserError(
            "the run directory has no phase-final checkpoint (checkpoints/step_*_final-*.pt): "
            "finish a phase first, or pass a checkpoint file",
            path=path,
        )
    return finals[-1]


def check_tokenizer(tok: LoadedTokenizer, cfg: ModelConfig, fingerprint: dict[str, Any], checkpoint: Path) -> None:
    """The tokenizer must be the one the training shards were made with, and fit the model."""
    if tok.sha256 != fingerprint["tokenizer"]:
        raise UserError(
            f"is not the tokenizer {checkpoint} was trained with (sha256 {tok.sha256[:12]}, the "
            f"checkpoint's data used {str(fingerprint['tokenizer'])[:12]})",
            path=tok.path,
        )
    if tok.vocab_size != cfg.vocab_size:
        raise UserError(f"has {tok.vocab_size} tokens, the model config {cfg.vocab_size}", path=tok.path)


def load_trained(checkpoint: str | Path, tokenizer: str | Path) -> TrainedModel:
    """Load a checkpoint (or a run directory's latest final one) as a float32 model on CPU (``GPT`` or
    ``NanoChat``, per the checkpoint's ``model_config.architecture``)."""
    from ..model import build_model
    from ..train.checkpoint import TrainState

    path = resolve_checkpoint(checkpoint)
    state = TrainState.load(path)  # checksum verified; a missing field is a UserError naming it
    cfg = ModelConfig.model_validate(state.model_config)
    tok = load_tokenizer(tokenizer)
    check_tokenizer(tok, cfg, state.fingerprint, path)
    model = build_model(cfg)
    model.load_state_dict(state.model)
    model.eval()
    return TrainedModel(
        model=model,
        config=cfg,
        tokenizer=tok,
        checkpoint=path,
        step=int(state.step),
        tokens_seen=dict(state.tokens_seen),
    )
