"""The check's parts, each a function of one ``Context`` that returns its result (``check.py`` orders them).

GPU mode: the shipped recipes' models (124M parameters, context 1,024), bf16, compiled; the smoke runs on a
4 x 256 nanochat model (``smoke.GPU_SHAPE``). CPU mode (the test suite): tiny models, float32, eager, gloo.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ...model.config import ModelConfig, load_model_config
from ...schema import load_config
from ...train.config import CurriculumConfig
from ...train.metrics import peak_flops
from ...train.rundir import METRICS
from . import smoke, speed
from .env import environment
from .logits import export_logits

REPO = Path(__file__).resolve().parents[4]
CORPUS = REPO / "tests" / "fixtures" / "pydoc_topics.jsonl.gz"  # 789 real documents (Python's help topics)
CPU_MODELS = {  # the recipes' architectures, tiny
    "gpt2": {"name": "check_cpu_gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 512},
    "nanochat": {
        "name": "check_cpu_nanochat",
        "architecture": "nanochat",
        "bias": False,
        "n_layer": 2,
        "n_head": 1,
        "n_embd": 64,
        "block_size": 64,
        "vocab_size": 512,
    },
}


@dataclass
class Context:
    """What the parts share: the machine, the scratch directory, the results so far and how to save them."""

    mode: str
    device: torch.device
    work: Path
    res: dict[str, Any]
    save: Callable[[], None]
    say: Callable[[str], None]
    settings: list[str]  # part (vi)'s
    recipes: dict[str, tuple[CurriculumConfig, ModelConfig]]  # default recipe first
    shape: smoke.SmokeShape
    until: float = 0.0  # time.monotonic by which the running part must end (check.py sets it)
    data: dict[str, Path] = field(default_factory=dict)  # smoke data: tokenizer, curriculum

    @property
    def threads(self) -> int | None:
        return None if self.mode == "gpu" else 1  # CPU mode: one thread per subprocess (2-core CI)


@dataclass(frozen=True)
class Part:
    name: str
    run: Callable[[Context], Any]


def make_context(mode: str, work: Path, res: dict, save, say, settings: list[str] | None) -> Context:
    gpu = mode == "gpu"
    recipes = {}
    for name, path in speed.RECIPES.items():
        cfg = load_config(CurriculumConfig, REPO / path)
        model = load_model_config(REPO / cfg.model) if gpu else ModelConfig(**CPU_MODELS[name])
        recipes[name] = (cfg, model)
    return Context(
        mode=mode,
        device=torch.device("cuda", 0) if gpu else torch.device("cpu"),
        work=work,
        res=res,
        save=save,
        say=say,
        settings=settings or (speed.GPU_SETTINGS if gpu else speed.CPU_SETTINGS),
        recipes=recipes,
        shape=smoke.GPU_SHAPE if gpu else smoke.CPU_SHAPE,
    )


def environment_part(ctx: Context) -> dict[str, Any]:
    """(i) The machine."""
    env = environment(ctx.device)
    ctx.say(f"environment: {env.get('card')}, torch {env['torch']}, CUDA build {env['cuda_build']}")
    return env


def throughput_part(ctx: Context) -> list[dict[str, Any]]:
    """(ii) Each shipped recipe as shipped; the next one starts only if the last one's time still fits."""
    rows: list[dict[str, Any]] = []
    ctx.res["throughput"] = rows  # filled recipe by recipe: each save shows the recipes measured so far
    peak = peak_flops(ctx.device)
    for name, (cfg, model_cfg) in ctx.recipes.items():
        left = ctx.until - time.monotonic()
        if rows and "wall_s" in rows[-1] and left < rows[-1]["wall_s"]:
            rows.append(
                {"recipe": name, "skipped": f"time: {max(left, 0):.0f} s left, ~{rows[-1]['wall_s']:.0f} s expected"}
            )
        else:
            try:
                rows.append(speed.measure_recipe(name, cfg, model_cfg, ctx.device, mode=ctx.mode, peak=peak))
            except Exception as err:  # noqa: BLE001 - the other recipe still measures
                speed.free(ctx.device)
                rows.append({"recipe": name, "error": f"{type(err).__name__}: {str(err)[:500]}"})
        ctx.save()
        r = rows[-1]
        ctx.say(
            f"throughput {name}: "
            + (
                r.get("skipped")
                or r.get("error")
                or f"{r['trainer_tokens_per_s']:,.0f} tok/s, micro {r['micro_batch_size']}, "
                f"first step {r['first_step_s']:.0f} s"
            )
        )
    return rows


def smoke_data_part(ctx: Context) -> dict[str, Any]:
    """A tokenizer and two datasets from the repository's test corpus; the smoke curriculum."""
    tok, paths, vocab = smoke.make_data(CORPUS, ctx.work / "data", ctx.shape.vocab)
    default_cfg = next(iter(ctx.recipes.values()))[0]
    config = smoke.write_curriculum(ctx.work, ctx.shape, paths, vocab, default_cfg.optimizer.model_dump())
    ctx.data.update(tokenizer=tok, config=config)
    model = ModelConfig(**ctx.shape.model, vocab_size=vocab)
    return {
        "tokenizer": str(tok),
        "vocab_size": vocab,
        "datasets": {k: str(v) for k, v in paths.items()},
        "curriculum": json.loads(config.read_text()),
        "model": {**ctx.shape.model, "vocab_size": vocab},
        "params": model.num_params(),
    }


def _config(ctx: Context) -> Path:
    if "config" not in ctx.data:
        raise RuntimeError("no smoke data (see smoke_data's error)")
    return ctx.data["config"]


def torchrun_part(ctx: Context) -> dict[str, Any]:
    """(iii) The smoke run under torchrun --nproc_per_node=1: NCCL DDP, accumulation 2, so no_sync runs."""
    out = smoke.torchrun_run(_config(ctx), ctx.work / "runs", ctx.shape, ctx.threads, ctx.until)
    ctx.say(
        f"torchrun: {out['wall_s']:.0f} s, {out['backend']} process group {out['process_group']}, "
        f"accumulation {out['grad_accum']}"
    )
    return out


def smoke_part(ctx: Context) -> dict[str, Any]:
    """(iv) Two unbroken runs, then kill -9 mid phase a and a resume across the phase boundary."""
    out: dict[str, Any] = {}
    ctx.res["smoke"] = out
    return smoke.smoke_runs(_config(ctx), ctx.work / "runs", ctx.shape, ctx.threads, ctx.say, ctx.until, out, ctx.save)


def export_part(ctx: Context) -> dict[str, Any]:
    """(v) The export's logits against the model's."""
    run_dir = ctx.work / "runs" / "unbroken" / "smoke"
    if (
        not (run_dir / METRICS).is_file()
        or not isinstance(ctx.res.get("smoke"), dict)
        or "unbroken_s" not in ctx.res["smoke"]
    ):
        raise RuntimeError("no unbroken smoke run to export (see smoke's error)")
    return export_logits(run_dir, ctx.data["tokenizer"], ctx.work / "hf", ctx.device)


def more_speed_part(ctx: Context) -> list[dict[str, Any]]:
    """(vi) Further speed settings over the default recipe, cheapest first, while time remains."""
    name, (cfg, model_cfg) = next(iter(ctx.recipes.items()))
    rows = ctx.res.get("throughput")
    base = (
        next((r for r in rows if r.get("recipe") == name and "wall_s" in r and "error" not in r), None)
        if isinstance(rows, list)
        else None
    )
    if base is None:
        raise RuntimeError(f"no measurement of the default recipe '{name}' to compare with (see throughput)")
    out: list[dict[str, Any]] = []
    ctx.res["more_speed"] = out
    return speed.measure_settings(
        ctx.settings,
        base,
        cfg,
        model_cfg,
        ctx.device,
        mode=ctx.mode,
        peak=peak_flops(ctx.device),
        until=ctx.until,
        rows=out,
        save=ctx.save,
        say=ctx.say,
    )
