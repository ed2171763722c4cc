"""``chinchilla gpu-check``: run every part in order and write ``gpu_check.json`` and ``gpu_check.md``.

GPU mode (at most ~7.5 minutes on one H100/H200): GPT-2 124M at context 1024, bf16,
compiled, for the throughput settings until ``budget_s``; the checkpoint write cost
of a 124M model with its AdamW state; the smoke run on GPT-2 124M's shape (12 x 768,
context 1024, the check's own 4,096-token vocabulary). CPU mode (the test suite): a
tiny model, float32, eager, gloo. Parts that fail are recorded with their error and
the check goes on; the exit code is 1 when any part failed.

Both files are rewritten (atomically) before and after every part and every throughput
setting or smoke run, marked ``"complete": false`` with the parts not yet run, so a kill
keeps what was measured. ``deadline_s`` bounds the whole check: throughput settings stop
starting at ``budget_s`` (or the deadline), the smoke subprocesses are killed at the
deadline less the export's reserve, a part that cannot start in time is recorded as an
error, and a hard stop (SIGALRM, ``HARD_STOP_GRACE_S`` past the deadline) or SIGTERM ends
the check with the results written.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..atomic import write_json, write_text
from ..errors import UserError
from ..model.config import ModelConfig, load_model_config
from ..train.checkpoint import save_checkpoint
from ..train.config import BatchConfig, CheckpointConfig, OptimizerConfig
from ..train.metrics import peak_flops
from ..train.setup import build_training
from . import smoke
from .env import environment
from .speed import CPU_SETTINGS, GPU_SETTINGS, SETTINGS, measure_all
from .table import markdown, throughput_rows

TARGET_TOKENS_PER_S = 500_000  # per H100-class GPU, GPT-2 124M at context 1,024 (issue 8; llm.c: ~468K)
REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "pydoc_topics.jsonl.gz"  # 789 real documents (Python's help topics)
GPT2_124M = REPO / "config" / "models" / "gpt2_124m.json"
NANOCHAT_124M = REPO / "config" / "models" / "nanochat_124m.json"
CPU_MODEL = {"name": "check_cpu", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 512}
CPU_NANOCHAT = {**CPU_MODEL, "name": "check_cpu_nanochat", "architecture": "nanochat", "bias": False}
PARTS = ["throughput", "checkpoint_write", "smoke_data", "smoke", "export"]
# The whole check's deadline and the throughput part's share of it, seconds from the start (docs/gpu.md has the
# estimate behind them): GPU mode ends well inside 8 minutes, the device's limit per command is 10.
DEFAULT_DEADLINE_S = {"gpu": 420.0, "cpu": 1200.0}
DEFAULT_BUDGET_S = {"gpu": 120.0, "cpu": None}
EXPORT_RESERVE_S = {"gpu": 30.0, "cpu": 10.0}  # the smoke runs end this long before the deadline
HARD_STOP_GRACE_S = 60.0  # past the deadline, an in-process part still running is interrupted
MARKER = ".made-by-gpu-check"  # in <out_dir>/work: the only kind of work directory the check deletes


class Stopped(BaseException):
    """SIGTERM or the hard stop: ends the whole check (not one part) once the results are written."""


def checkpoint_cost(model_cfg: ModelConfig, device: torch.device, work: Path, rounds: int = 2) -> dict[str, Any]:
    """Seconds to write a checkpoint of ``model_cfg`` with its AdamW state, as the trainer does (rank 0,
    atomic: temp file, fsync, rename), best of ``rounds``; the file's size."""
    torch.manual_seed(0)
    built = build_training(model_cfg, OptimizerConfig(), device, dtype="float32", compile_="off")  # trainer's AdamW
    model, opt = built.raw, built.optimizer
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
    rows = [r for r in throughput_rows(res) if "trainer_tokens_per_s" in r]
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


