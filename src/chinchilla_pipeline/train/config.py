"""``config/curriculum/*.json``: the token budget, the phases and their sources, the optimiser.

Numbers a user types are tokens, shares and rates; everything derived from
them (the total budget from the parameter count, steps from tokens, gradient
accumulation from the batch) is computed by ``train/schedule.py`` and ``train/layout.py``, never typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence, Union

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from ..counts import parse_token_count
from ..data.config import NAME_PATTERN
from ..errors import UserError
from ..model.config import ModelConfig, load_model_config
from ..schema import StrictModel, load_config

# The seed's rule, Chinchilla's ~20 tokens per parameter (124M x 20 = 2.48B tokens).
DEFAULT_TOKENS_PER_PARAM = 20.0
# 2^19 = 524,288 tokens per optimiser step, as llm.c's GPT-2 small runs (512 x 1,024).
DEFAULT_GLOBAL_BATCH_TOKENS = 524_288


def check_phase_shares(names: Sequence[str], shares: Sequence[float]) -> None:
    """Phase names unique, shares positive and summing to 1; ``ValueError`` otherwise."""
    if not names:
        raise ValueError("at least one phase is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"phase names must be unique, got {list(names)}")
    if any(not s > 0 for s in shares):
        raise ValueError("every phase share must be > 0")
    total = sum(shares)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"phase shares must sum to 1, got {total:g}")


class SourceConfig(StrictModel):
    """One dataset in a phase. ``weight`` is a share of the phase's tokens (normalised in the phase)."""

    name: str = Field(pattern=NAME_PATTERN)  # the domain, e.g. "wikipedia"; names its validation loss
    path: str = Field(min_length=1)  # a prepared dataset directory (data/prepared/<name>)
    weight: PositiveFloat = 1.0


def parse_blend(v: int | str | None) -> int | str | None:
    """A ``blend_in``: tokens (40000000, "40M") as an int, or a share of the run ("10%") as a normalised
    string; ``ValueError`` otherwise."""
    if v is None:
        return None
    if isinstance(v, str) and v.strip().endswith("%"):
        share = float(v.strip()[:-1])
        if not 0 < share <= 100:
            raise ValueError(f"a share of the run's tokens is in (0%, 100%], got {v!r}")
        return f"{share:g}%"
    tokens = parse_token_count(v)
    if tokens <= 0:
        raise ValueError(f"tokens must be > 0, got {v!r}")
    return tokens


class PhaseConfig(StrictModel):
    """A phase: a share of the total budget drawn from its sources with their weights.

    ``blend_in``: the switch from the previous phase is a linear ramp of the weights over this many
    tokens ("40M", 40000000) or this share of the run's tokens ("10%"), centred on the boundary
    (train/mixture.py); None: a hard switch at the boundary.
    """

    name: str = Field(pattern=NAME_PATTERN)
    share: float = Field(gt=0, le=1)
    sources: list[SourceConfig] = Field(min_length=1)
    blend_in: Optional[Union[int, str]] = None

    @field_validator("blend_in", mode="before")
    @classmethod
    def _parse_blend(cls, v):
        return parse_blend(v)

    @model_validator(mode="after")
    def _unique_sources(self):
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique within a phase, got {names}")
        return self


class BatchConfig(StrictModel):
    global_batch_tokens: PositiveInt = DEFAULT_GLOBAL_BATCH_TOKENS
    # Sequences per rank per forward pass; 16 x 1,024 tokens fit a 40 GB+ GPU in bf16 at 124M.
    # "auto": on CUDA the largest that fits the card (train/layout.py probes it; llm.c runs 64 per
    # H100), on CPU the largest divisor of the rank's sequences per step up to 16.
    micro_batch_size: Union[PositiveInt, Literal["auto"]] = 16


