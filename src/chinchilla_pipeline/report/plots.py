"""The report's PNG plots, every one against tokens trained, phase boundaries marked.

Matplotlib's Agg backend (no display needed), a fixed size and dpi
(8 x 4.5 in at 100 dpi = 800 x 450 pixels) and no "Software" metadata, so the
same metrics give the same PNG bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import atomic_open
from ..counts import compact
from .runlog import RunLog

FIGSIZE = (8.0, 4.5)  # inches
DPI = 100  # -> 800 x 450 pixels


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tokens_axis(ax, xlabel: str = "tokens trained") -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: compact(x)))
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3)


def _mark_phases(ax, run: RunLog) -> None:
    """A dashed line at each phase boundary, labelled with the phase that starts there."""
    for name, x in run.boundaries():
        ax.axvline(x, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"phase {name} →",
            xy=(x, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14),
            textcoords="offset points",
            fontsize=9,
        )


def save_png(fig, path: Path, dpi: int = DPI) -> Path:
    """Write a PNG atomically, without the software tag: the same figure gives the same bytes."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    return path


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_train_loss(run: RunLog, path: Path) -> Path:
    """Per-step training loss, and its trailing mean over 1/50 of the run (at least 5 steps)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    window = max(5, len(run.train_loss) // 50)
    ax.plot(run.train_tokens, run.train_loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="per step")
    # The mean restarts at each phase so that it does not smear the jump at a boundary.
    starts = [0] + [tokens for _, tokens in run.boundaries()]
    for k, lo in enumerate(starts):
        hi = starts[k + 1] if k + 1 < len(starts) else float("inf")
        seg = [i for i, x in enumerate(run.train_tokens) if lo < x <= hi]
        if seg:
            ax.plot(
                [run.train_tokens[i] for i in seg],
                moving_average([run.train_loss[i] for i in seg], window),
                color="tab:blue",
                label=f"mean of {window} steps (per phase)" if k == 0 else None,
            )
    _mark_phases(ax, run)
    _tokens_axis(ax)
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(f"{run.name}: training loss")
    ax.legend(loc="best")
    return save_png(fig, path)


def plot_validation(run: RunLog, path: Path, unit: str = "loss") -> Path:
    """Validation per domain at each evaluation: ``unit`` "loss" in nats/token, "bpb" in bits/byte."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    series, label = (run.val_loss, "loss (nats/token)") if unit == "loss" else (run.val_bpb, "bits per byte")
    points = [(x, v) for x, v in zip(run.val_tokens, series) if v]  # records before bits per byte have none
    for d in [d for d in run.domains if d in points[-1][1]]:
        ax.plot([x for x, _ in points], [v[d] for _, v in points], marker="o", markersize=3, label=d)
    _mark_phases(ax, run)
    _tokens_axis(ax)
    ax.set_ylabel(f"validation {label}")
    ax.set_title(f"{run.name}: validation {label} per domain")
    ax.legend(loc="best")
    return save_png(fig, path)


