"""``chinchilla gpu-check``: run every part in order and write ``gpu_check.json`` and ``gpu_check.md``.

GPU mode (about 8 minutes on one H100/H200): GPT-2 124M at context 1024, bf16,
compiled, for the throughput settings until ``budget_s``; the checkpoint write cost
of a 124M model with its AdamW state; the smoke run on GPT-2 124M's shape (12 x 768,
context 1024, the check's own 4,096-token vocabulary). CPU mode (the test suite): a
tiny model, float32, eager, gloo. Parts that fail are recorded with their error and
the check goes on; the exit code is 1 when any part failed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import write_json, write_text
from ..errors import UserError
from ..model.config import ModelConfig, load_model_config
from ..model.gpt import GPT
from ..train.checkpoint import save_checkpoint
from ..train.config import BatchConfig, CheckpointConfig
from ..train.metrics import peak_flops
from . import smoke
from .env import environment
from .speed import CPU_SETTINGS, GPU_SETTINGS, SETTINGS, measure_all
from .table import markdown

TARGET_TOKENS_PER_S = 500_000  # per H100-class GPU, GPT-2 124M at context 1,024 (issue 8; llm.c: ~468K)
REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "pydoc_topics.jsonl.gz"  # 789 real documents (Python's help topics)
GPT2_124M = REPO / "config" / "models" / "gpt2_124m.json"
CPU_MODEL = {"name": "check_cpu", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 512}


def checkpoint_cost(model_cfg: ModelConfig, device: torch.device, work: Path, rounds: int = 2) -> dict[str, Any]:
    """Seconds to write a checkpoint of ``model_cfg`` with its AdamW state, as the trainer does (rank 0,
    atomic: temp file, fsync, rename), best of ``rounds``; the file's size."""
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randint(0, model_cfg.vocab_size, (1, model_cfg.block_size + 1), device=device)
    model(x[:, :-1], x[:, 1:]).backward()
    opt.step()  # creates the optimiser state (2 float32 tensors per parameter)
    times, path = [], None
    for r in range(rounds):
        t0 = time.perf_counter()
        path = save_checkpoint(
            work, {"step": r, "model": model.state_dict(), "optimizer": opt.state_dict()}, keep_last=1
        )
        times.append(time.perf_counter() - t0)
    size = path.stat().st_size
    shutil.rmtree(work)
    return {"write_s": min(times), "rounds_s": times, "bytes": size, "params": model_cfg.num_params()}


def summarise(res: dict[str, Any]) -> None:
    """The fastest setting against the target, and the checkpoint's share of training time at the baseline rate
    with the default interval (``CheckpointConfig``: every 250 steps of 524,288 tokens)."""
    rows = [r for r in res.get("throughput", []) if isinstance(r, dict) and "trainer_tokens_per_s" in r]
    if rows:
        best = max(rows, key=lambda r: r["trainer_tokens_per_s"])
        res["fastest"] = {
            "setting": best["setting"],
            "trainer_tokens_per_s": best["trainer_tokens_per_s"],
            "of_target": best["trainer_tokens_per_s"] / TARGET_TOKENS_PER_S,
        }
    base = next((r for r in rows if r["setting"] == "baseline"), None)
    ck = res.get("checkpoint_write", {})
    if base and "write_s" in ck:
        interval = CheckpointConfig().interval_steps * BatchConfig().global_batch_tokens / base["trainer_tokens_per_s"]
        ck.update(default_interval_s=interval, share_of_training=ck["write_s"] / (interval + ck["write_s"]))


def _part(results: dict[str, Any], name: str, fn: Callable[[], Any], say) -> None:
    """Run one part; its result (or its error and traceback tail) goes to ``results[name]``."""
    t0 = time.monotonic()
    try:
        results[name] = fn()
    except Exception as err:  # noqa: BLE001 - a failed part is reported, the others still run
        results[name] = {"error": f"{type(err).__name__}: {err}"[:3000], "traceback": traceback.format_exc()[-3000:]}
        say(f"{name}: FAILED: {type(err).__name__}: {str(err)[:300]}")
    results.setdefault("part_seconds", {})[name] = round(time.monotonic() - t0, 1)