class SpeedConfig(StrictModel):
    """How fast a step runs, never what it computes: left out of the resume fingerprint (like ``compile``).

    Each setting is measured by ``chinchilla gpu-check`` (docs/gpu.md); the defaults are the
    conservative ones until a GPU measurement says otherwise. All but ``cross_entropy`` and ``prefetch`` act
    on CUDA only.
    """

    # the next step's batch read from the shards (and pinned) in a background thread while this one
    # computes (train/prefetch.py); the same batches, so the same losses. BENCHMARKS.md measures it.
    prefetch: bool = True

    tf32: bool = True  # float32 matmuls outside autocast (none in the hot path under bf16) use TF32
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # "sliced": logits (B, T, padded V), then cross-entropy on the real V columns (a B x T x V copy, in
    # float32 under autocast); "chunked": model/loss.py, 4,096 rows at a time, no B x T x V tensor.
    cross_entropy: Literal["sliced", "chunked"] = "sliced"
    # SDPA backend: "auto" lets PyTorch choose (flash on Hopper for bf16); the others force one.
    attention: Literal["auto", "flash", "efficient", "cudnn", "math"] = "auto"
    fused_adamw: bool = True  # one fused CUDA kernel for AdamW (foreach otherwise)
    ddp_bucket_cap_mb: PositiveInt | None = None  # gradient all-reduce bucket, MB; None: PyTorch's (25, first 1)
    ddp_gradient_as_bucket_view: bool = True  # gradients live in the buckets: no copy, ~0.5 GB less at 124M
    ddp_static_graph: bool = False


class MuonConfig(StrictModel):
    """Muon on the blocks' matrices, AdamW on the rest, as nanochat (karpathy/nanochat, ``nanochat/gpt.py``
    ``setup_optimizers``): each group its own peak lr, all following one schedule (``ScheduleConfig``).

    AdamW's embedding and head lrs are scaled by (n_embd / 768)^-0.5, nanochat's rule, so the values
    below are those of a 768-wide model. Muon (``torch.optim.Muon``) scales each matrix's update by
    sqrt(max(1, rows / cols)) (its "original" adjustment, Keller Jordan's).
    """

    matrix_lr: PositiveFloat = 0.02  # Muon: every 2-D weight inside the blocks
    embedding_lr: PositiveFloat = 0.3  # AdamW: the token embedding (x (n_embd/768)^-0.5)
    head_lr: PositiveFloat = 0.008  # AdamW: the output head (x (n_embd/768)^-0.5); tied to the embedding: this lr
    momentum: float = Field(default=0.95, ge=0, lt=1)  # Muon's Nesterov momentum after its warmup
    # nanochat: momentum from 0.85 to 0.95, linearly over the first 300 steps
    momentum_start: float = Field(default=0.85, ge=0, lt=1)
    momentum_warmup_steps: int = Field(default=300, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)  # on the Muon matrices (decoupled, x lr)


class OptimizerConfig(StrictModel):
    """``kind`` "adamw": AdamW on every parameter, GPT-3 small's settings (lr 6e-4, betas (0.9, 0.95), decay
    0.1 on matrices only). ``kind`` "muon": ``muon``'s groups; then ``lr`` is AdamW's for the parameters
    that are neither block matrices, embedding nor head (biases, norm gains; none in the nanochat model)
    and ``weight_decay`` is not used (``muon.weight_decay`` is)."""

    kind: Literal["adamw", "muon"] = "adamw"
    lr: PositiveFloat = 6e-4
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)  # final lr = 6e-5
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    eps: PositiveFloat = 1e-8
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, ge=0)  # max global L2 norm; 0 turns clipping off
    muon: Optional[MuonConfig] = None  # kind "muon" only; missing: MuonConfig's defaults

    @model_validator(mode="before")
    @classmethod
    def _muon_block(cls, data):
        if isinstance(data, dict) and data.get("kind") == "muon" and data.get("muon") is None:
            return {**data, "muon": {}}
        return data

    @model_validator(mode="after")
    def _muon_only_with_muon(self):
        if self.kind == "adamw" and self.muon is not None:
            raise ValueError('"muon" settings need "kind": "muon"')
        return self

    @property
    def peak_lr(self) -> float:
        """The lr a log line shows: AdamW's, or Muon's matrix lr (the other groups follow the same schedule)."""
        return self.muon.matrix_lr if self.muon is not None else self.lr


class ScheduleConfig(StrictModel):
    """One schedule over the whole run (all phases): linear warmup, then cosine or WSD decay."""

    kind: Literal["cosine", "wsd"] = "cosine"
    # 2% of 4,747 steps = 95 steps = 50M tokens at 124M with 0.5M-token steps.
    warmup_share: float = Field(default=0.02, ge=0, lt=1)
    # WSD only: the lr stays at its peak until this share of the steps, then decays
    # linearly to min_lr (0.9 = a decay over the last 10%, as MiniCPM).
    decay_start_share: float = Field(default=0.9, gt=0, lt=1)
    # WSD only: the decay runs over exactly this phase, the last (an anneal phase, e.g. on the high-quality
    # mix, as OLMo 2's mid-training and MiniCPM's decay); it replaces decay_start_share.
    decay_phase: Optional[str] = Field(default=None, pattern=NAME_PATTERN)


