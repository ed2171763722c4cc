"""The curriculum smoke run: real data made here, a two-phase run killed and resumed, torchrun, export.

Data: a tokenizer trained on a small local corpus and two datasets prepared from it
with the project's own ``tokenizer-train`` and ``prepare`` code. Runs: ``chinchilla
pretrain`` subprocesses, exactly what a user starts: an unbroken run; the same run
SIGKILLed after its first mid-phase checkpoint and resumed (the resume crosses the phase
boundary); the same run under ``torchrun --nproc_per_node=1`` (a process group and DDP:
NCCL on CUDA, gloo on CPU). Trajectories are compared step by step.

Every subprocess runs in its own process group with a timeout: the time left before the
check's deadline. On timeout the group and every descendant (torchrun starts its workers
in sessions of their own) are SIGKILLed and the run raises, so a hang (NCCL, a compile)
costs the smoke part, not the check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.config import DatasetConfig
from ..data.prepare import prepare_dataset
from ..schema import load_config
from ..tokenizer.train import train_tokenizer
from ..train.checkpoint import list_checkpoints, load_checkpoint
from ..train.metrics import read_all_metrics

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # src/: PYTHONPATH of the subprocesses


@dataclass(frozen=True)
class SmokeShape:
    """The run's size: model shape (vocabulary from the tokenizer), batch, steps, intervals."""

    model: dict[str, Any]
    vocab: int  # tokenizer size asked for
    tokens_per_step: int
    steps: int  # two phases of steps / 2
    checkpoint_every: int
    eval_every: int
    kill_after: int  # SIGKILL once a checkpoint at or past this step exists (mid phase a)
    device: str


