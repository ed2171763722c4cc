"""``chinchilla isoflop``: measure the compute-optimal tokens per parameter (Chinchilla's approach 2).

For each compute budget C and each model width of the family (``model.family.family_config``),
train N parameters on D = C / (6 N) tokens, with the same data mix, tokenizer, batch,
optimiser and schedule rules (warmup share, cosine to the end of each run). A parabola of
the final validation loss (mean over the domains) against log N gives N_opt per budget;
D_opt / N_opt is the measured ratio, to compare with the seed's 20 and the planner's fits.
Each seed is fitted alone too: the spread of their N_opt is the interval reported.

The fit stays on nats/token, as Chinchilla's: every run shares one tokenizer and one validation set, so
each domain's bits per byte is its nats/token times a constant (tokens per byte / ln 2), and the sizes
rank the same; only the mean over domains weights them differently. The results give each run's final
bits per byte (mean over domains) beside the nats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from ...atomic import write_json, write_text
from ...errors import UserError
from ...model.config import load_model_config
from ...model.family import family_config
from ...plan import DEFAULT_TOKENS_PER_PARAM, FITS, FLOPS_PER_PARAM_TOKEN, params_for_compute, training_flops
from ...schema import StrictModel, load_config, read_json
from ...train.config import BatchConfig, CurriculumConfig
from .fit import fit_parabola, optimum, power_law
from .runs import (
    dataset_train_tokens,
    dataset_vocab_size,
    final_validation,
    mean_over_domains,
    overall_proportions,
    summarize,
    train_or_skip,
    write_family_model,
    write_run_config,
)

# A run shorter than this many optimiser steps says more about warmup than about N and D.
MIN_STEPS = 20
# Evaluate only at the end of each run (the trainer always evaluates at a phase's end):
# intermediate evaluations would cost time and are not used.
EVAL_ONLY_AT_END = 10**9


class BudgetConfig(StrictModel):
    """One compute budget C = 6 N D and the family widths trained at it (at least 3 sizes)."""

    flops: PositiveFloat
    widths: list[PositiveInt] = Field(min_length=3)

    @field_validator("widths")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"widths must be distinct, got {v}")
        return sorted(v)


class IsoflopConfig(StrictModel):
    """``config/demo/isoflop.json``."""

    base: str = Field(min_length=1)  # curriculum config: its sources, optimiser, schedule and eval are used
    # Weights of the one mixed phase: "train_tokens" = each source in proportion to its prepared
    # training tokens (every source runs out at the same time: the fewest repeats); "curriculum" =
    # the base's overall proportions.
    mix: Literal["train_tokens", "curriculum"] = "train_tokens"
    block_size: PositiveInt = 128
    seeds: list[int] = Field(min_length=1)
    batch: BatchConfig = BatchConfig()
    budgets: list[BudgetConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {self.seeds}")
        flops = [b.flops for b in self.budgets]
        if len(set(flops)) != len(flops):
            raise ValueError(f"budgets must differ, got {flops}")
        return self


def budget_label(flops: float) -> str:
    """1e12 -> 'C1e12', 3.2e12 -> 'C3.2e12' (a run-name prefix)."""
    return "C" + f"{flops:.3g}".replace("+", "")


def mixed_phase(base: CurriculumConfig, mix: str) -> dict[str, Any]:
    """One phase with every source of the base, weighted by ``mix``."""
    domains = base.domains()
    if mix == "train_tokens":
        weights = {n: float(dataset_train_tokens(p)) for n, p in domains.items()}
    else:
        weights = overall_proportions([p.model_dump() for p in base.phases])
    return {
        "name": "mixed",
        "share": 1.0,
        "sources": [{"name": n, "path": p, "weight": weights[n]} for n, p in domains.items()],
    }


def grid(
    cfg: IsoflopConfig,
    num_params: dict[int, int],
    budgets: Sequence[BudgetConfig],
    config_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every (budget, width): N, D = C / (6 N) in whole steps, D/N. Too few steps is a ``UserError``."""
    tps = cfg.batch.global_batch_tokens
    rows = []
    for b in budgets:
        for w in b.widths:
            n = num_params[w]
            steps = round(b.flops / (FLOPS_PER_PARAM_TOKEN * n) / tps)
            if steps < MIN_STEPS:
                raise UserError(
                    f"width {w} ({n:,} parameters) gets {steps} steps of {tps:,} tokens at "
                    f"C = {b.flops:.3g} (fewer than {MIN_STEPS}): raise the budget or drop the width",
                    path=config_path,
                    field="budgets",
                )
            d = steps * tps
            rows.append(
                {
                    "flops": b.flops,
                    "width": w,
                    "num_params": n,
                    "num_tokens": d,
                    "tokens_per_param": d / n,
                    "steps": steps,
                }
            )
    return rows


