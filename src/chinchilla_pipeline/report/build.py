"""``chinchilla report``: a run directory's ``metrics.jsonl`` -> ``report.md`` and PNG plots.

Every number in the report is read from the run's metrics (or computed from
them with the planner, ``chinchilla_pipeline.plan``); nothing is typed in.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..counts import compact
from ..hellaswag.data import PUBLISHED_124M, VALIDATION_ITEMS
from ..plan import DEFAULT_TOKENS_PER_PARAM, FIT_RANGE_PARAMS, FIT_RANGE_TOKENS, FITS, chinchilla_plan, training_flops
from ..schema import read_json
from ..train.rundir import EVALUATION, HELLASWAG, REPORT
from .plots import write_plots
from .runlog import RunLog, read_run

# Steps averaged for the "final training loss" (the per-step loss is noisy).
FINAL_LOSS_STEPS = 10


def budget_rows(
    run: RunLog, tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM
) -> tuple[list[tuple[str, float]], dict[str, Any]]:
    """The planner's D = r·N, the run's own budget, each fit's compute-optimal D for the compute
    actually spent (C = 6·N·tokens trained), and the tokens trained (last). Also returns the plan."""
    n, trained = run.num_params, run.tokens_trained
    plan = chinchilla_plan(
        n,
        tokens_per_param=tokens_per_param,
        tokens_per_step=run.tokens_per_step,
        phases=(("all", 1.0),),
        compute_budget=training_flops(n, trained),
    )
    rows = [
        (f"planner: D = {tokens_per_param:g} N", float(plan["num_tokens"])),
        (
            f"run's plan: {run.total_steps:,} steps x {run.tokens_per_step:,}",
            float(run.total_steps * run.tokens_per_step),
        ),
    ]
    rows += [
        (f"{fit.name} optimum for this compute", plan["fits"][fit.name]["compute_optimal"]["num_tokens"])
        for fit in FITS
    ]
    rows.append(("trained", float(trained)))
    return rows, plan


def _bpb(value: float | None) -> str:
    """A bits-per-byte cell; "-" where the record predates bits per byte."""
    return "-" if value is None else f"{value:.4f}"


def _mean(values: dict[str, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _phase_of(run: RunLog) -> dict[str, str]:
    """Domain -> the phases that trained on it (measured from tokens seen)."""
    out: dict[str, list[str]] = {}
    for ph in run.phases:
        for src in ph.tokens_per_source:
            out.setdefault(src, []).append(ph.name)
    return {k: ", ".join(v) for k, v in out.items()}


def summary_section(run: RunLog, plan: dict[str, Any]) -> list[str]:
    last = run.train_loss[-FINAL_LOSS_STEPS:]
    rows = [
        ["parameters N (all, embeddings included)", f"{run.num_params:,}"],
        ["tokens per optimiser step", f"{run.tokens_per_step:,}"],
        ["steps trained", f"{run.steps_done:,} of {run.total_steps:,}"],
        ["tokens trained", f"{run.tokens_trained:,} ({run.tokens_trained / run.num_params:.2f} per parameter)"],
        [f"planner's budget D = {plan['tokens_per_param']:g} N", f"{plan['num_tokens']:,}"],
        ["compute spent C = 6 N D", f"{training_flops(run.num_params, run.tokens_trained):.3e} FLOPs"],
        [f"training loss, mean of the last {len(last)} steps", f"{sum(last) / len(last):.4f} nats/token"],
        ["median throughput over the log intervals", f"{statistics.median(run.tokens_per_s):,.0f} tokens/s"],
    ]
    if run.val_loss:
        rows.append(["final validation loss, mean over domains", f"{_mean(run.val_loss[-1]):.4f} nats/token"])
        if run.val_bpb[-1]:
            rows.append(["final validation bits per byte, mean over domains", f"{_mean(run.val_bpb[-1]):.4f}"])
    return ["## Summary", ""] + _table(["", "measured"], rows)


def phases_section(run: RunLog) -> list[str]:
    rows = []
    for ph in run.phases:
        total = sum(ph.tokens_per_source.values())
        per = (
            ", ".join(
                f"{k} {ph.tokens_per_source[k]:,} ({ph.tokens_per_source[k] / total:.1%})"
                for k in run.domains
                if k in ph.tokens_per_source
            )
            if total
            else "-"
        )
        rows.append([ph.name, f"{ph.first_step:,}..{ph.end_step:,}", f"{total:,}", per])
    lines = ["## Phases", ""] + _table(["phase", "steps", "tokens trained", "per source (share)"], rows)
    if run.epochs:
        lines += ["", "Sources that ran out and repeated (reshuffled) during the run:", ""]
        lines += [f"- `{e['source']}`: epoch {e['epoch']} from step {e['step']:,}" for e in run.epochs]
    return lines


def validation_section(run: RunLog) -> list[str]:
    if not run.val_loss:
        return ["## Final validation loss", "", "No validation has run yet."]
    step = run.val_tokens[-1] // run.tokens_per_step
    phase_of = _phase_of(run)
    final, bpb = run.val_loss[-1], run.val_bpb[-1]
    rows = [
        [d, phase_of.get(d, "-"), f"{final[d]:.4f}", f"{math.exp(final[d]):.2f}", _bpb(bpb.get(d))]
        for d in run.domains
        if d in final
    ]
    mean = _mean(final)
    rows.append(["**mean**", "", f"{mean:.4f}", f"{math.exp(mean):.2f}", _bpb(_mean(bpb))])
    return [f"## Final validation loss and perplexity (step {step:,}, {run.val_tokens[-1]:,} tokens)", ""] + _table(
        ["domain", "trained in phase", "loss (nats/token)", "perplexity", "bits per byte"], rows
    )


def evaluation_section(run_dir: Path) -> list[str]:
    """The ``evaluate`` stage's table (whole validation splits), when it has run."""
    path = run_dir / EVALUATION
    if not path.is_file():
        return []
    ev = read_json(path)
    rows = [
        [d, f"{r['num_tokens']:,}", f"{r['loss']:.4f}", f"{r['perplexity']:.2f}", _bpb(r.get("bpb"))]
        for d, r in ev["domains"].items()
    ]
    rows.append(
        ["**mean**", "", f"{ev['mean_loss']:.4f}", f"{math.exp(ev['mean_loss']):.2f}", _bpb(ev.get("mean_bpb"))]
    )
    return (
        [f"## Whole validation splits (`chinchilla evaluate`, step {ev['step']:,})", ""]
        + _table(["domain", "tokens", "loss (nats/token)", "perplexity", "bits per byte"], rows)
        + [""]
    )