GPU_SHAPE = SmokeShape(
    model={"name": "smoke_124m_shape", "n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},
    vocab=4096,
    tokens_per_step=8 * 1024,
    steps=160,
    checkpoint_every=40,
    eval_every=40,
    kill_after=40,
    device="cuda",
)
CPU_SHAPE = SmokeShape(
    model={"name": "smoke_tiny", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
    vocab=1024,
    tokens_per_step=4 * 64,
    steps=200,
    checkpoint_every=10,
    eval_every=50,
    kill_after=20,
    device="cpu",
)


def make_data(corpus: Path, work: Path, vocab: int) -> tuple[Path, dict[str, Path], int]:
    """Tokenizer and two prepared datasets from ``corpus`` (JSON lines with title and text).

    Returns the tokenizer directory, {source name: dataset directory} and the vocabulary size.
    """
    configs = {"topics": {"text_template": "{title}\n\n{text}", "seed": 1}, "bodies": {"text_field": "text", "seed": 2}}
    paths = {}
    for name, fields in configs.items():
        cfg = {
            "name": name,
            "source": {"type": "local", "format": "json", "data_files": [str(corpus)]},
            "validation_docs": 40,
            "shuffle_buffer": 200,
            "shard_tokens": 50_000,
            **fields,
        }
        paths[name] = work / "configs" / f"{name}.json"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(json.dumps(cfg, indent=1))
    mix = work / "configs" / "tokenizer_mix.json"
    mix.write_text(
        json.dumps(
            {"vocab_size": vocab, "report_docs": 20, "max_samples": 700, "sources": [{"config": str(paths["topics"])}]}
        )
    )
    tok = work / "tokenizer"
    train_tokenizer(mix, tok)
    out = {}
    for name, path in paths.items():
        m = prepare_dataset(load_config(DatasetConfig, path), path, tok, work / "prepared", workers=1, progress=False)
        out[name] = work / "prepared" / name
        size = m["vocab_size"]
    return tok, out, size


def write_curriculum(work: Path, shape: SmokeShape, data: dict[str, Path], vocab: int) -> Path:
    """Two phases of equal share: a = topics; b = topics + bodies (2:1). Micro batch "auto"."""
    (work / "configs").mkdir(parents=True, exist_ok=True)
    model = work / "configs" / "model.json"
    model.write_text(json.dumps({**shape.model, "vocab_size": vocab}))
    ctx = shape.model["block_size"]
    cfg = {
        "name": "smoke",
        "model": str(model),
        "seed": 1337,
        "total_tokens": shape.steps * shape.tokens_per_step,
        "phases": [
            {"name": "a", "share": 0.5, "sources": [{"name": "topics", "path": str(data["topics"])}]},
            {
                "name": "b",
                "share": 0.5,
                "sources": [
                    {"name": "bodies", "path": str(data["bodies"]), "weight": 2},
                    {"name": "topics", "path": str(data["topics"]), "weight": 1},
                ],
            },
        ],
        "batch": {"global_batch_tokens": shape.tokens_per_step, "micro_batch_size": "auto"},
        "eval": {"interval_steps": shape.eval_every, "tokens_per_source": 4 * ctx},
        "checkpoint": {"interval_steps": shape.checkpoint_every, "keep_last": 2},
        "log_interval_steps": 10,
    }
    path = work / "configs" / "curriculum.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def _env(threads: int | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def pretrain_cmd(config: Path, out: Path, device: str, torchrun: bool = False) -> list[str]:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
        if torchrun
        else [sys.executable]
    )
    return [
        *launcher,
        "-m",
        "chinchilla_pipeline.cli",
        "pretrain",
        "--config",
        str(config),
        "--out_dir",
        str(out),
        "--device",
        device,
    ]


class Timeout(RuntimeError):
    """A subprocess ran past the check's deadline and was killed."""


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from /proc (Linux; elsewhere none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group and all its descendants (those in other sessions too), then reap it."""
    pids = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _start(cmd: list[str], threads: int | None, f) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=_env(threads), stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _timeout_s(deadline: float | None, what: str) -> float | None:
    """Seconds left before ``deadline`` (time.monotonic; None: no limit); raises ``Timeout`` when none are."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout(f"{what}: not started, the check's deadline had passed")
    return left


def run(cmd: list[str], threads: int | None, log: Path, timeout_s: float | None = None) -> float:
    """Run ``cmd`` to the end (its output to ``log``); the wall seconds. A failure raises with the log's tail;
    past ``timeout_s`` its process tree is killed and ``Timeout`` raised."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = _start(cmd, threads, f)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise Timeout(
                f"{' '.join(cmd)} killed after {time.monotonic() - t0:.0f} s (the check's deadline):\n{_tail(log)}"
            ) from None
        except BaseException:  # interrupted (SIGTERM, Ctrl-C, the check's hard stop): leave nothing running
            kill_tree(proc)
            raise
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}:\n{_tail(log)}")
    return time.monotonic() - t0


def run_killed(
    cmd: list[str], run_dir: Path, kill_after: int, threads: int | None, log: Path, timeout_s: float | None = 600
) -> int:
    """Start ``cmd``, SIGKILL it once a checkpoint at or past step ``kill_after`` exists; the step it resumes from."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = _start(cmd, threads, f)
        try:
            while not list_checkpoints(run_dir) or list_checkpoints(run_dir)[-1][0] < kill_after:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the run ended (exit {proc.returncode}) before a checkpoint at step {kill_after}:\n"
                        f"{_tail(log)}"
                    )
                if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                    kill_tree(proc)
                    raise Timeout(
                        f"no checkpoint at step {kill_after} after {time.monotonic() - t0:.0f} s "
                        f"(the check's deadline): killed:\n{_tail(log)}"
                    )
                time.sleep(0.005)
        except BaseException:
            if proc.poll() is None:
                kill_tree(proc)
            raise
        os.kill(proc.pid, signal.SIGKILL)
        if proc.wait() != -signal.SIGKILL:
            raise RuntimeError("the run finished before SIGKILL reached it: lower kill_after or add steps")
    return list_checkpoints(run_dir)[-1][0]


def compare(a_dir: Path, b_dir: Path) -> dict[str, Any]:
    """Step-by-step comparison of two runs: train losses, validation losses, final weights."""
    a, b = read_all_metrics(a_dir / "metrics.jsonl"), read_all_metrics(b_dir / "metrics.jsonl")
    ta, tb = a.get("train", {}), b.get("train", {})
    steps = sorted(set(ta) & set(tb))
    diffs = [abs(ta[s]["loss"] - tb[s]["loss"]) for s in steps]
    va, vb = a.get("validation", {}), b.get("validation", {})
    vdiffs = [abs(va[s]["loss"][k] - vb[s]["loss"][k]) for s in sorted(set(va) & set(vb)) for k in va[s]["loss"]]
    fa = load_checkpoint(list_checkpoints(a_dir)[-1][1])["model"]
    fb = load_checkpoint(list_checkpoints(b_dir)[-1][1])["model"]
    wdiff = max(float((fa[k].float() - fb[k].float()).abs().max()) for k in fa)
    return {
        "steps_compared": len(steps),
        "same_steps": sorted(ta) == sorted(tb),
        "train_loss_bitwise_equal_steps": sum(d == 0 for d in diffs),
        "train_loss_max_abs_diff": max(diffs, default=None),
        "validation_loss_max_abs_diff": max(vdiffs, default=None),
        "final_weights_max_abs_diff": wdiff,
        "bitwise": wdiff == 0 and all(d == 0 for d in diffs + vdiffs),
        "final_train_loss": [ta[steps[-1]]["loss"], tb[steps[-1]]["loss"]] if steps else None,
    }


def smoke_runs(
    config: Path,
    work: Path,
    shape: SmokeShape,
    threads: int | None,
    say,
    deadline: float | None = None,
    out: dict[str, Any] | None = None,
    save: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Unbroken, killed + resumed, torchrun; comparisons; then a second unbroken run when resume is not bitwise.

    Each run's results go into ``out`` as soon as it ends, and ``save`` is called, so a timeout or a kill keeps
    the runs before it. Every subprocess must end before ``deadline`` (time.monotonic; None: no limit).
    """
    out = {} if out is None else out
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    dev = shape.device

    def pretrain(name: str, torchrun: bool = False) -> float:
        return run(
            pretrain_cmd(config, work / name, dev, torchrun=torchrun),
            threads,
            logs / f"{name}.log",
            _timeout_s(deadline, f"the {name} run"),
        )

    out["unbroken_s"] = pretrain("unbroken")
    log = (logs / "unbroken.log").read_text()
    out["micro_batch_line"] = next((line for line in log.splitlines() if "micro_batch_size auto" in line), None)
    out["phase_boundary_logged"] = "phase 'a' done" in log
    save()
    say(f"smoke: unbroken run {out['unbroken_s']:.0f} s")
    killed_dir = work / "killed" / "smoke"
    out["killed_at_checkpoint"] = run_killed(
        pretrain_cmd(config, work / "killed", dev),
        killed_dir,
        shape.kill_after,
        threads,
        logs / "killed.log",
        _timeout_s(deadline, "the killed run"),
    )
    save()
    out["resumed_s"] = run(
        pretrain_cmd(config, work / "killed", dev), threads, logs / "resumed.log", _timeout_s(deadline, "the resume")
    )
    out["resume_line"] = next(
        (line for line in (logs / "resumed.log").read_text().splitlines() if line.startswith("resumed ")), None
    )
    out["resume_vs_unbroken"] = compare(work / "unbroken" / "smoke", killed_dir)
    save()
    say(
        f"smoke: killed after checkpoint {out['killed_at_checkpoint']}, resumed; "
        f"bitwise {out['resume_vs_unbroken']['bitwise']}"
    )
    # torchrun before the run-to-run comparison: NCCL DDP is a path no other part covers
    out["torchrun_s"] = pretrain("torchrun", torchrun=True)
    starts = [r for r in read_all_metrics(work / "torchrun" / "smoke" / "metrics.jsonl").get("start", {}).values()]
    out["torchrun_process_group"] = bool(starts and starts[-1].get("ddp"))
    out["torchrun_vs_unbroken"] = compare(work / "unbroken" / "smoke", work / "torchrun" / "smoke")
    save()
    say(f"smoke: torchrun --nproc_per_node=1 {out['torchrun_s']:.0f} s, DDP {out['torchrun_process_group']}")
    if not out["resume_vs_unbroken"]["bitwise"]:  # is it the resume, or the GPU's run-to-run nondeterminism?
        pretrain("unbroken2")
        out["unbroken_vs_unbroken"] = compare(work / "unbroken" / "smoke", work / "unbroken2" / "smoke")
        save()
    return out


def export_logits(run_dir: Path, tokenizer: Path, out_dir: Path, device: torch.device) -> dict[str, Any]:
    """Export the run's final checkpoint; the HF model's logits against ours on ``device``, float32."""
    from transformers import AutoModelForCausalLM

    from ..export.huggingface import export_huggingface
    from ..export.trained import load_trained
    from ..train.setup import set_tf32

    export_huggingface(run_dir, tokenizer, out_dir)
    ours = load_trained(run_dir, tokenizer)
    hf = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).to(device).eval()
    model = ours.model.to(device)
    cfg = ours.config
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=g).to(device)
    if device.type == "cuda":
        set_tf32(False)  # the comparison in true float32 (the check's last part: left so)
    with torch.no_grad():
        a, b = model(idx).float(), hf(idx).logits.float()
    return {
        "shape": list(a.shape),
        "max_abs_diff": float((a - b).abs().max()),
        "logit_scale": float(a.abs().max()),
        "argmax_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
    }