def format_grid(rows: list[dict[str, Any]], num_seeds: int) -> str:
    """The runs, one per line, and what they cost in tokens and FLOPs over all seeds."""
    lines = [f"{'C (FLOPs)':>10} {'width':>5} {'N':>10} {'D tokens':>11} {'D/N':>7} {'steps':>6}"]
    lines += [
        f"{r['flops']:>10.3g} {r['width']:>5} {r['num_params']:>10,} {r['num_tokens']:>11,} "
        f"{r['tokens_per_param']:>7.2f} {r['steps']:>6,}"
        for r in rows
    ]
    tokens = sum(r["num_tokens"] for r in rows) * num_seeds
    flops = sum(training_flops(r["num_params"], r["num_tokens"]) for r in rows) * num_seeds
    lines.append(f"{len(rows)} runs x {num_seeds} seeds: {tokens:,} training tokens, {flops:.3g} FLOPs (6 N D)")
    return "\n".join(lines)


def budget_analysis(
    flops: float,
    sizes: list[dict[str, Any]],
    losses: dict[tuple[float, int, int], float],
    bpb: dict[tuple[float, int, int], float],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """One budget: the parabola on the seed-mean losses (nats/token) and one per seed, the optimum, the
    seeds' range of optima, the best size trained, and the planner's fits at the same C. ``bpb`` (bits
    per byte, keyed as ``losses``) is reported per size, not fitted."""
    ns = [r["num_params"] for r in sizes]
    by_seed = {s: [losses[(flops, r["width"], s)] for r in sizes] for s in seeds}
    bpb_by_seed = {s: [bpb[(flops, r["width"], s)] for r in sizes] for s in seeds}
    mean = [summarize([by_seed[s][i] for s in seeds])["mean"] for i in range(len(sizes))]
    central = fit_parabola(ns, mean)
    per_seed = {s: fit_parabola(ns, by_seed[s]) for s in seeds}
    seed_optima = [optimum(flops, f["num_params_opt"]) for f in per_seed.values() if f["convex"]]
    keys = ("width", "num_params", "num_tokens", "tokens_per_param")
    return {
        "flops": flops,
        "sizes": [
            {
                **r,
                "loss_mean": m,
                "loss_by_seed": {str(s): by_seed[s][i] for s in seeds},
                "bpb_mean": summarize([bpb_by_seed[s][i] for s in seeds])["mean"],
                "bpb_by_seed": {str(s): bpb_by_seed[s][i] for s in seeds},
            }
            for i, (r, m) in enumerate(zip(sizes, mean))
        ],
        "fit": central,
        "fit_by_seed": {str(s): f for s, f in per_seed.items()},
        "optimum": optimum(flops, central["num_params_opt"]) if central["convex"] else None,
        "optimum_seed_range": {
            k: [min(o[k] for o in seed_optima), max(o[k] for o in seed_optima)]
            for k in ("num_params", "num_tokens", "tokens_per_param")
        }
        if seed_optima
        else None,
        "num_convex_seeds": len(seed_optima),
        # The size with the lowest seed-mean loss: where the vertex lies outside the sizes trained,
        # the optimum is at or beyond this one, and its D/N a bound on the ratio.
        "best_trained": min(
            ({k: r[k] for k in keys} | {"loss_mean": m} for r, m in zip(sizes, mean)), key=lambda r: r["loss_mean"]
        ),
        "params_at_20": params_for_compute(flops, DEFAULT_TOKENS_PER_PARAM),
        "planner": {fit.name: optimum(flops, fit.compute_optimal(flops)[0]) for fit in FITS},
    }


def analyse(
    rows: list[dict[str, Any]],
    losses: dict[tuple[float, int, int], float],
    bpb: dict[tuple[float, int, int], float],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """Every budget's ``budget_analysis``, and N_opt ∝ C^a over the budgets whose vertex lies
    within the sizes trained (an extrapolated vertex is not a measurement)."""
    budgets = [
        budget_analysis(c, [r for r in rows if r["flops"] == c], losses, bpb, seeds)
        for c in sorted({r["flops"] for r in rows})
    ]
    good = [b for b in budgets if b["optimum"] and b["fit"]["inside"]]
    scaling = power_law([b["flops"] for b in good], [b["optimum"]["num_params"] for b in good])
    return {"budgets": budgets, "scaling": None if scaling is None else {**scaling, "num_budgets": len(good)}}


def format_results(analysis: dict[str, Any]) -> str:
    """Markdown: the optimum per budget with its seed range, beside 20 and the planner's fits."""
    fits = [f.name for f in FITS]
    head = [
        "C (FLOPs)",
        "best trained: width, N (D/N)",
        "vertex N_opt",
        "D_opt",
        "D/N",
        "D/N range over seeds",
        "vertex inside sizes",
        *(f"D/N {f}" for f in fits),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in analysis["budgets"]:
        o, rng, best = b["optimum"], b["optimum_seed_range"], b["best_trained"]
        span = (
            f"{rng['tokens_per_param'][0]:.1f}–{rng['tokens_per_param'][1]:.1f} "
            f"({b['num_convex_seeds']}/{len(b['fit_by_seed'])} seeds)"
            if rng
            else "no seed fit is convex"
        )
        cells = [f"{b['flops']:.3g}", f"{best['width']}, {best['num_params']:,} ({best['tokens_per_param']:.1f})"]
        cells += (
            [
                f"{o['num_params']:,.0f}",
                f"{o['num_tokens']:,.0f}",
                f"{o['tokens_per_param']:.1f}",
                span,
                "yes" if b["fit"]["inside"] else "no (extrapolated)",
            ]
            if o
            else ["no minimum", "", "", span, ""]
        )
        cells += [f"{b['planner'][f]['tokens_per_param']:.1f}" for f in fits]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Final validation loss (mean over domains and seeds) per run, in nats/token (what is fitted) and in "
        "bits per byte:",
        "",
        "| C (FLOPs) | width | N | D | D/N | loss, nats/token (mean ± std over seeds) | bits per byte |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in analysis["budgets"]:
        for r in b["sizes"]:
            s = summarize(list(r["loss_by_seed"].values()))
            sb = summarize(list(r["bpb_by_seed"].values()))
            lines.append(
                f"| {b['flops']:.3g} | {r['width']} | {r['num_params']:,} | {r['num_tokens']:,} | "
                f"{r['tokens_per_param']:.2f} | {s['mean']:.4f} ± {s['std']:.4f} | "
                f"{sb['mean']:.4f} ± {sb['std']:.4f} |"
            )
    if analysis["scaling"]:
        sc = analysis["scaling"]
        lines += [
            "",
            f"N_opt ∝ C^{sc['exponent']:.2f} over {sc['num_budgets']} budgets with a vertex inside "
            "their sizes (Hoffmann et al. 2022, approach 2: 0.49).",
        ]
    return "\n".join(lines)


def run_isoflop(
    config_path: str | Path,
    out_dir: str | Path = "runs/isoflop",
    *,
    seeds: Sequence[int] | None = None,
    budgets: Sequence[float] | None = None,
    device: str = "auto",
    plan_only: bool = False,
) -> dict[str, Any] | None:
    """Train every (seed, budget, width) not yet finished, fit, and write ``results.json``,
    ``results.md`` and ``isoflop.png`` to ``out_dir``. ``plan_only`` prints the grid and trains nothing."""
    cfg = load_config(IsoflopConfig, config_path)
    seeds = list(seeds) if seeds else cfg.seeds
    chosen = cfg.budgets
    if budgets:
        chosen = [b for b in cfg.budgets if any(abs(b.flops - f) <= 1e-9 * f for f in budgets)]
        if len(chosen) != len(budgets):
            raise UserError(
                f"--budgets {list(budgets)}: each must be one of the config's {[b.flops for b in cfg.budgets]}",
                path=config_path,
                field="budgets",
            )
    base_cfg = load_config(CurriculumConfig, cfg.base)
    base = read_json(cfg.base)
    out = Path(out_dir)
    vocab = dataset_vocab_size(next(iter(base_cfg.domains().values())))
    widths = sorted({w for b in chosen for w in b.widths})
    num_params = {w: family_config(w, vocab, cfg.block_size).num_params() for w in widths}
    rows = grid(cfg, num_params, chosen, config_path)
    print(format_grid(rows, len(seeds)), flush=True)
    if plan_only:
        return None
    phase = mixed_phase(base_cfg, cfg.mix)
    shared = {
        k: v
        for k, v in base.items()
        if k in ("optimizer", "schedule", "checkpoint", "log_interval_steps", "dtype", "compile")
    }
    shared["batch"] = cfg.batch.model_dump()
    shared["eval"] = {**base.get("eval", {}), "interval_steps": EVAL_ONLY_AT_END}
    # (C, width, seed) -> final validation, mean over the domains: nats/token (fitted) and bits per byte
    losses: dict[tuple[float, int, int], float] = {}
    bpb: dict[tuple[float, int, int], float] = {}
    seconds: dict[str, float] = {}
    # Budget-major: each budget is complete (every seed) before the next starts, so an interrupted
    # run already has whole budgets to analyse with --budgets.
    order = [(r, seed) for b in chosen for seed in seeds for r in rows if r["flops"] == b.flops]
    for r, seed in order:
        model_path = write_family_model(out, r["width"], vocab, cfg.block_size)
        name = f"{budget_label(r['flops'])}_w{r['width']}_seed{seed}"
        path = write_run_config(
            out,
            {
                **shared,
                "name": name,
                "model": str(model_path),
                "seed": seed,
                "total_tokens": r["num_tokens"],
                "phases": [phase],
            },
        )
        took = train_or_skip(path, load_model_config(model_path), out, device)
        if took is not None:
            seconds[name] = took
        final = final_validation(out / name, r["steps"])
        losses[(r["flops"], r["width"], seed)] = mean_over_domains(final["loss"])
        bpb[(r["flops"], r["width"], seed)] = mean_over_domains(final["bpb"])
    analysis = analyse(rows, losses, bpb, seeds)
    result = {
        "config": str(config_path),
        "seeds": seeds,
        "mix": phase,
        "batch": cfg.batch.model_dump(),
        **analysis,
        "seconds_this_invocation": seconds,
    }
    write_json(out / "results.json", result)
    table = format_results(analysis)
    write_text(
        out / "results.md",
        f"IsoFLOP (Chinchilla approach 2), {len(seeds)} seeds; loss = final "
        f"validation loss, mean over the domains (nats/token; the fit), bits per byte beside it.\n\n{table}\n",
    )
    from .plots import plot_isoflop

    plot_isoflop(analysis, out / "isoflop.png")
    print(table)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'isoflop.png'}")
    return result
