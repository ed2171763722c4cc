"""Throughput of the trainer against a bare loop of the same model, one speed setting at a time.

A setting is a set of ``SpeedConfig`` fields (``train/config.py``), a compile switch and a
micro batch ("auto": probed as ``"micro_batch_size": "auto"`` would be). Each is measured
in this process after ``torch._dynamo.reset()``, so no setting reuses another's compiled
code (the on-disk Inductor cache may still shorten its compile time: ``first_step_s``
is the first optimiser step, compilation included). MFU uses nanoGPT's formula
(``ModelConfig.flops_per_token``: 6N + 12·L·H·Q·T per token) against the card's dense bf16 peak.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model.config import ModelConfig
from ..train.bench_train import bare_loop, make_trainer
from ..train.config import DEFAULT_GLOBAL_BATCH_TOKENS, BatchConfig, CurriculumConfig, SpeedConfig
from ..train.distributed import Dist
from ..train.metrics import mfu
from ..train.microbatch import resolve_micro_batch


@dataclass(frozen=True)
class Setting:
    description: str
    speed: dict[str, Any] = field(default_factory=dict)  # SpeedConfig fields
    compile: str = "on"
    micro: int | str = 16  # sequences per forward pass, or "auto"


SETTINGS: dict[str, Setting] = {
    "baseline": Setting(
        "SpeedConfig defaults: sliced cross-entropy, fused AdamW, SDPA auto, TF32, compile mode default"
    ),
    "chunked_ce": Setting("cross-entropy in 4,096-row chunks (no B x T x V logits)", {"cross_entropy": "chunked"}),
    "auto_micro": Setting("largest micro batch that fits (sliced cross-entropy)", micro="auto"),
    "auto_micro_chunked": Setting(
        "largest micro batch that fits, chunked cross-entropy", {"cross_entropy": "chunked"}, micro="auto"
    ),
    "flash": Setting("SDPA forced to the flash kernel", {"attention": "flash"}),
    "cudnn": Setting("SDPA forced to cuDNN attention", {"attention": "cudnn"}),
    "foreach_adamw": Setting("AdamW foreach instead of fused", {"fused_adamw": False}),
    "eager": Setting("no torch.compile", compile="off"),
    "no_tf32": Setting("TF32 off for float32 matmuls", {"tf32": False}),
    "max_autotune": Setting(
        "compile mode max-autotune-no-cudagraphs (minutes of autotuning)",
        {"compile_mode": "max-autotune-no-cudagraphs"},
    ),
    "reduce_overhead": Setting("compile mode reduce-overhead (CUDA graphs)", {"compile_mode": "reduce-overhead"}),
}
# Measured by default on a GPU, most telling first; the budget may cut the tail. The others on request.
GPU_SETTINGS = [
    "baseline",
    "chunked_ce",
    "auto_micro_chunked",
    "auto_micro",
    "flash",
    "cudnn",
    "foreach_adamw",
    "eager",
]
CPU_SETTINGS = ["baseline", "chunked_ce"]


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def auto_micro(
    model_cfg: ModelConfig,
    speed: SpeedConfig,
    dtype: str,
    device: torch.device,
    global_batch_tokens: int = DEFAULT_GLOBAL_BATCH_TOKENS,
) -> tuple[int, list[str]]:
    """What ``"micro_batch_size": "auto"`` resolves to for llm.c's 2^19-token global batch, and the probe log."""
    cfg = CurriculumConfig(
        name="probe",
        model="<probe>",
        phases=[{"name": "p", "share": 1.0, "sources": [{"name": "s", "path": "<none>"}]}],
        batch=BatchConfig(global_batch_tokens=global_batch_tokens, micro_batch_size="auto"),
        dtype=dtype,
        speed=speed,
    )
    log: list[str] = []
    micro = resolve_micro_batch(cfg, model_cfg, Dist(0, 0, 1, device), log=log.append)
    return micro, log