def _pct(r: dict[str, Any], key: str) -> str:
    return f"{100 * r[key]:.2f}% ± {100 * r[key + '_stderr']:.2f}"


def hellaswag_section(run: RunLog, run_dir: Path, plots: dict[str, str]) -> list[str]:
    """HellaSwag over training, at each phase's end, and on the whole set (``chinchilla hellaswag``), when run."""
    path = run_dir / HELLASWAG
    whole = read_json(path) if path.is_file() else None
    if not run.hellaswag and whole is None:
        return []
    lines = [
        "## HellaSwag (downstream)",
        "",
        "Completion-style scoring as llm.c and build-nanogpt: acc_norm = the ending with the lowest mean loss "
        "per token wins, acc = the lowest summed loss; ± is the standard error sqrt(p(1-p)/n). Chance is 25%. "
        f"Endings are tokenized with this run's tokenizer, not GPT-2's: published figures ({PUBLISHED_124M}, "
        f"acc_norm on all {VALIDATION_ITEMS:,} items) use the same items and method with another tokenizer "
        "(docs/evaluation.md).",
        "",
    ]
    if run.hellaswag:
        lines += [f"![hellaswag]({plots['hellaswag']})", ""]
        at = {r["step"]: r for r in run.hellaswag}
        rows, prev = [], None
        for ph in run.phases:
            r = at.get(ph.end_step)
            if r is None:
                continue
            change = f"{100 * (r['acc_norm'] - prev['acc_norm']):+.2f}" if prev else "-"
            rows.append(
                [
                    ph.name,
                    f"{ph.end_step:,}",
                    f"{ph.end_step * run.tokens_per_step:,}",
                    _pct(r, "acc_norm"),
                    _pct(r, "acc"),
                    f"{r['num_items']:,}",
                    change,
                ]
            )
            prev = r
        if rows:
            lines += [
                "At the end of each phase (the trainer's evaluations; change in acc_norm points from the "
                "previous phase's end):",
                "",
            ]
            lines += _table(["phase", "step", "tokens", "acc_norm", "acc", "items", "change"], rows) + [""]
    if whole is not None:
        which = "the official file" if whole["official_file"] else "not the official file"
        scope = (
            f"all {VALIDATION_ITEMS:,} items of the official validation set"
            if whole["complete"]
            else f"{whole['num_items']:,} items ({which}; not comparable with the published figures)"
        )
        step = f", step {whole['step']:,}" if whole.get("step") is not None else ""
        lines += [
            f"`chinchilla hellaswag` ({whole['kind']}{step}) on {scope}: acc_norm {_pct(whole, 'acc_norm')}, "
            f"acc {_pct(whole, 'acc')}.",
            "",
        ]
    return lines


