"""What a run is built from: checked datasets, the fingerprint, and ``build_training``: the model, its
optimiser and its precision, the one place a recipe (model config + optimiser config) becomes objects."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.layout import MANIFEST_NAME
from ..data.reader import PreparedDataset, open_prepared
from ..errors import UserError
from ..model import build_model
from ..model.config import ModelConfig
from .checkpoint import config_hash
from .config import CurriculumConfig, OptimizerConfig, SpeedConfig
from .optim import MuonAdamW, build_optimizer


def open_domains(
    paths: dict[str, str], model: ModelConfig, config_path: str | Path, *, model_path: str
) -> dict[str, PreparedDataset]:
    """Open every source (name -> prepared dataset directory, ``CurriculumConfig.domains``); refuse
    vocabularies, end-of-text ids or tokenizers that disagree with the model config (``model_path``) or with
    each other, naming both sides."""
    out = {name: open_prepared(path) for name, path in paths.items()}
    first = next(iter(out.values()))
    for name, ds in out.items():
        if ds.vocab_size != model.vocab_size:
            raise UserError(
                f"source '{name}' has vocab_size {ds.vocab_size} (its manifest) but the model config "
                f"{model_path} has vocab_size {model.vocab_size}: they must be equal (same tokenizer)",
                path=ds.path / MANIFEST_NAME,
                field="vocab_size",
            )
        if (ds.eot_id, ds.tokenizer_sha256) != (first.eot_id, first.tokenizer_sha256):
            raise UserError(
                f"source '{name}' was tokenized differently from '{first.name}' (eot_id {ds.eot_id} vs "
                f"{first.eot_id}, tokenizer {ds.tokenizer_sha256[:12]} vs {first.tokenizer_sha256[:12]})",
                path=ds.path / MANIFEST_NAME,
                field="tokenizer_sha256",
            )
        if ds.num_tokens("train") <= model.block_size:
            raise UserError(
                f"source '{name}' has {ds.num_tokens('train')} train tokens, fewer than context + 1",
                path=config_path,
                field="phases",
            )
    return out


def fingerprint(cfg: CurriculumConfig, model: ModelConfig, domains: dict[str, PreparedDataset]) -> dict:
    """What a checkpoint must agree with to be resumed: model, training recipe, tokenizer, data.

    ``model`` and ``recipe`` are flat ``{"optimizer.lr": 0.0006, ...}`` maps, so a refused resume names the
    field that changed. Left out: eval, checkpoint and logging intervals, ``compile`` and ``speed`` (they do
    not change the trajectory) and where each dataset lies (``phases.*.sources.*.path``: what it holds is
    ``data``, a sha256 of its manifest, which names every shard's sha256), so data moved to local disk resumes.
    """
    recipe = cfg.model_dump(exclude={"eval", "checkpoint", "log_interval_steps", "model", "compile", "speed"})
    for phase in recipe["phases"]:
        for source in phase["sources"]:
            del source["path"]
        if phase["blend_in"] is None:  # unset, it is the hard switch every older checkpoint had
            del phase["blend_in"]
    if recipe["schedule"]["decay_phase"] is None:
        del recipe["schedule"]["decay_phase"]
    return {
        "model": _flat(model.model_dump()),
        "recipe": _flat(recipe),
        "tokenizer": next(iter(domains.values())).tokenizer_sha256,
        "data": {name: config_hash(ds.manifest) for name, ds in domains.items()},
    }


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as one level: ``{"phases.0.sources.1.weight": 1.0, ...}``."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def autocast_factory(
    dtype: str, device: torch.device, attention: str = "auto"
) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory: bf16 autocast ("auto" on CUDA, or "bfloat16"), else full float32; with
    ``attention`` other than "auto" (SpeedConfig), SDPA restricted to that backend."""
    use_bf16 = dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda")
    cast = (
        partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext
    )
    if attention == "auto" or device.type != "cuda":  # a forced backend acts on CUDA only (SpeedConfig)
        return cast
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }[attention]

    @contextlib.contextmanager
    def both():
        with cast(), sdpa_kernel(backend):
            yield

    q = torch.randn(1, 2, 16, 64, device=device)  # the backend must run with this dtype on this card: now,
    try:  # not at the first step after the model is built and compiled
        with both():
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    except RuntimeError as err:
        raise UserError(
            f'"{attention}" cannot run here ({str(err).splitlines()[0][:160]}); use "auto"',
            field="speed.attention",
        ) from None
    return both


def want_compile(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matmuls, process-wide, as nanoGPT sets it: ``set_float32_matmul_precision``, "high"
    (TF32) or "highest" (IEEE float32). Not torch 2.9+'s per-backend ``fp32_precision`` setters: after them
    ``torch.get_float32_matmul_precision()``, which Inductor reads when it compiles for CUDA, and
    ``torch.backends.cuda.matmul.allow_tf32`` raise "mix of the legacy and new APIs" (pytorch#166387);
    after this call every reader agrees (tested; checked on torch 2.11 and 2.13). The model has no
    convolutions, so cuDNN's flag is left as it is."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def apply_speed(speed: SpeedConfig, device: torch.device) -> None:
    """Process-wide CUDA switches of ``speed`` (TF32); nothing on CPU."""
    if device.type == "cuda":
        set_tf32(speed.tf32)


def compile_model(model: torch.nn.Module, setting: str, speed: SpeedConfig, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model, mode=speed.compile_mode)`` when ``setting`` asks for it, else the model."""
    return torch.compile(model, mode=speed.compile_mode) if want_compile(setting, device) else model


DEFAULT_SPEED = SpeedConfig()  # frozen: safe to share


@dataclass
class Built:
    """A recipe as objects: ``raw`` (the model on its device, whose state is saved), ``model`` (``raw``
    compiled when asked: the one to call), ``optimizer`` and ``autocast`` (a context factory)."""

    raw: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | MuonAdamW
    autocast: Callable[[], contextlib.AbstractContextManager]


def build_training(
    model_cfg: ModelConfig,
    optimizer: OptimizerConfig,
    device: torch.device,
    *,
    speed: SpeedConfig = DEFAULT_SPEED,
    dtype: str = "auto",
    compile_: str = "auto",
) -> Built:
    """The model of ``model_cfg`` (its ``architecture``) on ``device`` with ``speed``'s process-wide switches,
    its optimiser (``optimizer.kind``), compiled per ``compile_`` and run under ``dtype``'s autocast.
    Weights come from the current torch RNG state: seed it first. Every training path calls this
    (trainer, micro-batch probe, bench-train, gpu-check), so a recipe is chosen in one place."""
    apply_speed(speed, device)
    raw = build_model(model_cfg, cross_entropy=speed.cross_entropy).to(device)
    return Built(
        raw=raw,
        model=compile_model(raw, compile_, speed, device),
        optimizer=build_optimizer(raw, optimizer, device, width=model_cfg.n_embd, fused=speed.fused_adamw),
        autocast=autocast_factory(dtype, device, speed.attention),
    )