class EvalConfig(StrictModel):
    interval_steps: PositiveInt = 250  # also always at every phase boundary and at the end
    # Tokens of each validation split evaluated (capped by the split's size): 1M = 1,024 sequences.
    tokens_per_source: PositiveInt = 1_048_576
    # HellaSwag at each evaluation (docs/evaluation.md): the validation jsonl (downloaded there when missing),
    # the run's tokenizer directory, and the first N items (None: all 10,042; 1,000 items: ~±1.4% stderr).
    hellaswag_path: Optional[str] = None
    hellaswag_tokenizer: Optional[str] = None
    hellaswag_max_items: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _hellaswag_tokenizer(self):
        if self.hellaswag_path is not None and self.hellaswag_tokenizer is None:
            raise ValueError("hellaswag_path needs hellaswag_tokenizer (the run's tokenizer directory)")
        return self


class CheckpointConfig(StrictModel):
    interval_steps: PositiveInt = 250  # ~131M tokens between checkpoints at 0.5M tokens per step
    keep_last: PositiveInt = 3  # periodic checkpoints kept; every phase's final one is kept too


class CurriculumConfig(StrictModel):
    """A curriculum run: outputs go to ``<out_dir>/<name>/`` (checkpoints, metrics, TensorBoard)."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1)  # path of a model config (config/models/*.json)
    seed: int = 1337
    # Total training tokens; default tokens_per_param x the model's parameter count (Chinchilla's ~20).
    total_tokens: Optional[Union[int, str]] = None
    tokens_per_param: PositiveFloat = DEFAULT_TOKENS_PER_PARAM
    phases: list[PhaseConfig] = Field(min_length=1)
    batch: BatchConfig = BatchConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log_interval_steps: PositiveInt = 10  # the only per-step host sync happens at this interval
    # "auto": bf16 autocast on CUDA, float32 on CPU.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # "auto": torch.compile on CUDA only (compiling costs ~20 s on CPU for a ~9% gain).
    compile: Literal["auto", "on", "off"] = "auto"
    speed: SpeedConfig = SpeedConfig()

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _parse_total(cls, v):
        return None if v is None else parse_token_count(v)

    @model_validator(mode="after")
    def _check_phases(self):
        check_phase_shares([p.name for p in self.phases], [p.share for p in self.phases])
        if self.schedule.decay_phase is not None:
            if self.schedule.kind != "wsd":
                raise ValueError('schedule.decay_phase needs "kind": "wsd"')
            if self.schedule.decay_phase != self.phases[-1].name:
                raise ValueError(
                    f"schedule.decay_phase '{self.schedule.decay_phase}' must name the last phase "
                    f"('{self.phases[-1].name}'): the decay ends with the run"
                )
        paths: dict[str, str] = {}
        for p in self.phases:
            for s in p.sources:
                if paths.setdefault(s.name, s.path) != s.path:
                    raise ValueError(f"source '{s.name}' has two paths: {paths[s.name]} and {s.path}")
        return self

    def domains(self) -> dict[str, str]:
        """Every source over all phases, name -> dataset path, in first-seen order."""
        out: dict[str, str] = {}
        for p in self.phases:
            for s in p.sources:
                out.setdefault(s.name, s.path)
        return out

    def with_eval(self, fields: dict) -> "CurriculumConfig":
        """This config with the ``eval`` fields given (None values ignored; the command line's ``--hellaswag_*``),
        validated again."""
        fields = {k: v for k, v in fields.items() if v is not None}
        if not fields:
            return self
        merged = {**self.eval.model_dump(), **fields}
        if merged.get("hellaswag_path") is not None and merged.get("hellaswag_tokenizer") is None:
            raise UserError(
                "--hellaswag_path needs --hellaswag_tokenizer (the run's tokenizer directory)",
                field="--hellaswag_tokenizer",
            )
        return self.model_copy(update={"eval": EvalConfig.model_validate(merged)})

    def phase_index(self, name: str) -> int:
        for i, p in enumerate(self.phases):
            if p.name == name:
                return i
        raise UserError(f"no phase named '{name}' (phases: {', '.join(p.name for p in self.phases)})")


def load_curriculum(path: str | Path) -> tuple[CurriculumConfig, ModelConfig]:
    """The curriculum config and the model config it names (both validated)."""
    cfg = load_config(CurriculumConfig, path)
    return cfg, load_model_config(cfg.model)
