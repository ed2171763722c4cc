"""``chinchilla bench-train``: the trainer's tokens/s against a bare PyTorch loop, in one process.

Both train the same model config (same init seed, optimiser, clipping, dtype,
compilation; ``--optimizer muon``: the modern recipe's Muon + AdamW) on the same
micro-batch size and accumulation. The bare loop reuses one batch already on the
device; the trainer draws its batches through the sampler from a prepared dataset
(random tokens, written to a temporary directory) and does its logging, so the ratio is the trainer's whole overhead.
Rounds alternate (bare, trainer, bare, trainer, ...) and the best of each counts:
on a shared machine the best round is the least disturbed one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ...data.manifest import write_token_dataset
from ...model.config import ModelConfig, load_model_config
from ...train.config import BatchConfig, CheckpointConfig, CurriculumConfig, EvalConfig, OptimizerConfig, SpeedConfig
from ...train.distributed import setup_distributed
from ...train.metrics import mfu, peak_flops
from ...train.pretrain import Run
from ...train.schedule import make_schedule
from ...train.setup import build_training

DEFAULT_SPEED = SpeedConfig()  # the trainer's defaults (a frozen config: safe to share)
DEFAULT_OPTIMIZER = OptimizerConfig()  # AdamW; OptimizerConfig(kind="muon") for the modern recipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(
    model_cfg: ModelConfig,
    device: torch.device,
    *,
    micro: int,
    accum: int,
    steps: int,
    warmup: int,
    dtype: str,
    compile_: str,
    seed: int,
    speed: SpeedConfig = DEFAULT_SPEED,
    optimizer: OptimizerConfig = DEFAULT_OPTIMIZER,
) -> dict[str, float]:
    """The plainest loop: forward, backward, clip, the optimiser step on one fixed batch, with ``speed``'s
    settings; the model, optimiser and precision from ``build_training``, as the trainer's.

    Returns ``tokens_per_s`` (timed steps), ``first_step_s`` (the first step: compilation included)
    and ``peak_bytes`` (CUDA's peak allocation; 0 on CPU).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(seed)
    built = build_training(model_cfg, optimizer, device, speed=speed, dtype=dtype, compile_=compile_)
    raw, model, opt, autocast = built.raw, built.model, built.optimizer, built.autocast
    batch = torch.randint(0, model_cfg.vocab_size, (micro, model_cfg.block_size + 1), device=device)
    x, y = batch[:, :-1], batch[:, 1:]

    def step() -> torch.Tensor:
        for _ in range(accum):
            with autocast():
                loss = model(x, y)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    rate = steps * accum * micro * model_cfg.block_size / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {"tokens_per_s": rate, "first_step_s": first, "peak_bytes": peak}


def make_trainer(
    model_cfg: ModelConfig,
    device: str,
    work: Path,
    *,
    micro: int,
    accum: int,
    steps: int,
    dtype: str,
    compile_: str,
    seed: int,
    speed: SpeedConfig = DEFAULT_SPEED,
    optimizer: OptimizerConfig = DEFAULT_OPTIMIZER,
) -> Run:
    """A training ``Run`` on a one-source curriculum over random tokens, sized so no phase ends while timed."""
    ctx, vocab = model_cfg.block_size, model_cfg.vocab_size
    rng = np.random.default_rng(seed)
    tokens_per_step = micro * accum * ctx
    num_docs = steps * tokens_per_step // 4096 + 2  # enough for the timed steps without starting a new epoch
    docs = [np.concatenate([[0], rng.integers(1, vocab, 4095)]) for _ in range(num_docs)]
    bytes_per_id = np.ones(vocab, dtype=np.int32)  # random ids stand for no text: 1 byte each, end-of-text 0
    bytes_per_id[0] = 0
    path = write_token_dataset(
        work / "data",
        "bench",
        {"train": docs, "validation": docs[:1]},
        vocab_size=vocab,
        eot_id=0,
        token_bytes=bytes_per_id,
    )
    cfg = CurriculumConfig(
        name="bench",
        model="<bench>",
        seed=seed,
        total_tokens=100 * steps * tokens_per_step,
        phases=[{"name": "bench", "share": 1.0, "sources": [{"name": "random", "path": str(path)}]}],
        batch=BatchConfig(global_batch_tokens=tokens_per_step, micro_batch_size=micro),
        optimizer=optimizer,
        eval=EvalConfig(interval_steps=10**9, tokens_per_source=ctx),
        checkpoint=CheckpointConfig(interval_steps=10**9),
        dtype=dtype,
        compile=compile_,
        speed=speed,
    )
    return Run(cfg, model_cfg, make_schedule(cfg, model_cfg), setup_distributed(device), work / "run")


def bench_train(
    model_path: str | Path,
    *,
    device: str = "auto",
    micro: int = 8,
    accum: int = 1,
    steps: int = 20,
    warmup: int = 3,
    dtype: str = "auto",
    compile_: str = "auto",
    rounds: int = 4,
    peak_tflops: float | None = None,
    speed: SpeedConfig = DEFAULT_SPEED,
    optimizer: OptimizerConfig = DEFAULT_OPTIMIZER,
) -> dict[str, float]:
    """Best-of-``rounds`` tokens/s of the bare loop and of the trainer, and trainer / bare."""
    model_cfg = load_model_config(model_path)
    bare, trained = [], []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            model_cfg,
            device,
            Path(tmp),
            micro=micro,
            accum=accum,
            steps=warmup + rounds * steps,
            dtype=dtype,
            compile_=compile_,
            seed=1337,
            speed=speed,
            optimizer=optimizer,
        )
        dev = trainer.dist.device
        trainer.train(warmup)
        for _ in range(rounds):
            bare.append(
                bare_loop(
                    model_cfg,
                    dev,
                    micro=micro,
                    accum=accum,
                    steps=steps,
                    warmup=warmup,
                    dtype=dtype,
                    compile_=compile_,
                    seed=1337,
                    speed=speed,
                    optimizer=optimizer,
                )["tokens_per_s"]
            )
            t0 = time.perf_counter()
            trainer.train(trainer.state.step + steps)  # ends with a flush: a host sync
            trained.append(steps * trainer.schedule.tokens_per_step / (time.perf_counter() - t0))
        trainer.log.close()
    peak = peak_tflops * 1e12 if peak_tflops else peak_flops(dev)
    fpt = model_cfg.flops_per_token()
    out = {"bare_tokens_per_s": max(bare), "trainer_tokens_per_s": max(trained)}
    out["ratio"] = out["trainer_tokens_per_s"] / out["bare_tokens_per_s"]
    out["trainer_mfu"] = mfu(fpt, out["trainer_tokens_per_s"], peak)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"model {model_cfg.name}: {model_cfg.num_params():,} params, context {model_cfg.block_size}, "
        f"{fpt:,} FLOPs/token; device {name}; micro-batch {micro} x accum {accum}; "
        f"optimizer {optimizer.kind}; dtype {dtype}, compile {compile_}, cross-entropy {speed.cross_entropy}; "
        f"best of {rounds} rounds of {steps} steps"
    )
    print(f"bare loop:  {out['bare_tokens_per_s']:,.0f} tokens/s   (rounds: {', '.join(f'{v:,.0f}' for v in bare)})")
    print(
        f"trainer:    {out['trainer_tokens_per_s']:,.0f} tokens/s   (rounds: {', '.join(f'{v:,.0f}' for v in trained)})"
    )
    print(f"ratio trainer/bare: {out['ratio']:.3f}")
    if out["trainer_mfu"] is not None:
        print(f"trainer MFU: {100 * out['trainer_mfu']:.1f}% of {peak / 1e12:.0f} TFLOP/s dense bf16 peak")
    else:
        print("MFU: not reported (no known peak for this device; pass --peak_tflops)")
    return out
