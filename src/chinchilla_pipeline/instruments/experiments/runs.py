"""Shared by the experiments: family model configs, generated run configs, skip-or-train, final losses.

An experiment writes one curriculum config per run under ``<out_dir>/configs/`` and
trains it with the ordinary ``run_pretrain`` into ``<out_dir>/<run name>/``, so every
run is a normal run (metrics, checkpoints, resume). A rerun skips runs whose final
checkpoint exists, and refuses to reuse a run directory whose generated config changed.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from ...atomic import write_json
from ...data.reader import open_prepared
from ...errors import UserError
from ...model.config import Architecture, ModelConfig
from ...model.family import family_config
from ...train.config import CurriculumConfig
from ...train.metrics import read_metrics
from ...train.rundir import METRICS, list_checkpoints
from ...train.schedule import make_schedule


def dataset_vocab_size(path: str | Path) -> int:
    """The vocabulary of a prepared dataset (its manifest's ``vocab_size``)."""
    return open_prepared(path).vocab_size


def dataset_train_tokens(path: str | Path) -> int:
    """Training tokens of a prepared dataset (its manifest)."""
    return open_prepared(path).num_tokens("train")


def overall_proportions(phases: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each source's share of all training tokens: sum over phases of share x normalised weight."""
    out: dict[str, float] = {}
    for p in phases:
        total_w = sum(s.get("weight", 1.0) for s in p["sources"])
        for s in p["sources"]:
            out[s["name"]] = out.get(s["name"], 0.0) + p["share"] * s.get("weight", 1.0) / total_w
    return out


def write_family_model(
    out_dir: Path, width: int, vocab_size: int, block_size: int, architecture: Architecture = "gpt2"
) -> Path:
    """Write the family member of ``width`` as ``<out_dir>/models/w<width>.json`` (``<architecture>_w<width>``
    for another architecture than GPT-2's); returns its path."""
    cfg = family_config(width, vocab_size, block_size, architecture=architecture)
    path = out_dir / "models" / (f"w{width}.json" if architecture == "gpt2" else f"{architecture}_w{width}.json")
    write_json(path, cfg.model_dump())
    return path


def write_run_config(out_dir: Path, data: dict[str, Any]) -> Path:
    """Validate and write a run's curriculum config to ``<out_dir>/configs/<name>.json``.

    A run directory that exists with another config is a ``UserError``: its results
    would belong to the old settings.
    """
    cfg = CurriculumConfig.model_validate(data)
    path = out_dir / "configs" / f"{cfg.name}.json"
    if path.is_file() and (out_dir / cfg.name).is_dir() and json.loads(path.read_text()) != data:
        raise UserError(
            f"run '{cfg.name}' exists with other settings; delete {out_dir / cfg.name} or choose another --out_dir",
            path=path,
        )
    write_json(path, data)
    return path


def total_steps(config_path: Path, model: ModelConfig) -> int:
    """Optimiser steps of a run (one rank: the experiments train in one process)."""
    cfg = CurriculumConfig.model_validate(json.loads(Path(config_path).read_text()))
    return make_schedule(cfg, model, path=config_path).num_steps


def train_or_skip(config_path: Path, model: ModelConfig, out_dir: Path, device: str) -> float | None:
    """Train the run to its end unless its final checkpoint exists; returns the seconds taken
    (None when skipped). A NaN/inf loss is a ``RuntimeError`` naming the run."""
    from ...train.pretrain import run_pretrain

    name = config_path.stem
    ckpts = list_checkpoints(out_dir / name)
    if ckpts and ckpts[-1][0] >= total_steps(config_path, model):
        print(f"{name}: finished, skipped", flush=True)
        return None
    t0 = time.perf_counter()
    if run_pretrain(config_path, out_dir=out_dir, device=device) != 0:
        raise RuntimeError(f"run {name} stopped on a non-finite loss (see {out_dir / name / 'metrics.jsonl'})")
    seconds = time.perf_counter() - t0
    print(f"{name}: trained in {seconds:.0f} s", flush=True)
    return seconds


def final_validation(run_dir: Path, end_step: int) -> dict[str, dict[str, float]]:
    """Validation at the run's last step: {"loss": {domain: nats/token}, "bpb": {domain: bits/byte}}."""
    path = Path(run_dir) / METRICS
    records = read_metrics(path, "validation")
    if end_step not in records:
        raise UserError(f"no validation record at the final step {end_step}", path=path)
    if "bpb" not in records[end_step]:
        raise UserError(
            f"the validation record of step {end_step} has no bits per byte (trained before they were "
            f"measured): delete {Path(run_dir)} to train the run again",
            path=path,
        )
    return {unit: dict(records[end_step][unit]) for unit in ("loss", "bpb")}


def mean_over_domains(values: dict[str, float]) -> float:
    """The unweighted mean of per-domain values (every domain counts once, whatever its size)."""
    return sum(values.values()) / len(values)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max of ``values``."""
    vals = list(values)
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }
