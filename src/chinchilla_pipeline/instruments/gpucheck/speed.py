"""Throughput of the shipped recipes, then of further speed settings, with as few compilations as possible.

A recipe is a shipped curriculum config (its model, optimiser, speed section and 2^19-token batch); it is
measured as shipped: bf16, compiled, at the micro batch ``"auto"`` resolves to on this card. The bare loop
(one fixed batch on the device: no sampler, no logging) then runs on the trainer's own compiled model, so
it reuses the trainer's graph: no second compile of the same graph.

A further setting changes ``SpeedConfig`` fields of the default recipe (or its compile switch). Nothing here
calls ``torch._dynamo.reset()`` before a setting whose graph equals the recipe's (``foreach_adamw``: only the
optimiser differs; Dynamo reuses a graph across instances of one model class), so it is served from the
graphs already compiled; a setting that needs a graph of its own (a loss, an attention backend, a compile
mode) resets first, so its number is never the recipe's graph's. ``graphs_compiled`` (Dynamo's count of
new graphs) says which happened. MFU uses nanoGPT's / nanochat's formula (``ModelConfig.flops_per_token``:
6N + 12·L·H·Q·T per token) against the card's dense bf16 peak.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from ...model.config import ModelConfig
from ...train.config import CurriculumConfig, SpeedConfig
from ...train.distributed import Dist
from ...train.layout import resolve_layout
from ...train.metrics import mfu
from ...train.pretrain import Run
from ...train.schedule import make_schedule
from ...train.setup import build_training
from ..bench.train import make_trainer

# The shipped recipes, default first (config/curriculum/, RECIPE=nanochat | gpt2 in the Makefile).
RECIPES = {
    "nanochat": "config/curriculum/chinchilla_124m_pg19.json",  # nanochat_124m.json, Muon + AdamW
    "gpt2": "config/curriculum/chinchilla_124m_pg19_gpt2.json",  # gpt2_124m.json, AdamW
}


@dataclass(frozen=True)
class Setting:
    description: str
    speed: dict[str, Any] = field(default_factory=dict)  # SpeedConfig fields over the default recipe's
    compile: str = "on"
    new_graph: bool = True  # False: the recipe's compiled graph serves it (same model, loss, attention, shape)
    own_micro: bool = False  # True: its own "auto" probe (a loss that needs less memory); else the recipe's


# Part (vi), cheapest first: two that compile nothing new, then one new graph each (~1 minute on a GPU).
SETTINGS: dict[str, Setting] = {
    "foreach_adamw": Setting("AdamW foreach instead of fused", {"fused_adamw": False}, new_graph=False),
    "eager": Setting("no torch.compile", compile="off", new_graph=False),
    "chunked_ce": Setting(
        "cross-entropy in 4,096-row chunks (no B x T x V logits), its own auto micro batch",
        {"cross_entropy": "chunked"},
        own_micro=True,
    ),
    "flash": Setting("SDPA forced to the flash kernel", {"attention": "flash"}),
    "cudnn": Setting("SDPA forced to cuDNN attention", {"attention": "cudnn"}),
    "no_tf32": Setting("TF32 off for float32 matmuls", {"tf32": False}),
    "reduce_overhead": Setting("compile mode reduce-overhead (CUDA graphs)", {"compile_mode": "reduce-overhead"}),
    "max_autotune": Setting(
        "compile mode max-autotune-no-cudagraphs (minutes of autotuning)",
        {"compile_mode": "max-autotune-no-cudagraphs"},
    ),
}
GPU_SETTINGS = ["foreach_adamw", "eager", "chunked_ce", "flash", "cudnn"]  # the others on request (--settings)
CPU_SETTINGS = ["foreach_adamw", "chunked_ce"]
STEPS = {"gpu": (20, 3), "cpu": (3, 1)}  # (timed steps, warm-up steps after the first) per measurement


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def graphs_compiled() -> int:
    """Dynamo's count of graphs compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def auto_micro(cfg: CurriculumConfig, model_cfg: ModelConfig, device: torch.device) -> tuple[int, list[str]]:
    """What ``cfg``'s ``"micro_batch_size": "auto"`` resolves to on ``device`` (its model, optimiser, loss,
    dtype, 2^19-token batch), and the probe's log."""
    log: list[str] = []
    free(device)
    build = partial(build_training, model_cfg, cfg.optimizer, device, speed=cfg.speed, dtype=cfg.dtype)
    layout = resolve_layout(
        make_schedule(cfg, model_cfg),
        cfg.batch.model_copy(update={"micro_batch_size": "auto"}),
        Dist(0, 0, 1, device),
        build,
        model_cfg.vocab_size,
        log=log.append,
    )
    return layout.micro_batch_size, log


def bare_steps(trainer: Run, steps: int, warmup: int) -> dict[str, float]:
    """The plainest loop on the trainer's own (compiled) model and optimiser: forward, backward, clip, step on
    one fixed batch of the trainer's shape, so no graph is compiled again. Tokens/s and peak bytes."""
    dev, micro, ctx = trainer.dist.device, trainer.layout.micro_batch_size, trainer.schedule.context
    batch = torch.randint(0, trainer.model_cfg.vocab_size, (micro, ctx + 1), device=dev)
    x, y = batch[:, :-1], batch[:, 1:]

    def step() -> torch.Tensor:
        with trainer.autocast():
            loss = trainer.model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.raw.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        return loss

    free(dev)
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)  # the warm-up's queued kernels stay out of the timed steps
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()  # a host sync
    rate = steps * micro * ctx / (time.perf_counter() - t0)
    return {"tokens_per_s": rate, "peak_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else 0}


def measure(
    cfg: CurriculumConfig,
    model_cfg: ModelConfig,
    device: torch.device,
    *,
    micro: int,
    compile_: str,
    mode: str,
    peak: float | None,
    bare: bool,
) -> dict[str, Any]:
    """The trainer's tokens/s, MFU, peak memory and first step (compilation included) at ``micro`` sequences
    per step (no accumulation: the rate per token is the same); with ``bare`` the bare loop on its model."""
    steps, warmup = STEPS[mode]
    fpt = model_cfg.flops_per_token()
    out: dict[str, Any] = {"micro_batch_size": micro, "compile": compile_}
    graphs0 = graphs_compiled()
    free(device)
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            model_cfg,
            str(device.type),
            Path(tmp),
            micro=micro,
            accum=1,
            steps=1 + warmup + steps,
            dtype=cfg.dtype,
            compile_=compile_,
            seed=1337,
            speed=cfg.speed,
            optimizer=cfg.optimizer,
        )
        t0 = time.perf_counter()
        trainer.train(1)  # ends with a flush: a host sync
        out["first_step_s"] = time.perf_counter() - t0  # compilation included
        trainer.train(1 + warmup)
        t0 = time.perf_counter()
        trainer.train(1 + warmup + steps)
        rate = steps * trainer.schedule.tokens_per_step / (time.perf_counter() - t0)
        out["compile_s"] = max(out["first_step_s"] - trainer.schedule.tokens_per_step / rate, 0.0)  # less one step
        out["graphs_compiled"] = graphs_compiled() - graphs0
        out["trainer_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        out.update(trainer_tokens_per_s=rate, trainer_mfu=mfu(fpt, rate, peak))
        if bare:
            b = bare_steps(trainer, steps, warmup)
            out.update(
                bare_tokens_per_s=b["tokens_per_s"],
                bare_mfu=mfu(fpt, b["tokens_per_s"], peak),
                bare_peak_gib=b["peak_bytes"] / 2**30 if device.type == "cuda" else None,
                ratio=rate / b["tokens_per_s"],
                graphs_compiled_bare=graphs_compiled() - graphs0 - out["graphs_compiled"],
            )
        trainer.log.close()
        del trainer
    out["wall_s"] = time.monotonic() - t_all
    free(device)
    return out


def measure_recipe(
    name: str, cfg: CurriculumConfig, model_cfg: ModelConfig, device: torch.device, *, mode: str, peak: float | None
) -> dict[str, Any]:
    """One shipped recipe as shipped (compiled on a GPU, eager in CPU mode), with the bare loop."""
    t0 = time.monotonic()
    micro, probe = auto_micro(cfg, model_cfg, device)
    row = {
        "recipe": name,
        "curriculum": RECIPES[name],
        "model": model_cfg.name,
        "params": model_cfg.num_params(),
        "flops_per_token": model_cfg.flops_per_token(),
        "optimizer": cfg.optimizer.kind,
        "speed": cfg.speed.model_dump(),
        "micro_probe": probe,
        "probe_s": time.monotonic() - t0,
    }
    row.update(
        measure(
            cfg,
            model_cfg,
            device,
            micro=micro,
            compile_="on" if mode == "gpu" else "off",
            mode=mode,
            peak=peak,
            bare=True,
        )
    )
    row["wall_s"] = time.monotonic() - t0
    return row


def measure_settings(
    names: list[str],
    base: dict[str, Any],
    cfg: CurriculumConfig,
    model_cfg: ModelConfig,
    device: torch.device,
    *,
    mode: str,
    peak: float | None,
    until: float,
    rows: list[dict[str, Any]],
    save: Callable[[], None],
    say,
) -> list[dict[str, Any]]:
    """Each setting over the default recipe (``base``: its measured row), appended to ``rows`` and saved.

    A setting starts only if it is expected to end before ``until`` (time.monotonic): a new graph is expected
    to cost the recipe's whole measurement (its compile included), a shared graph or eager its wall time less
    the first step. The others are recorded as skipped; one that fails (a backend this card lacks) is recorded
    with its error."""
    for name in names:
        s = SETTINGS[name]
        expected = base["wall_s"] if s.new_graph else base["wall_s"] - base["first_step_s"] - base.get("probe_s", 0)
        left = until - time.monotonic()
        row: dict[str, Any] = {"setting": name, "description": s.description, "new_graph": s.new_graph}
        if left < expected:
            row["skipped"] = f"time: {max(left, 0):.0f} s left, ~{expected:.0f} s expected"
        else:
            t0 = time.monotonic()
            if s.new_graph:  # its own graph for certain (a backend or mode that Dynamo's guards may not see)
                torch._dynamo.reset()
            try:
                scfg = cfg.model_copy(update={"speed": SpeedConfig(**{**cfg.speed.model_dump(), **s.speed})})
                micro = auto_micro(scfg, model_cfg, device)[0] if s.own_micro else base["micro_batch_size"]
                compile_ = s.compile if mode == "gpu" else "off"
                row.update(
                    measure(scfg, model_cfg, device, micro=micro, compile_=compile_, mode=mode, peak=peak, bare=False)
                )
            except Exception as err:  # noqa: BLE001 - one failing setting must not lose the others' figures
                free(device)
                row["error"] = f"{type(err).__name__}: {str(err)[:500]}"
            row["wall_s"] = time.monotonic() - t0
        rows.append(row)
        save()
        say(
            f"speed {name}: "
            + (
                row.get("skipped")
                or row.get("error")
                or f"{row['trainer_tokens_per_s']:,.0f} tok/s, micro {row['micro_batch_size']}"
            )
        )
    return rows
