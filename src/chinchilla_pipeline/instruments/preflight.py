"""``chinchilla preflight``: can the curriculum's run start and finish? Checked before any GPU time is spent.

One table, one row per check: ``ok``, ``warn`` (the run works, read the detail) or ``BLOCKER`` (it would
fail or not finish; the command exits 2). Checks, in order: every phase source prepared and verified;
training tokens per source against what the phases draw (epochs repeated); tokenizer, vocabulary and
end-of-text id agree; free disk for the checkpoints; GPU count, type and bf16; expected wall-clock; the
run directory's state (fresh, resumable at step S, finished).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

# A checkpoint holds fp32 weights and AdamW's two fp32 moments: 12 bytes per parameter (~1.5 GB for GPT-2 124M).
CHECKPOINT_BYTES_PER_PARAM = 12


@dataclass
class Row:
    check: str
    status: str  # "ok", "warn" or "BLOCKER"
    detail: str


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def _duration(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h:d} h {rem // 60:02d} min"


def check_data(cfg, schedule, tokenizer_dir, verify: bool) -> tuple[list[Row], dict]:
    """Per source: prepared and verified; tokens drawn over all phases vs training tokens (epochs)."""
    from ..data.reader import open_prepared
    from ..data.verify import verify_dataset

    rows, opened = [], {}
    drawn: dict[str, float] = {}
    for phase, (a, b) in zip(cfg.phases, schedule.phase_steps):
        total_w = sum(s.weight for s in phase.sources)
        for s in phase.sources:
            drawn[s.name] = drawn.get(s.name, 0.0) + (b - a) * schedule.tokens_per_step * s.weight / total_w
    for name, path in cfg.domains().items():
        try:
            ds = open_prepared(path)
            ds.token_bytes()  # validation bits per byte need it: a dataset from before it stops the run at start
        except UserError as err:
            rows.append(Row(f"data {name}", "BLOCKER", f"{err} (run its prepare target)"))
            continue
        opened[name] = ds
        problems = (
            verify_dataset(path, tokenizer_dir if Path(tokenizer_dir, "tokenizer.json").is_file() else None)
            if verify
            else []
        )
        train = ds.num_tokens("train")
        epochs = drawn[name] / train if train else float("inf")
        detail = f"{train:,} train tokens, the phases draw {drawn[name]:,.0f}: {epochs:.2f} epochs" + (
            "" if verify else "; not verified (--no_verify)"
        )
        if problems:
            rows.append(Row(f"data {name}", "BLOCKER", f"{path}: {len(problems)} problem(s), first: {problems[0]}"))
        elif train <= schedule.context:
            rows.append(Row(f"data {name}", "BLOCKER", f"{path}: {train} train tokens, fewer than context + 1"))
        else:
            rows.append(
                Row(
                    f"data {name}",
                    "warn" if epochs > 1 else "ok",
                    detail + ("; repeats text (prepare more, or accept repetition)" if epochs > 1 else ""),
                )
            )
    return rows, opened


def check_tokenizer(opened: dict, model, tokenizer_dir) -> Row:
    """Every source from one tokenizer, which is ``tokenizer_dir``'s, with the model's vocabulary."""
    from ..tokenizer.load import load_tokenizer

    if not opened:
        return Row("tokenizer", "BLOCKER", "no prepared source to compare")
    seen = {(d.manifest["tokenizer_sha256"], d.vocab_size, d.eot_id) for d in opened.values()}
    if len(seen) > 1:
        return Row("tokenizer", "BLOCKER", f"sources were tokenized differently: {sorted(seen)}")
    sha, vocab, eot = seen.pop()
    problems = []
    if vocab != model.vocab_size:
        problems.append(f"sources have vocab {vocab:,}, the model {model.vocab_size:,}")
    if Path(tokenizer_dir, "tokenizer.json").is_file():
        tok = load_tokenizer(tokenizer_dir)
        if tok.sha256 != sha:
            problems.append(f"{tokenizer_dir} is not the tokenizer the sources were prepared with")
        if tok.eot_id != eot:
            problems.append(f"end-of-text id {tok.eot_id} in {tokenizer_dir}, {eot} in the manifests")
    else:
        problems.append(f"no tokenizer at {tokenizer_dir} (export and generation need it)")
    if problems:
        return Row("tokenizer", "BLOCKER", "; ".join(problems))
    return Row("tokenizer", "ok", f"vocab {vocab:,}, end-of-text id {eot}, sha256 {sha[:12]} everywhere")


def check_disk(cfg, model, run_dir: Path) -> Row:
    """Free space for ``keep_last`` periodic checkpoints, one final per phase and one being written."""
    per = CHECKPOINT_BYTES_PER_PARAM * model.num_params()
    count = cfg.checkpoint.keep_last + len(cfg.phases) + 1
    probe = run_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = (
        f"{count} checkpoints x {_gb(per)} ({CHECKPOINT_BYTES_PER_PARAM} B/param: weights + AdamW) = "
        f"{_gb(count * per)} needed, {_gb(free)} free at {probe}"
    )
    return Row("disk", "ok" if free >= count * per else "BLOCKER", detail)


def check_gpu(cfg, device: str, world: int) -> Row:
    """CUDA devices, their type, bf16 support and how many the ranks use; no GPU blocks only a run asked
    to use one. ``dtype`` "auto" is bf16 autocast on CUDA, so a card without bf16 blocks it too."""
    import torch

    wants_cuda = device == "cuda"
    if not torch.cuda.is_available():
        return Row(
            "gpu",
            "BLOCKER" if wants_cuda else "warn",
            "none (CUDA unavailable): training would run on CPU" + (", but --device cuda" if wants_cuda else ""),
        )
    n = torch.cuda.device_count()
    names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
    bf16 = torch.cuda.is_bf16_supported()
    detail = f"{n} x {', '.join(names)}; bf16 {'supported' if bf16 else 'NOT supported'}; {world} rank(s)"
    if cfg.dtype in ("bfloat16", "auto") and not bf16:
        return Row("gpu", "BLOCKER", detail + f' (dtype "{cfg.dtype}" trains in bf16 here: set "dtype": "float32")')
    if world < n:
        return Row("gpu", "warn", detail + f": {n - world} GPU(s) of this machine idle (torchrun --nproc_per_node={n})")
    if world % n:
        return Row("gpu", "warn", detail + f": not a multiple of this machine's {n} GPUs (nodes of equal size?)")
    return Row("gpu", "ok", detail + (f" ({world // n} node(s) of {n})" if world > n else ""))


def measured_tokens_per_second(gpu_check_json: str | Path, world_size: int) -> tuple[float, str] | None:
    """The job's tokens/s from ``chinchilla gpu-check``'s results: the fastest trainer setting on one GPU
    times the ranks (linear scaling assumed: DDP's all-reduce overlaps the backward pass), and where it came
    from; None when the file is absent or holds no GPU measurement."""
    import json

    path = Path(gpu_check_json)
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise UserError("is not valid JSON (rerun `make gpu-check`)", path=path) from None
    fastest = res.get("fastest") if res.get("mode") == "gpu" else None
    if not fastest or not fastest.get("trainer_tokens_per_s"):
        return None
    card = res.get("environment", {}).get("card", "a GPU")
    rate = fastest["trainer_tokens_per_s"]
    return rate * world_size, (
        f"measured by gpu-check on {card} ({res.get('started', '?')}, setting {fastest['setting']}): "
        f"{rate:,.0f} x {world_size} ranks, linear scaling assumed"
    )


def check_time(schedule, tokens_per_second: float | None, measured: tuple[float, str] | None = None) -> Row:
    tokens = schedule.num_steps * schedule.tokens_per_step
    if tokens_per_second:
        source = "given"
    elif measured is not None:
        tokens_per_second, source = measured
    else:
        return Row(
            "wall-clock",
            "warn",
            f"{tokens:,} tokens; pass --tokens_per_second, or run `make gpu-check` on the card first",
        )
    return Row(
        "wall-clock",
        "ok",
        f"{tokens:,} tokens at {tokens_per_second:,.0f} tokens/s ({source}): "
        f"{_duration(tokens / tokens_per_second)} of training, evaluation and checkpoints not included",
    )


def check_run_dir(cfg, schedule, run_dir: Path) -> Row:
    """Fresh, resumable at step S or finished; a run directory that cannot be created or written blocks."""
    from ..train.rundir import list_checkpoints, list_finals

    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return Row("run dir", "BLOCKER", f"{run_dir}: {probe} is a file, not a directory: choose another --out_dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        return Row("run dir", "BLOCKER", f"{run_dir}: {probe} is not writable for this user")
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        return Row("run dir", "ok", f"{run_dir}: fresh (no checkpoint)")
    step = ckpts[-1][0]
    last_final = f"final-{cfg.phases[-1].name}.pt"
    if step >= schedule.num_steps or any(p.name.endswith(last_final) for p in list_finals(run_dir)):
        return Row("run dir", "warn", f"{run_dir}: finished at step {step:,} (nothing left to train)")
    return Row(
        "run dir",
        "ok",
        f"{run_dir}: resumable at step {step:,} of {schedule.num_steps:,} "
        f"(phase {cfg.phases[schedule.phase_at(step)].name})",
    )


def preflight(
    config_path: str | Path,
    *,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    device: str = "auto",
    tokens_per_second: float | None = None,
    world_size: int | None = None,
    verify: bool = True,
    gpu_check_json: str | Path = "runs/gpu_check/gpu_check.json",
) -> list[Row]:
    """Every check's row, in table order."""
    from ..train.config import load_curriculum
    from ..train.layout import make_layout
    from ..train.schedule import make_schedule

    cfg, model = load_curriculum(config_path)
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    schedule = make_schedule(cfg, model, path=config_path)
    make_layout(schedule, cfg.batch, world, path=config_path)  # a batch that does not split over the ranks blocks
    run_dir = Path(out_dir) / cfg.name
    rows, opened = check_data(cfg, schedule, tokenizer_dir, verify)
    return rows + [
        check_tokenizer(opened, model, tokenizer_dir),
        check_disk(cfg, model, run_dir),
        check_gpu(cfg, device, world),
        check_time(schedule, tokens_per_second, measured_tokens_per_second(gpu_check_json, world)),
        check_run_dir(cfg, schedule, run_dir),
    ]


def format_table(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'check':<{width}}  status   detail"] + [f"{r.check:<{width}}  {r.status:<7}  {r.detail}" for r in rows]
    blockers = sum(r.status == "BLOCKER" for r in rows)
    lines.append(f"{blockers} blocker(s): " + ("do not start the run" if blockers else "ready to start"))
    return "\n".join(lines)
