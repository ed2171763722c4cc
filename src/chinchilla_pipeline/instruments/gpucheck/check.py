"""``chinchilla gpu-check``: the parts in priority order, each within its budget, results on disk after each.

GPU mode answers its questions inside 6 minutes of wall time on one H200, counted from the process's start
(compilation included): the parts run until ``DEADLINE_S`` (330 s) and a part still running in this process
30 s later is stopped (``HARD_STOP_GRACE_S``). Each part has a budget (``BUDGET_S``, seconds at the default
deadline; another ``--deadline_s`` scales them all, which is how CPU mode rehearses the order in CI). A
part may run to ``STRETCH`` x its budget past its start, never past the deadline: a slow part takes from
the parts after it, a fast one leaves them its time, and the last part takes whatever is left.

Both files are rewritten (atomically) before and after every part and every measurement or smoke run,
marked ``"complete": false`` with the parts done and not yet done, so a kill keeps what was measured. A
failed part is recorded with its error and the next part still runs; the exit code is 1 when any failed.
SIGTERM, and the hard stop, end the check with the results written.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ...atomic import write_json, write_text
from ...errors import UserError
from . import parts
from .speed import SETTINGS
from .table import markdown, speed_rows

# Seconds at the default deadline, in priority order; docs/gpu.md has the estimate behind each.
BUDGET_S = {
    "environment": 10.0,  # versions, the card (CUDA's start-up is in the process start before it)
    "throughput": 180.0,  # 2 recipes x (micro-batch probe ~10 s + one compile ~60 s + 20 timed steps ~10 s)
    "smoke_data": 15.0,  # a 4,096-token BPE and two small datasets, on the CPU
    "torchrun": 35.0,  # one pretrain under torchrun: start-up ~10 s, compile of the 4 x 256 model ~20 s
    "smoke": 70.0,  # 4 pretrain runs, the compiled graphs now cached on disk: ~15 s each
    "export": 10.0,  # export the smoke model, two forward passes
    "more_speed": 10.0,  # further settings while time is left: the last part takes all that remains
}
PARTS = [
    parts.Part("environment", parts.environment_part),
    parts.Part("throughput", parts.throughput_part),
    parts.Part("smoke_data", parts.smoke_data_part),
    parts.Part("torchrun", parts.torchrun_part),
    parts.Part("smoke", parts.smoke_part),
    parts.Part("export", parts.export_part),
    parts.Part("more_speed", parts.more_speed_part),
]
DEADLINE_S = sum(BUDGET_S.values())  # 330 s from the process's start
DEFAULT_DEADLINE_S = {"gpu": DEADLINE_S, "cpu": 300.0}  # CPU: the same order at 300/330 of each budget
STRETCH = 1.5
HARD_STOP_GRACE_S = 30.0  # past the deadline, a part still running in this process is interrupted
MARKER = ".made-by-gpu-check"  # in <out_dir>/work: the only kind of work directory the check deletes


class Stopped(BaseException):
    """SIGTERM or the hard stop: ends the whole check (not one part) once the results are written."""


@dataclass(frozen=True)
class Plan:
    """When each part may start and must end, seconds from the process's start."""

    start: float  # time.monotonic of the process's start
    deadline_s: float

    def budget(self, name: str) -> float:
        return BUDGET_S[name] * self.deadline_s / DEADLINE_S

    def until(self, name: str, now: float) -> float:
        """The time.monotonic by which part ``name``, starting at ``now``, must end."""
        deadline = self.start + self.deadline_s
        return deadline if name == PARTS[-1].name else min(deadline, now + STRETCH * self.budget(name))


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