def plot_tokens_per_source(run: RunLog, path: Path) -> Path:
    """Stacked area of the tokens drawn from each source so far (from 0 at the start)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    sources = [d for d in run.domains if any(d in seen for seen in run.tokens_seen)]
    xs = [0] + run.rate_tokens
    ax.stackplot(xs, *[[0] + [seen.get(k, 0) for seen in run.tokens_seen] for k in sources], labels=sources, alpha=0.85)
    _mark_phases(ax, run)
    _tokens_axis(ax)
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: compact(y)))
    ax.set_ylabel("tokens drawn from each source")
    ax.set_title(f"{run.name}: tokens consumed per source (stacked)")
    ax.legend(loc="upper left")
    return save_png(fig, path)


def plot_source_shares(run: RunLog, path: Path) -> Path:
    """Each source's realised share of the tokens of every log interval (solid, at the interval's middle)
    against the mixture's target weight (dashed): a hard switch is a step, a ``blend_in`` a ramp."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    sources = [d for d in run.domains if any(d in seen for seen in run.tokens_seen)]
    xs = [0] + run.rate_tokens
    seen = [{}] + run.tokens_seen
    mids = [(a + b) / 2 for a, b in zip(xs, xs[1:])]
    for k, color in zip(sources, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        got = [(b.get(k, 0) - a.get(k, 0)) / (x1 - x0) for a, b, x0, x1 in zip(seen, seen[1:], xs, xs[1:])]
        ax.plot(mids, got, color=color, label=f"{k} (drawn)")
        target = [(x, w[k]) for x, w in zip(run.rate_tokens, run.target_weights) if k in w]
        if target:
            ax.plot(*zip(*target), color=color, linestyle="--", linewidth=1, label=f"{k} (target)")
    _mark_phases(ax, run)
    _tokens_axis(ax)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share of each log interval's tokens")
    ax.set_title(f"{run.name}: each source's share, drawn against the mixture's target")
    ax.legend(loc="best", fontsize=8, ncol=2)
    return save_png(fig, path)


def plot_learning_rate(run: RunLog, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(run.train_tokens, run.lr, color="tab:green")
    _mark_phases(ax, run)
    _tokens_axis(ax)
    ax.set_ylabel("learning rate")
    ax.set_title(f"{run.name}: learning rate (one schedule across phases)")
    return save_png(fig, path)


def plot_throughput(run: RunLog, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(run.rate_tokens, run.tokens_per_s, color="tab:orange", marker="o", markersize=3)
    _mark_phases(ax, run)
    _tokens_axis(ax)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("tokens/s (each log interval)")
    ax.set_title(f"{run.name}: training throughput")
    return save_png(fig, path)


def plot_hellaswag(run: RunLog, path: Path) -> Path:
    """HellaSwag acc_norm and acc at each evaluation, with chance (25%) drawn."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    xs = [r["step"] * run.tokens_per_step for r in run.hellaswag]
    ax.plot(xs, [100 * r["acc_norm"] for r in run.hellaswag], marker="o", markersize=3, label="acc_norm (mean loss)")
    ax.plot(xs, [100 * r["acc"] for r in run.hellaswag], marker="o", markersize=3, alpha=0.6, label="acc (summed loss)")
    ax.axhline(25, color="gray", linestyle=":", linewidth=1, label="chance (25%)")
    _mark_phases(ax, run)
    _tokens_axis(ax)
    ax.set_ylabel(f"HellaSwag accuracy, % ({run.hellaswag[-1]['num_items']:,} items)")
    ax.set_title(f"{run.name}: HellaSwag during training (the run's tokenizer)")
    ax.legend(loc="best")
    return save_png(fig, path)


def plot_budget(rows: list[tuple[str, float]], title: str, path: Path) -> Path:
    """Horizontal bars: the planner's and the fits' token budgets beside the tokens trained."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    labels, values = [r[0] for r in rows], [r[1] for r in rows]
    bars = ax.barh(range(len(rows)), values, color=["tab:gray"] * (len(rows) - 1) + ["tab:blue"])
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    for bar, v in zip(bars, values):
        ax.annotate(
            compact(v),
            xy=(bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(right=max(values) * 1.18)
    _tokens_axis(ax, "tokens")
    ax.set_title(title)
    fig.tight_layout()
    return save_png(fig, path)


def write_plots(run: RunLog, budget_rows: list[tuple[str, float]], out_dir: Path) -> dict[str, Any]:
    """Every plot into ``out_dir``; returns {key: file name}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {
        "train_loss": plot_train_loss(run, out_dir / "train_loss.png"),
        "tokens_per_source": plot_tokens_per_source(run, out_dir / "tokens_per_source.png"),
        "source_shares": plot_source_shares(run, out_dir / "source_shares.png"),
        "learning_rate": plot_learning_rate(run, out_dir / "learning_rate.png"),
        "throughput": plot_throughput(run, out_dir / "throughput.png"),
        "budget": plot_budget(
            budget_rows, f"{run.name}: token budget, N = {run.num_params:,} parameters", out_dir / "budget.png"
        ),
    }
    if run.val_loss:
        made["validation"] = plot_validation(run, out_dir / "validation_loss.png")
    if any(run.val_bpb):
        made["validation_bpb"] = plot_validation(run, out_dir / "validation_bpb.png", "bpb")
    if run.hellaswag:
        made["hellaswag"] = plot_hellaswag(run, out_dir / "hellaswag.png")
    return {k: p.name for k, p in made.items()}