def measure(
    name: str,
    model_cfg: ModelConfig,
    device: torch.device,
    *,
    dtype: str,
    steps: int,
    warmup: int,
    peak: float | None,
    compile_: str | None = None,
) -> dict[str, Any]:
    """Tokens/s, MFU, peak memory and first-step (compile) time of the trainer and of the bare loop.

    ``compile_`` overrides the setting's compile switch (CPU mode: "off", compiling costs a minute there).
    """
    s = SETTINGS[name]
    speed = SpeedConfig(**s.speed)
    compile_ = compile_ or s.compile
    out: dict[str, Any] = {
        "setting": name,
        "description": s.description,
        "compile": compile_,
        "speed": speed.model_dump(),
    }
    micro = s.micro
    if micro == "auto":
        _free(device)
        micro, out["micro_probe"] = auto_micro(model_cfg, speed, dtype, device)
    out["micro_batch_size"] = micro
    fpt = model_cfg.flops_per_token()
    torch._dynamo.reset()
    _free(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            model_cfg,
            str(device.type),
            Path(tmp),
            micro=micro,
            accum=1,
            steps=warmup + steps,
            dtype=dtype,
            compile_=compile_,
            seed=1337,
            speed=speed,
        )
        t0 = time.perf_counter()
        trainer.train(1)  # ends with a flush: a host sync
        out["trainer_first_step_s"] = time.perf_counter() - t0
        trainer.train(warmup)
        t0 = time.perf_counter()
        trainer.train(warmup + steps)
        rate = steps * trainer.plan.tokens_per_step / (time.perf_counter() - t0)
        trainer.log.close()
        del trainer
    out["trainer_tokens_per_s"] = rate
    out["trainer_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    torch._dynamo.reset()
    _free(device)
    bare = bare_loop(
        model_cfg,
        device,
        micro=micro,
        accum=1,
        steps=steps,
        warmup=warmup,
        dtype=dtype,
        compile_=compile_,
        seed=1337,
        speed=speed,
    )
    out.update(
        bare_tokens_per_s=bare["tokens_per_s"],
        bare_first_step_s=bare["first_step_s"],
        bare_peak_gib=bare["peak_bytes"] / 2**30 if device.type == "cuda" else None,
    )
    out["ratio"] = rate / bare["tokens_per_s"]
    out["trainer_mfu"] = mfu(fpt, rate, peak)
    out["bare_mfu"] = mfu(fpt, bare["tokens_per_s"], peak)
    _free(device)
    return out


def measure_all(
    names: list[str],
    model_cfg: ModelConfig,
    device: torch.device,
    *,
    dtype: str,
    steps: int,
    warmup: int,
    peak: float | None,
    deadline: float | None,
    say,
    compile_: str | None = None,
) -> list[dict[str, Any]]:
    """``measure`` each setting in order; those left when ``deadline`` (time.monotonic) has passed are skipped.

    A setting that fails (e.g. a backend this card lacks) is reported with its error, not fatal.
    """
    rows = []
    for name in names:
        if deadline is not None and time.monotonic() > deadline:
            rows.append({"setting": name, "description": SETTINGS[name].description, "skipped": "time budget"})
            say(f"throughput {name}: skipped (time budget)")
            continue
        t0 = time.monotonic()
        try:
            row = measure(
                name, model_cfg, device, dtype=dtype, steps=steps, warmup=warmup, peak=peak, compile_=compile_
            )
        except Exception as err:  # noqa: BLE001 - one failing setting must not lose the others' figures
            torch._dynamo.reset()
            _free(device)
            row = {
                "setting": name,
                "description": SETTINGS[name].description,
                "error": f"{type(err).__name__}: {str(err)[:500]}",
            }
        row["wall_s"] = time.monotonic() - t0
        rows.append(row)
        say(
            f"throughput {name}: "
            + (
                row["error"]
                if "error" in row
                else f"trainer {row['trainer_tokens_per_s']:,.0f} tok/s, bare "
                f"{row['bare_tokens_per_s']:,.0f} tok/s, micro {row['micro_batch_size']}"
            )
            + f" ({row['wall_s']:.0f} s)"
        )
    return rows