def transition_section(run: RunLog) -> list[str]:
    lines = ["## Forgetting and gain at the phase transition", ""]
    pairs = [t for t in run.transitions if "after_phase" in t]
    if not pairs:
        return lines + ["No phase after the first has finished yet."]
    for t in pairs:
        rows = []
        b_bpb, a_bpb = t.get("before_bpb", {}), t.get("after_bpb", {})  # absent: a run from before bits per byte
        for d in [d for d in run.domains if d in t["after"] and d in t["before"]]:
            before, after = t["before"][d], t["after"][d]
            if d in t["forgetting"]:
                kind = "forgotten" if t["forgetting"][d] > 0 else "kept improving"
            elif d in t["gain"]:
                kind = "gain" if t["gain"][d] > 0 else "no gain"
            else:
                kind = "-"
            bpb = [b_bpb.get(d), a_bpb.get(d)]
            change = f"{bpb[1] - bpb[0]:+.4f}" if None not in bpb else "-"
            rows.append([d, f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}", *map(_bpb, bpb), change, kind])
        a, b = t["after_phase"], t["phase"]
        lines += [
            f"Validation loss at the end of phase `{a}` and at the end of phase `{b}` (step {t['step']:,}), in "
            "nats/token and in bits per byte. Forgetting = rise on the earlier phases' domains; gain = fall on "
            "this phase's domains.",
            "",
        ]
        lines += _table(
            ["domain", f"after {a}", f"after {b}", "change", f"after {a} (bpb)", f"after {b} (bpb)", "change (bpb)"]
            + ["reading"],
            rows,
        )
        lines.append("")
    return lines


def render_report(
    run: RunLog, run_dir: Path, plots: dict[str, str], budget: list[tuple[str, float]], plan: dict[str, Any]
) -> str:
    """``report.md``'s text."""
    boundaries = ", ".join(f"phase {name} starts at {tokens:,} tokens" for name, tokens in run.boundaries())
    mark = f" Dashed lines: {boundaries}." if boundaries else ""
    lines = [
        f"# Run report: {run.name}",
        "",
        f"From `{run_dir}/metrics.jsonl`. Losses are next-token cross-entropy in nats/token; perplexity = "
        "exp(loss); bits per byte (bpb) = the summed losses / (ln 2 x the UTF-8 bytes of the predicted "
        "tokens), which does not depend on the tokenizer (nanochat's measure). Every figure below was "
        "measured by the run.",
        "",
    ]
    lines += summary_section(run, plan) + [""]
    lines += phases_section(run) + [""]
    lines += ["## Training loss", "", f"![training loss]({plots['train_loss']})", "", mark.strip(), ""]
    if "validation" in plots:
        lines += ["## Validation loss per domain", "", f"![validation loss]({plots['validation']})", ""]
    if "validation_bpb" in plots:
        lines += [f"![validation bits per byte]({plots['validation_bpb']})", ""]
    lines += [
        "## Tokens consumed per source",
        "",
        f"![tokens per source]({plots['tokens_per_source']})",
        "",
        "Each source's share of the tokens of every log interval (solid) against the curriculum's target "
        "weight there (dashed; a `blend_in` ramp shows as a slope):",
        "",
        f"![source shares]({plots['source_shares']})",
        "",
        "## Learning rate",
        "",
        f"![learning rate]({plots['learning_rate']})",
        "",
        "## Throughput",
        "",
        f"![throughput]({plots['throughput']})",
        "",
        "## Token budget: planned against trained",
        "",
        f"![token budget]({plots['budget']})",
        "",
    ]
    lines += _table(["budget", "tokens"], [[label, f"{v:,.0f}"] for label, v in budget])
    (n_lo, n_hi), (d_lo, d_hi) = FIT_RANGE_PARAMS, FIT_RANGE_TOKENS
    note = (
        ""
        if plan["within_fit_range"]
        else (
            f" At this size they extrapolate: the fits come from {compact(n_lo)}-{compact(n_hi)} parameters and "
            f"{compact(d_lo)}-{compact(d_hi)} tokens."
        )
    )
    lines += [
        "",
        "The fits' optima split the compute this run spent (C = 6 N D) as each published fit would." + note,
        "",
    ]
    lines += validation_section(run) + [""]
    lines += evaluation_section(run_dir)
    lines += transition_section(run)
    if downstream := hellaswag_section(run, run_dir, plots):
        lines += ([""] if lines[-1] else []) + downstream
    return "\n".join(lines).rstrip() + "\n"


def make_report(
    run_dir: str | Path, out_dir: str | Path | None = None, tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM
) -> Path:
    """Write ``report.md`` and its plots into ``out_dir`` (default ``<run_dir>/report``); returns report.md."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / REPORT
    run = read_run(run_dir)
    budget, plan = budget_rows(run, tokens_per_param)
    plots = write_plots(run, budget, out)
    path = out / "report.md"
    write_text(path, render_report(run, run_dir, plots, budget, plan))
    return path