def summarise(res: dict[str, Any]) -> None:
    """The fastest trainer measured (a recipe or a setting) and the parts that failed."""
    rows = [r for r in speed_rows(res) if "trainer_tokens_per_s" in r]
    if rows:
        best = max(rows, key=lambda r: r["trainer_tokens_per_s"])
        res["fastest"] = {
            "setting": best.get("setting") or f"recipe {best['recipe']}",
            "trainer_tokens_per_s": best["trainer_tokens_per_s"],
        }
    failed = [p.name for p in PARTS if isinstance(res.get(p.name), dict) and "error" in res[p.name]]
    failed += [f"speed {r.get('setting') or r.get('recipe')}" for r in speed_rows(res) if "error" in r]
    verdict = res.get("smoke", {}).get("verdict") if isinstance(res.get("smoke"), dict) else None
    if verdict and not verdict["ok"]:
        failed.append("smoke resume")
    res["failed_parts"] = failed


def _error(res: dict[str, Any], name: str, message: str, tb: str | None = None) -> None:
    """Record ``message`` as part ``name``'s error, keeping what it had measured (a dict's fields, a list's rows)."""
    cur = res.get(name)
    kept = cur if isinstance(cur, dict) else {"rows": cur} if isinstance(cur, list) else {}
    res[name] = {**kept, "error": message[:3000], **({"traceback": tb[-3000:]} if tb else {})}


def _run_part(part: parts.Part, ctx: parts.Context, plan: Plan) -> None:
    """Run one part unless the deadline has passed; its result (or its error, with what it had measured) goes
    to ``res[part.name]``; the results are saved before and after."""
    res, now = ctx.res, time.monotonic()
    res["running_part"] = part.name
    res["part_times_s"][part.name] = {"start": round(now - plan.start, 1), "budget": round(plan.budget(part.name), 1)}
    ctx.save()
    if now >= plan.start + plan.deadline_s:
        _error(res, part.name, f"not run: the check's deadline ({plan.deadline_s:.0f} s) had passed")
        ctx.say(f"{part.name}: not run (deadline)")
    else:
        ctx.until = plan.until(part.name, now)
        try:
            res[part.name] = part.run(ctx)
        except Exception as err:  # noqa: BLE001 - a failed part is reported, the others still run
            _error(res, part.name, f"{type(err).__name__}: {err}", traceback.format_exc())
            ctx.say(f"{part.name}: FAILED: {type(err).__name__}: {str(err)[:300]}")
    res["part_times_s"][part.name]["end"] = round(time.monotonic() - plan.start, 1)
    res["pending_parts"].remove(part.name)
    res["parts_done"].append(part.name)
    res["running_part"] = None
    ctx.save()


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
    deadline_s: float | None = None,
    started: float | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the check; write ``out_dir/gpu_check.json`` and ``out_dir/gpu_check.md`` before and after every part;
    return the results. ``deadline_s``: seconds from ``started`` (time.monotonic; default now: the CLI passes
    the process's start)."""
    plan = Plan(time.monotonic() if started is None else started, deadline_s or DEFAULT_DEADLINE_S[mode])
    if mode == "gpu" and not torch.cuda.is_available():
        raise UserError(
            f"no CUDA device visible (torch {torch.__version__}, CUDA build {torch.version.cuda}): "
            "run on a GPU machine, or use --mode cpu",
            field="--mode",
        )
    for name in settings or []:
        if name not in SETTINGS:
            raise UserError(f"unknown setting '{name}' (known: {', '.join(SETTINGS)})", field="--settings")
    res: dict[str, Any] = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "chinchilla " + " ".join(sys.argv[1:]),
        "complete": False,
        "order": [p.name for p in PARTS],
        "parts_done": [],
        "pending_parts": [p.name for p in PARTS],
        "running_part": None,
        "deadline_s": plan.deadline_s,
        "part_times_s": {},
    }

    def save() -> None:
        res["wall_s"] = round(time.monotonic() - plan.start, 1)
        summarise(res)
        write_json(out_dir / "gpu_check.json", res)
        write_text(out_dir / "gpu_check.md", markdown(res))

    ctx = parts.make_context(mode, scratch_dir(out_dir / "work"), res, save, say, settings)
    save()
    say(f"gpu-check ({mode}): deadline {plan.deadline_s:.0f} s from the process's start")
    try:
        with _stops(max(plan.start + plan.deadline_s + HARD_STOP_GRACE_S - time.monotonic(), 1e-3)):
            for part in PARTS:
                _run_part(part, ctx, plan)
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