def gpu_check(
    mode: str,
    out_dir: Path,
    *,
    settings: list[str] | None = None,
    budget_s: float | None = None,
    corpus: Path = CORPUS,
    say=lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the check; write ``out_dir/gpu_check.json`` and ``out_dir/gpu_check.md``; return the results."""
    start = time.monotonic()
    gpu = mode == "gpu"
    if gpu and not torch.cuda.is_available():
        raise UserError(
            f"no CUDA device visible (torch {torch.__version__}, CUDA build {torch.version.cuda}): "
            "run on a GPU machine, or use --mode cpu",
            field="--mode",
        )
    if not corpus.exists():
        raise UserError("the check's corpus is missing (run from a checkout of the repository)", path=corpus)
    for name in settings or []:
        if name not in SETTINGS:
            raise UserError(f"unknown setting '{name}' (known: {', '.join(SETTINGS)})", field="--settings")
    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    if work.exists():
        shutil.rmtree(work)  # the check's own scratch directory from an earlier check
    work.mkdir()
    res: dict[str, Any] = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "chinchilla " + " ".join(sys.argv[1:]),
        "environment": environment(device),
    }
    say(f"gpu-check ({mode}): {res['environment'].get('card')}, torch {torch.__version__}")
    model_cfg = load_model_config(GPT2_124M) if gpu else ModelConfig(**CPU_MODEL)
    res["throughput_model"] = {
        "name": model_cfg.name,
        "params": model_cfg.num_params(),
        "context": model_cfg.block_size,
        "flops_per_token": model_cfg.flops_per_token(),
        "dtype": "bfloat16" if gpu else "float32",
    }
    budget = budget_s if budget_s is not None else (150.0 if gpu else None)
    deadline = start + budget if budget is not None else None
    _part(
        res,
        "throughput",
        lambda: measure_all(
            settings or (GPU_SETTINGS if gpu else CPU_SETTINGS),
            model_cfg,
            device,
            dtype="bfloat16" if gpu else "float32",
            steps=30 if gpu else 3,
            warmup=3 if gpu else 1,
            peak=peak_flops(device),
            deadline=deadline,
            say=say,
            compile_=None if gpu else "off",
        ),
        say,
    )
    _part(res, "checkpoint_write", lambda: checkpoint_cost(model_cfg, device, work / "ckpt_cost"), say)
    summarise(res)
    shape = smoke.GPU_SHAPE if gpu else smoke.CPU_SHAPE
    threads = None if gpu else 1
    data: dict[str, Any] = {}

    def make_data() -> dict[str, Any]:
        tok, paths, vocab = smoke.make_data(corpus, work / "data", shape.vocab)
        data.update(tokenizer=tok, config=smoke.write_curriculum(work, shape, paths, vocab))
        return {
            "tokenizer": str(tok),
            "vocab_size": vocab,
            "datasets": {k: str(v) for k, v in paths.items()},
            "curriculum": json.loads(data["config"].read_text()),
            "model": {**shape.model, "vocab_size": vocab},
            "params": ModelConfig(**shape.model, vocab_size=vocab).num_params(),
        }

    _part(res, "smoke_data", make_data, say)
    if "config" in data:
        _part(res, "smoke", lambda: smoke.smoke_runs(data["config"], work / "runs", shape, threads, say), say)
        _part(
            res,
            "export",
            lambda: smoke.export_logits(work / "runs" / "unbroken" / "smoke", data["tokenizer"], work / "hf", device),
            say,
        )
    res["wall_s"] = round(time.monotonic() - start, 1)
    res["failed_parts"] = [k for k, v in res.items() if isinstance(v, dict) and "error" in v] + [
        f"throughput {r['setting']}" for r in res.get("throughput", []) if isinstance(r, dict) and "error" in r
    ]
    write_json(out_dir / "gpu_check.json", res)
    write_text(out_dir / "gpu_check.md", markdown(res))
    say(
        f"gpu-check done in {res['wall_s']:.0f} s: {out_dir / 'gpu_check.md'}"
        + (f"; FAILED: {', '.join(res['failed_parts'])}" if res["failed_parts"] else "")
    )
    return res
