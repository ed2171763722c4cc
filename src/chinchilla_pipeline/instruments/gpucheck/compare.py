"""Two runs compared step by step, and a resume judged against the run-to-run difference of two unbroken runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...train.checkpoint import load_checkpoint
from ...train.metrics import read_all_metrics
from ...train.rundir import METRICS, list_checkpoints

# A resume passes when each of its differences is at most this many times the run-to-run one: once two runs
# differ in one bit, training amplifies it, so two pairs of runs that differ by chance differ by similar, not
# equal, amounts.
RUN_TO_RUN_FACTOR = 2.0
QUANTITIES = ("train_loss", "validation_loss", "final_weights")


def _max_diff(a: dict[int, float], b: dict[int, float], steps: list[int]) -> float | None:
    return max((abs(a[s] - b[s]) for s in steps), default=None)


def compare(a_dir: Path, b_dir: Path, split_step: int | None = None) -> dict[str, Any]:
    """Train losses, validation losses and final weights of two runs; with ``split_step`` the train losses
    also up to it (the killed process's steps) and after it (the resumed process's)."""
    a, b = read_all_metrics(a_dir / METRICS), read_all_metrics(b_dir / METRICS)
    ta = {s: r["loss"] for s, r in a.get("train", {}).items()}
    tb = {s: r["loss"] for s, r in b.get("train", {}).items()}
    steps = sorted(set(ta) & set(tb))
    va, vb = a.get("validation", {}), b.get("validation", {})
    vsteps = sorted(set(va) & set(vb))
    vdiffs = [abs(va[s]["loss"][k] - vb[s]["loss"][k]) for s in vsteps for k in va[s]["loss"]]
    fa = load_checkpoint(list_checkpoints(a_dir)[-1][1])["model"]
    fb = load_checkpoint(list_checkpoints(b_dir)[-1][1])["model"]
    out: dict[str, Any] = {
        "steps_compared": len(steps),
        "same_steps": sorted(ta) == sorted(tb),
        "train_loss_bitwise_equal_steps": sum(ta[s] == tb[s] for s in steps),
        "train_loss": _max_diff(ta, tb, steps),
        "validation_loss": max(vdiffs, default=None),
        "final_weights": max(float((fa[k].float() - fb[k].float()).abs().max()) for k in fa),
        "final_train_loss": [ta[steps[-1]], tb[steps[-1]]] if steps else None,
    }
    out["bitwise"] = all(out[q] == 0 for q in QUANTITIES) and out["same_steps"]
    if split_step is not None:
        out["train_loss_to_kill"] = _max_diff(ta, tb, [s for s in steps if s <= split_step])
        out["train_loss_after_resume"] = _max_diff(ta, tb, [s for s in steps if s > split_step])
    return out


def judge(resumed: dict[str, Any], run_to_run: dict[str, Any]) -> dict[str, Any]:
    """Per quantity: "bitwise", "within" RUN_TO_RUN_FACTOR x the run-to-run difference, or "exceeds"; why; ok."""
    per: dict[str, Any] = {}
    for q in QUANTITIES:
        d, r = resumed[q], run_to_run[q]
        if d is None:
            per[q] = {"result": "not compared"}
        elif d == 0:
            per[q] = {"result": "bitwise"}
        else:
            bound = RUN_TO_RUN_FACTOR * (r or 0.0)
            per[q] = {"result": "within" if d <= bound else "exceeds", "diff": d, "bound": bound}
    ok = resumed["same_steps"] and all(p["result"] != "exceeds" for p in per.values())
    if run_to_run["bitwise"] and resumed["bitwise"]:
        why = (
            "two unbroken runs are bitwise equal (the kernels ran deterministically), and so is the resumed one: "
            "the checkpoint restores weights, optimiser state, RNG states and data position exactly"
        )
    elif run_to_run["bitwise"]:
        why = (
            "two unbroken runs are bitwise equal but the resumed one is not: the resume restores something "
            "differently (or a kernel picked at start-up differs between processes)"
        )
    elif ok:
        why = (
            "two unbroken runs already differ (nondeterministic GPU reductions: atomics in the attention and "
            f"embedding backward, split-K matmuls), and the resume differs by no more than {RUN_TO_RUN_FACTOR:g}x "
            "that: the resume is as exact as the hardware allows"
        )
    else:
        why = f"the resume differs by more than {RUN_TO_RUN_FACTOR:g}x the run-to-run difference: suspect the resume"
    summary = ", ".join(f"{q} {p['result']}" for q, p in per.items())
    return {"ok": ok, "per_quantity": per, "why": why, "summary": summary}
