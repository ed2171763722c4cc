"""PNG plots of the experiments (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...plan import DEFAULT_TOKENS_PER_PARAM, FITS, params_for_compute
from ...report.plots import pyplot, save_png
from .fit import parabola_at


def _figure(ncols: int, width: float, height: float):
    return pyplot().subplots(1, ncols, figsize=(width, height))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def plot_ablation(
    summary: dict[str, Any], finals: dict[str, dict[int, dict[str, float]]], path: Path, title: str
) -> None:
    """Grouped bars: final validation loss per domain and on average, one bar per variant
    (mean over seeds, error bar = min–max), each seed as a dot."""
    fig, ax = _figure(1, 9, 4.5)
    variants = list(summary)
    domains = [*next(iter(summary.values()))["domains"], "average"]
    width = 0.8 / len(variants)
    x = np.arange(len(domains))
    for i, v in enumerate(variants):
        stats = [summary[v]["domains"][d] if d != "average" else summary[v]["average"] for d in domains]
        mean = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["min"] for s in stats], [s["max"] - s["mean"] for s in stats]])
        pos = x + (i - (len(variants) - 1) / 2) * width
        ax.bar(pos, mean, width, yerr=err, capsize=3, label=v, alpha=0.8)
        for losses in finals[v].values():
            vals = [losses[d] if d != "average" else sum(losses.values()) / len(losses) for d in domains]
            ax.plot(pos, vals, "k.", markersize=5, zorder=3)
    lo = min(s["min"] for v in variants for s in [*summary[v]["domains"].values(), summary[v]["average"]])
    hi = max(s["max"] for v in variants for s in [*summary[v]["domains"].values(), summary[v]["average"]])
    ax.set_ylim(lo - 0.15 * (hi - lo) - 0.01, hi + 0.1 * (hi - lo) + 0.01)
    ax.set_xticks(x, domains)
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title(f"Curriculum ablation: {title} (bars: mean, whiskers: min–max, dots: seeds)", fontsize=9)
    ax.legend()
    _save(fig, path)


def plot_isoflop(analysis: dict[str, Any], path: Path) -> None:
    """Left: loss against N per budget (seeds as dots, seed means, fitted parabola, vertex).
    Right: N_opt against C with the seed range, the power law, 20 tokens/param and the planner's fits."""
    fig, (ax, ax2) = _figure(2, 12, 4.8)
    budgets = analysis["budgets"]
    colors = pyplot().cm.viridis(np.linspace(0.1, 0.85, len(budgets)))
    for b, color in zip(budgets, colors):
        ns = np.array([r["num_params"] for r in b["sizes"]], dtype=float)
        for r in b["sizes"]:
            ax.plot(
                [r["num_params"]] * len(r["loss_by_seed"]),
                list(r["loss_by_seed"].values()),
                ".",
                color=color,
                alpha=0.4,
            )
        ax.plot(ns, [r["loss_mean"] for r in b["sizes"]], "o", color=color, label=f"C = {b['flops']:.3g}")
        grid = np.geomspace(ns.min() / 1.3, ns.max() * 1.3, 100)
        ax.plot(grid, parabola_at(b["fit"]["coeffs"], grid), "-", color=color)
        if b["optimum"] and b["fit"]["inside"]:
            ax.plot(
                b["optimum"]["num_params"], b["fit"]["loss_opt"], "*", color=color, markersize=14, markeredgecolor="k"
            )
        best = b["best_trained"]
        ax.plot(best["num_params"], best["loss_mean"], "s", markersize=11, markerfacecolor="none", color=color)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (embeddings included)")
    ax.set_ylabel("final validation loss, mean over domains")
    ax.set_title("IsoFLOP curves: D = C / (6N); stars: fitted optima, squares: best size trained", fontsize=10)
    ax.legend(fontsize=8)

    cs = np.array([b["flops"] for b in budgets], dtype=float)
    c_grid = np.geomspace(cs.min() / 2, cs.max() * 2, 50)
    good = [b for b in budgets if b["optimum"] and b["fit"]["inside"]]
    for b in budgets:  # no vertex within the sizes: the best size trained bounds the optimum
        if b in good:
            continue
        below = b["best_trained"]["num_params"] == b["sizes"][0]["num_params"]  # sizes ascend
        ax2.plot(
            b["flops"],
            b["best_trained"]["num_params"],
            "v" if below else "^",
            color="k",
            markersize=9,
            markerfacecolor="none",
            label=f"best size trained; optimum {'below' if below else 'above'} it",
        )
    if good:
        opt = np.array([b["optimum"]["num_params"] for b in good])
        rng = [b["optimum_seed_range"]["num_params"] if b["optimum_seed_range"] else [n, n] for b, n in zip(good, opt)]
        err = np.array([[n - r[0] for n, r in zip(opt, rng)], [r[1] - n for n, r in zip(opt, rng)]]).clip(min=0)
        ax2.errorbar(
            [b["flops"] for b in good],
            opt,
            yerr=err,
            fmt="o",
            color="k",
            capsize=4,
            label="measured N_opt (bars: range over seeds)",
        )
    if analysis["scaling"]:
        s = analysis["scaling"]
        ax2.plot(c_grid, s["coefficient"] * c_grid ** s["exponent"], "k-", label=f"fit N_opt ∝ C^{s['exponent']:.2f}")
    ax2.plot(
        c_grid,
        [params_for_compute(c, DEFAULT_TOKENS_PER_PARAM) for c in c_grid],
        "--",
        color="gray",
        label="20 tokens/param",
    )
    for fit, style in zip(FITS, (":", "-.")):
        ax2.plot(c_grid, [fit.compute_optimal(c)[0] for c in c_grid], style, label=f"{fit.name} (extrapolated)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("compute C = 6 N D (FLOPs)")
    ax2.set_ylabel("compute-optimal N")
    ax2.set_title("Optimal model size against compute", fontsize=10)
    ax2.legend(fontsize=8)
    _save(fig, path)


def plot_recipes(result: dict[str, Any], path: Path) -> None:
    """Mean validation bpb over the domains against training tokens, one line per (recipe, seed), with the
    other recipe's final mean as a dashed level (where the tokens-to-reach figure is read)."""
    fig, ax = _figure(1, 8, 4.5)
    tps = result["tokens_per_step"]
    for i, (name, by_seed) in enumerate(result["curves"].items()):
        color = f"C{i}"
        for k, curve in enumerate(by_seed.values()):
            tokens = [step * tps / 1e6 for step, _, _ in curve]
            means = [sum(bpb.values()) / len(bpb) for _, bpb, _ in curve]
            ax.plot(tokens, means, color=color, alpha=0.8, label=name if k == 0 else None)
    reach = result["tokens_to_reach"]
    ax.axhline(reach["target_bpb"], color="k", ls="--", lw=0.8, label=f"{reach['other']} final mean")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("validation bits per byte (mean over domains)")
    ax.set_title(f"Recipes on the demo curriculum, seeds {result['seeds']}", fontsize=9)
    ax.legend()
    _save(fig, path)