def scratch_dir(work: Path) -> Path:
    """Empty ``work`` for this check: an earlier check's (it holds ``MARKER``) is deleted, anything else refused."""
    if work.is_symlink() or (work.exists() and not (work / MARKER).is_file()):
        raise UserError(
            f"exists and was not made by gpu-check (no {MARKER} in it); the check deletes only its own scratch "
            "directory: move it away or choose another --out_dir",
            path=work,
        )
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text("scratch directory of `chinchilla gpu-check`: the next check deletes it\n")
    return work


def failed_parts(res: dict[str, Any]) -> list[str]:
    """Parts with an error (not run for the deadline included), then throughput settings with an error."""
    return [k for k in PARTS if isinstance(res.get(k), dict) and "error" in res[k]] + [
        f"throughput {r['setting']}" for r in throughput_rows(res) if "error" in r
    ]


def _error(res: dict[str, Any], name: str, message: str, tb: str | None = None) -> None:
    """Record ``message`` as part ``name``'s error, keeping what it had measured (a dict's fields, a list's rows)."""
    cur = res.get(name)
    kept = cur if isinstance(cur, dict) else {"rows": cur} if isinstance(cur, list) else {}
    res[name] = {**kept, "error": message[:3000], **({"traceback": tb[-3000:]} if tb else {})}


def _part(res: dict[str, Any], name: str, fn: Callable[[], Any], say, save, *, until: float | None) -> None:
    """Run one part unless ``until`` (time.monotonic) has passed; its result (or its error and traceback tail,
    with what it had measured) goes to ``res[name]``; the results are saved before and after."""
    res["running_part"] = name
    save()
    t0 = time.monotonic()
    if until is not None and t0 >= until:
        _error(res, name, f"not run: the check's deadline ({res['deadline_s']:.0f} s) had passed")
        say(f"{name}: not run (deadline)")
    else:
        try:
            res[name] = fn()
        except Exception as err:  # noqa: BLE001 - a failed part is reported, the others still run
            _error(res, name, f"{type(err).__name__}: {err}", traceback.format_exc())
            say(f"{name}: FAILED: {type(err).__name__}: {str(err)[:300]}")
    res.setdefault("part_seconds", {})[name] = round(time.monotonic() - t0, 1)
    res["pending_parts"].remove(name)
    res["running_part"] = None
    save()


