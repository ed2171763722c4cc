"""Throughput of the trainer per speed setting, and of a bare loop of the same model for the baseline.

A setting is a set of ``SpeedConfig`` fields (``train/config.py``), a compile switch and a
micro batch ("auto": probed as ``"micro_batch_size": "auto"`` would be). Each is measured
in this process after ``torch._dynamo.reset()``, so no setting reuses another's compiled
code (the on-disk Inductor cache may still shorten its compile time: ``first_step_s``
is the first optimiser step, compilation included). MFU uses nanoGPT's formula
(``ModelConfig.flops_per_token``: 6N + 12·L·H·Q·T per token) against the card's dense bf16 peak.

The bare loop (one fixed batch on the device: no sampler, no logging) runs for ``BARE_FOR``
only: trainer/bare there is the check of the trainer's data loading and overhead. Another
compile per setting would cost the budget settings (on a GPU each compile of GPT-2 124M
takes about a minute); the other settings' bare fields are None.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..model.config import ModelConfig
from ..train.bench_train import bare_loop, make_trainer
from ..train.config import DEFAULT_GLOBAL_BATCH_TOKENS, BatchConfig, CurriculumConfig, OptimizerConfig, SpeedConfig
from ..train.distributed import Dist
from ..train.metrics import mfu
from ..train.microbatch import resolve_micro_batch


@dataclass(frozen=True)
class Setting:
    description: str
    speed: dict[str, Any] = field(default_factory=dict)  # SpeedConfig fields
    compile: str = "on"
    micro: int | str = 16  # sequences per forward pass, or "auto"
    recipe: str = "gpt2"  # a key of RECIPE_OPTIMIZERS and of the check's models: the model and its optimiser


# The optimiser of each recipe (its lrs do not change the step's cost): GPT-2's AdamW; nanochat's Muon + AdamW.
RECIPE_OPTIMIZERS = {"gpt2": OptimizerConfig(), "nanochat": OptimizerConfig(kind="muon")}


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
    "nanochat": Setting(
        "the modern recipe: nanochat architecture (config/models/nanochat_124m.json), Muon + AdamW",
        recipe="nanochat",
    ),
    "no_tf32": Setting("TF32 off for float32 matmuls", {"tf32": False}),
    "max_autotune": Setting(
        "compile mode max-autotune-no-cudagraphs (minutes of autotuning)",
        {"compile_mode": "max-autotune-no-cudagraphs"},
    ),
    "reduce_overhead": Setting("compile mode reduce-overhead (CUDA graphs)", {"compile_mode": "reduce-overhead"}),
}
# Measured by default on a GPU, most telling first; the budget may cut the tail. The others on request.
# "eager" right after the baseline: the compile-vs-eager comparison, and it costs no compilation.
GPU_SETTINGS = [
    "baseline",
    "eager",
    "nanochat",
    "chunked_ce",
    "auto_micro_chunked",
    "auto_micro",
    "flash",
    "cudnn",
    "foreach_adamw",
]
CPU_SETTINGS = ["baseline", "chunked_ce", "nanochat"]
BARE_FOR = "baseline"  # the one setting whose bare loop is measured too (trainer/bare: the trainer's overhead)
BARE_FIELDS = ("bare_tokens_per_s", "bare_first_step_s", "bare_peak_gib", "ratio", "bare_mfu")


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
    models: dict[str, ModelConfig],
    device: torch.device,
    *,
    dtype: str,
    steps: int,
    warmup: int,
    peak: float | None,
    compile_: str | None = None,
    bare: bool = True,
) -> dict[str, Any]:
    """Tokens/s, MFU, peak memory and first-step (compile) time of the trainer and, with ``bare``, of the
    bare loop (else the bare fields are None).

    ``compile_`` overrides the setting's compile switch (CPU mode: "off", compiling costs a minute there).
    """
    s = SETTINGS[name]
    speed = SpeedConfig(**s.speed)
    compile_ = compile_ or s.compile
    model_cfg, optimizer = models[s.recipe], RECIPE_OPTIMIZERS[s.recipe]
    out: dict[str, Any] = {
        "setting": name,
        "description": s.description,
        "compile": compile_,
        "speed": speed.model_dump(),
        "model": model_cfg.name,
        "params": model_cfg.num_params(),
        "optimizer": optimizer.kind,
    }
    micro = s.micro
    if micro == "auto":
        _free(device)
        micro, out["micro_probe"] = auto_micro(model_cfg, speed, dtype, device)
    out["micro_batch_size"] = micro
    fpt = model_cfg.flops_per_token()
    torch._dynamo.reset()
    _free(device)
    t_trainer = time.monotonic()
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
            optimizer=optimizer,
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
    out["trainer_mfu"] = mfu(fpt, rate, peak)
    out["trainer_wall_s"] = time.monotonic() - t_trainer  # the next setting's expected cost (measure_all)
    out.update(dict.fromkeys(BARE_FIELDS))
    out["bare_measured"] = bare
    if not bare:
        _free(device)
        return out
    torch._dynamo.reset()
    _free(device)
    bare_res = bare_loop(
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
        optimizer=optimizer,
    )
    out.update(
        bare_tokens_per_s=bare_res["tokens_per_s"],
        bare_first_step_s=bare_res["first_step_s"],
        bare_peak_gib=bare_res["peak_bytes"] / 2**30 if device.type == "cuda" else None,
        ratio=rate / bare_res["tokens_per_s"],
        bare_mfu=mfu(fpt, bare_res["tokens_per_s"], peak),
    )
    _free(device)
    return out


def measure_all(
    names: list[str],
    models: dict[str, ModelConfig],
    device: torch.device,
    *,
    dtype: str,
    steps: int,
    warmup: int,
    peak: float | None,
    deadline: float | None,
    say,
    compile_: str | None = None,
    rows: list[dict[str, Any]] | None = None,
    save: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """``measure`` each setting in order (the bare loop for ``BARE_FOR`` only), appending to ``rows`` and
    calling ``save`` after each, so a kill keeps the settings measured so far.

    A setting starts only if it is expected to end before ``deadline`` (time.monotonic): expected is the
    trainer's wall time of the last setting measured with the same compile switch (unknown: 0); the others
    are recorded as skipped. A setting that fails (e.g. a backend this card lacks) is reported with its
    error, not fatal.
    """
    rows = [] if rows is None else rows
    expected: dict[str, float] = {}  # compile switch -> seconds its last setting's trainer took
    for name in names:
        switch = compile_ or SETTINGS[name].compile
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < expected.get(switch, 0.0):
            why = f"time budget: {left:.0f} s left, ~{expected[switch]:.0f} s expected" if left > 0 else "time budget"
            rows.append({"setting": name, "description": SETTINGS[name].description, "skipped": why})
            say(f"throughput {name}: skipped ({why})")
            save()
            continue
        t0 = time.monotonic()
        try:
            row = measure(
                name,
                models,
                device,
                dtype=dtype,
                steps=steps,
                warmup=warmup,
                peak=peak,
                compile_=compile_,
                bare=name == BARE_FOR,
            )
            expected[switch] = row["trainer_wall_s"]
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
        save()
        say(
            f"throughput {name}: "
            + (
                row["error"]
                if "error" in row
                else f"trainer {row['trainer_tokens_per_s']:,.0f} tok/s"
                + (f", bare {row['bare_tokens_per_s']:,.0f} tok/s" if row["bare_measured"] else "")
                + f", micro {row['micro_batch_size']}"
            )
            + f" ({row['wall_s']:.0f} s)"
        )
    return rows
