"""The curriculum smoke runs: real data made here, torchrun over NCCL, a two-phase run killed and resumed.

Data: a tokenizer trained on a small local corpus and two datasets prepared from it with the project's own
``tokenizer-train`` and ``prepare`` code. Model: the default recipe's architecture (nanochat, Muon + AdamW)
at 4 layers x 256 on a GPU, so a checkpoint is tens of MB, not 1 GB, and a compile takes seconds. The batch
is two micro batches (accumulation 2), so under DDP ``no_sync`` runs on the first of them. Runs are
``chinchilla pretrain`` subprocesses, exactly what a user starts: under ``torchrun --nproc_per_node=1`` (a
process group and DDP: NCCL on CUDA, gloo on CPU); two unbroken runs (their difference is the run-to-run
bound); the same run SIGKILLed after a mid-phase checkpoint and resumed (the resume crosses the phase
boundary). ``compare.py`` compares them step by step.

Every subprocess runs in its own process group with a timeout: the time left to its part. On timeout the
group and every descendant (torchrun starts its workers in sessions of their own) are SIGKILLed and the run
raises, so a hang (NCCL, a compile) costs its part, not the check.
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

from ...data.config import DatasetConfig
from ...data.layout import dataset_dir
from ...data.prepare import prepare_dataset
from ...schema import load_config
from ...tokenizer.train import train_tokenizer
from ...train.metrics import read_all_metrics
from ...train.rundir import METRICS, list_checkpoints
from .compare import compare, judge

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # src/: PYTHONPATH of the subprocesses


@dataclass(frozen=True)
class SmokeShape:
    """The run's size: model shape (vocabulary from the tokenizer), batch, steps, intervals."""

    model: dict[str, Any]
    vocab: int  # tokenizer size asked for
    micro_batch_size: int  # sequences per forward pass; the step is 2 of them (accumulation 2)
    steps: int  # two phases of steps / 2
    checkpoint_every: int
    eval_every: int
    kill_after: int  # SIGKILL once a checkpoint at or past this step exists (mid phase a)
    device: str
    compile: str

    @property
    def tokens_per_step(self) -> int:
        return 2 * self.micro_batch_size * self.model["block_size"]


NANOCHAT = {"architecture": "nanochat", "bias": False}
# 4 x 256, 2 heads of 128 (nanochat's head size), context 256: 5.2M parameters, checkpoints of tens of MB with
# the optimiser state; 120 steps of 2 x 8 x 256 = 4,096 tokens, phase boundary at step 60.
GPU_SHAPE = SmokeShape(
    model={"name": "smoke_nanochat_4x256", **NANOCHAT, "n_layer": 4, "n_head": 2, "n_embd": 256, "block_size": 256},
    vocab=4096,
    micro_batch_size=8,
    steps=120,
    checkpoint_every=20,
    eval_every=20,
    kill_after=20,
    device="cuda",
    compile="on",
)
CPU_SHAPE = SmokeShape(
    model={"name": "smoke_tiny", **NANOCHAT, "n_layer": 2, "n_head": 1, "n_embd": 64, "block_size": 64},
    vocab=1024,
    micro_batch_size=2,
    steps=60,
    checkpoint_every=10,
    eval_every=30,
    kill_after=10,
    device="cpu",
    compile="off",
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
        out[name] = dataset_dir(work / "prepared", name)
        size = m["vocab_size"]
    return tok, out, size


def write_curriculum(
    work: Path, shape: SmokeShape, data: dict[str, Path], vocab: int, optimizer: dict[str, Any]
) -> Path:
    """Two phases of equal share: a = topics; b = topics + bodies (2:1); the default recipe's ``optimizer``;
    the micro batch given, so that every step accumulates 2 of them."""
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
        "batch": {"global_batch_tokens": shape.tokens_per_step, "micro_batch_size": shape.micro_batch_size},
        "optimizer": optimizer,
        "compile": shape.compile,
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


def _start_record(run_dir: Path) -> dict[str, Any]:
    starts = list(read_all_metrics(run_dir / METRICS).get("start", {}).values())
    return starts[-1] if starts else {}


def torchrun_run(config: Path, work: Path, shape: SmokeShape, threads: int | None, until: float | None) -> dict:
    """The smoke run under ``torchrun --standalone --nproc_per_node=1``: a process group, DDP, accumulation 2."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    wall = run(
        pretrain_cmd(config, work / "torchrun", shape.device, torchrun=True),
        threads,
        work / "logs" / "torchrun.log",
        _timeout_s(until, "the torchrun run"),
    )
    start = _start_record(work / "torchrun" / "smoke")
    accum = start.get("grad_accum", 0)
    return {
        "wall_s": wall,
        "backend": "nccl" if shape.device == "cuda" else "gloo",
        "process_group": bool(start.get("ddp")),
        "world_size": start.get("world_size"),
        "grad_accum": accum,
        # train/pretrain.py: under DDP every micro step but the last of a step runs inside model.no_sync()
        "no_sync_micro_steps_per_step": accum - 1 if start.get("ddp") else 0,
        "steps": start.get("end_step"),
    }


def smoke_runs(
    config: Path,
    work: Path,
    shape: SmokeShape,
    threads: int | None,
    say,
    until: float | None,
    out: dict[str, Any],
    save: Callable[[], None],
) -> dict[str, Any]:
    """Two unbroken runs, then one SIGKILLed mid phase a and resumed; comparisons (torchrun's too, when it ran).

    Each run's results go into ``out`` as soon as it ends, and ``save`` is called, so a timeout or a kill keeps
    the runs before it. Every subprocess must end before ``until`` (time.monotonic; None: no limit)."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    dev = shape.device

    def pretrain(name: str) -> float:
        return run(pretrain_cmd(config, work / name, dev), threads, logs / f"{name}.log", _timeout_s(until, name))

    out["unbroken_s"] = pretrain("unbroken")
    out["phase_boundary_logged"] = "phase 'a' done" in (logs / "unbroken.log").read_text()
    out["grad_accum"] = _start_record(work / "unbroken" / "smoke").get("grad_accum")
    save()
    say(f"smoke: unbroken run {out['unbroken_s']:.0f} s")
    out["unbroken2_s"] = pretrain("unbroken2")
    out["run_to_run"] = compare(work / "unbroken" / "smoke", work / "unbroken2" / "smoke")
    save()
    say(f"smoke: second unbroken run {out['unbroken2_s']:.0f} s; bitwise {out['run_to_run']['bitwise']}")
    killed_dir = work / "killed" / "smoke"
    out["killed_at_checkpoint"] = run_killed(
        pretrain_cmd(config, work / "killed", dev),
        killed_dir,
        shape.kill_after,
        threads,
        logs / "killed.log",
        _timeout_s(until, "the killed run"),
    )
    save()
    out["resumed_s"] = run(
        pretrain_cmd(config, work / "killed", dev), threads, logs / "resumed.log", _timeout_s(until, "the resume")
    )
    out["resume_line"] = next(
        (line for line in (logs / "resumed.log").read_text().splitlines() if line.startswith("resumed ")), None
    )
    resumed = compare(work / "unbroken" / "smoke", killed_dir, split_step=out["killed_at_checkpoint"])
    out["resume_vs_unbroken"] = resumed
    out["verdict"] = judge(resumed, out["run_to_run"])
    if (work / "torchrun" / "smoke" / METRICS).is_file():
        out["torchrun_vs_unbroken"] = compare(work / "unbroken" / "smoke", work / "torchrun" / "smoke")
    save()
    say(f"smoke: killed after checkpoint {out['killed_at_checkpoint']}, resumed; {out['verdict']['summary']}")
    return out