@contextmanager
def _stops(hard_stop_s: float) -> Iterator[None]:
    """SIGTERM, and SIGALRM after ``hard_stop_s`` seconds, raise ``Stopped`` (main thread only; else nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        raise Stopped(
            "SIGTERM" if signum == signal.SIGTERM else f"hard stop: {HARD_STOP_GRACE_S:.0f} s past the deadline"
        )

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_REAL, hard_stop_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in old.items():
            signal.signal(sig, handler)


def gpu_check(
    mode: str,
    out_dir: Path,
    *,
    settings: list[str] | None = None,
    budget_s: float | None = None,
    deadline_s: float | None = None,
    corpus: Path = CORPUS,
    say=lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the check; write ``out_dir/gpu_check.json`` and ``out_dir/gpu_check.md`` before and after every part;
    return the results. ``budget_s``, ``deadline_s``: seconds from the start (defaults by mode above)."""
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
    deadline_s = deadline_s if deadline_s is not None else DEFAULT_DEADLINE_S[mode]
    budget_s = budget_s if budget_s is not None else DEFAULT_BUDGET_S[mode]
    deadline = start + deadline_s
    work = scratch_dir(out_dir / "work")
    res: dict[str, Any] = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "chinchilla " + " ".join(sys.argv[1:]),
        "complete": False,
        "pending_parts": list(PARTS),
        "running_part": None,
        "deadline_s": deadline_s,
        "budget_s": budget_s,
    }

    def save() -> None:
        res["wall_s"] = round(time.monotonic() - start, 1)
        summarise(res)
        res["failed_parts"] = failed_parts(res)
        write_json(out_dir / "gpu_check.json", res)
        write_text(out_dir / "gpu_check.md", markdown(res))

    try:  # recorded, not fatal: the parts below still measure
        res["environment"] = environment(device)
    except Exception as err:  # noqa: BLE001 - a probe of the machine that fails is a finding, not a crash
        res["environment"] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    say(f"gpu-check ({mode}): {res['environment'].get('card')}, torch {torch.__version__}, deadline {deadline_s:.0f} s")
    model_cfg = load_model_config(GPT2_124M) if gpu else ModelConfig(**CPU_MODEL)
    models = {"gpt2": model_cfg, "nanochat": load_model_config(NANOCHAT_124M) if gpu else ModelConfig(**CPU_NANOCHAT)}
    res["throughput_model"] = {
        "name": model_cfg.name,
        "params": model_cfg.num_params(),
        "context": model_cfg.block_size,
        "flops_per_token": model_cfg.flops_per_token(),
        "dtype": "bfloat16" if gpu else "float32",
    }
    shape = smoke.GPU_SHAPE if gpu else smoke.CPU_SHAPE
    threads = None if gpu else 1
    data: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    smoke_res: dict[str, Any] = {}
    smoke_until = deadline - EXPORT_RESERVE_S[mode]

    def throughput() -> list[dict[str, Any]]:
        res["throughput"] = rows  # filled setting by setting: each save shows the settings measured so far
        return measure_all(
            settings or (GPU_SETTINGS if gpu else CPU_SETTINGS),
            models,
            device,
            dtype="bfloat16" if gpu else "float32",
            steps=30 if gpu else 3,
            warmup=3 if gpu else 1,
            peak=peak_flops(device),
            deadline=min(start + budget_s, deadline) if budget_s is not None else deadline,
            say=say,
            compile_=None if gpu else "off",
            rows=rows,
            save=save,
        )

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

    def smoke_runs() -> dict[str, Any]:
        if "config" not in data:
            raise RuntimeError("no smoke data (see smoke_data's error)")
        res["smoke"] = smoke_res
        return smoke.smoke_runs(data["config"], work / "runs", shape, threads, say, smoke_until, smoke_res, save)

    def export() -> dict[str, Any]:
        if not isinstance(res.get("smoke"), dict) or "unbroken_s" not in res["smoke"]:
            raise RuntimeError("no unbroken smoke run to export (see smoke's error)")
        return smoke.export_logits(work / "runs" / "unbroken" / "smoke", data["tokenizer"], work / "hf", device)

    try:
        with _stops(max(deadline + HARD_STOP_GRACE_S - time.monotonic(), 1e-3)):
            _part(res, "throughput", throughput, say, save, until=deadline)
            _part(
                res,
                "checkpoint_write",
                lambda: checkpoint_cost(model_cfg, device, work / "ckpt_cost"),
                say,
                save,
                until=deadline,
            )
            _part(res, "smoke_data", make_data, say, save, until=deadline)
            _part(res, "smoke", smoke_runs, say, save, until=smoke_until)
            _part(res, "export", export, say, save, until=deadline)
    except (Stopped, KeyboardInterrupt) as err:
        why = str(err) if isinstance(err, Stopped) else "KeyboardInterrupt"
        res["stopped"] = f"{why} " + (f"during part {res['running_part']}" if res["running_part"] else "between parts")
        if res["running_part"]:
            _error(res, res["running_part"], f"stopped: {why}")
        save()
        say(f"gpu-check stopped ({res['stopped']}): {out_dir / 'gpu_check.md'} holds what was measured")
        if isinstance(err, KeyboardInterrupt):
            raise
        return res
    res["complete"] = True
    save()
    say(
        f"gpu-check done in {res['wall_s']:.0f} s: {out_dir / 'gpu_check.md'}"
        + (f"; FAILED: {', '.join(res['failed_parts'])}" if res["failed_parts"] else "")
    )
    return res
