"""``chinchilla compare-recipes``: GPT-2's recipe against the modern one, same data, tokens and curriculum.

A recipe is an architecture (``model.family.family_config``: the same width and depth for
every recipe, so the same FLOPs per token) with an optimiser and a schedule. From one base
curriculum (``config/demo/curriculum.json``: its phases, batch and evaluation) every run
trains the same tokens, D = ``tokens_per_param`` x the first recipe's parameter count, in
the same phase order.

1. Tuning: each recipe's peak learning rates, scaled together by each of its
   ``lr_multipliers``, on ``tuning_seed`` (not one of ``seeds``); the multiplier with the
   lowest final mean validation bits per byte wins.
2. Measurement: each recipe at its tuned multiplier on every seed of ``seeds``.
3. The table: final validation bpb (and nats/token) per domain and their mean, mean ± std
   over seeds; and how many tokens the better recipe needed to reach the other's final
   mean bpb (linear between evaluations; an upper bound for a run of that length, whose
   schedule would have decayed earlier).

Each run is an ordinary ``run_pretrain`` (``instruments/experiments/runs.py``), skipped when finished.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from ...atomic import write_json, write_text
from ...data.config import NAME_PATTERN
from ...model.config import load_model_config
from ...model.family import family_config
from ...plan import DEFAULT_TOKENS_PER_PARAM, tokens_for_params
from ...schema import StrictModel, load_config, read_json
from ...train.config import CurriculumConfig, OptimizerConfig, ScheduleConfig
from ...train.metrics import read_metrics
from ...train.rundir import METRICS
from .runs import dataset_vocab_size, summarize, train_or_skip, write_run_config


class RecipeConfig(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)  # labels the runs (<name>_lr<m>_seed<seed>) and the table's rows
    architecture: Literal["gpt2", "nanochat"]
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    lr_multipliers: list[PositiveFloat] = Field(min_length=1)  # x every peak lr of ``optimizer``, tried on tuning_seed


class CompareConfig(StrictModel):
    """``config/demo/recipes.json``."""

    base: str = Field(min_length=1)  # curriculum config: phases, batch and evaluation are taken from it
    width: PositiveInt = 32  # family width of every recipe's model (2 layers of 2 heads at 32)
    block_size: PositiveInt = 128
    tokens_per_param: PositiveFloat = DEFAULT_TOKENS_PER_PARAM  # D = 20 N of the first recipe's model
    eval_interval_steps: PositiveInt = 40  # validation this often: the curve the tokens-to-reach figure reads
    tuning_seed: int
    seeds: list[int] = Field(min_length=1)
    recipes: list[RecipeConfig] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self):
        names = [r.name for r in self.recipes]
        if len(set(names)) != len(names):
            raise ValueError(f"recipe names must be unique, got {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {self.seeds}")
        if self.tuning_seed in self.seeds:
            raise ValueError(f"tuning_seed {self.tuning_seed} must not be one of the seeds {self.seeds}")
        return self


def scaled_optimizer(opt: OptimizerConfig, multiplier: float) -> dict[str, Any]:
    """``opt`` with every peak learning rate x ``multiplier`` (AdamW's lr; Muon's three and AdamW's)."""
    data = opt.model_dump(exclude_none=True)
    data["lr"] *= multiplier
    if "muon" in data:
        for key in ("matrix_lr", "embedding_lr", "head_lr"):
            data["muon"][key] *= multiplier
    return data


def run_name(recipe: str, multiplier: float, seed: int) -> str:
    return f"{recipe}_lr{multiplier:g}_seed{seed}".replace(".", "p")


def validation_curve(run_dir: Path) -> list[tuple[int, dict[str, float], dict[str, float]]]:
    """(step, bpb per domain, nats per domain) of every validation record, in step order."""
    records = read_metrics(Path(run_dir) / METRICS, "validation")
    return [(s, dict(records[s]["bpb"]), dict(records[s]["loss"])) for s in sorted(records)]


def tokens_to_reach(curve: Sequence[tuple[int, float]], target: float, tokens_per_step: int) -> float | None:
    """Training tokens at which ``curve`` ((step, mean bpb), in order) first reaches ``target``, linear
    between evaluations; None when it never does."""
    prev = None
    for step, value in curve:
        if value <= target:
            if prev is None:
                return step * tokens_per_step
            (s0, v0) = prev
            return (s0 + (v0 - target) / (v0 - value) * (step - s0)) * tokens_per_step
        prev = (step, value)
    return None


def _mean(values: dict[str, float]) -> float:
    return statistics.fmean(values.values())


def format_tables(result: dict[str, Any]) -> str:
    """Markdown: the tuning runs, then the measured table (bpb per domain and mean), then tokens to reach."""
    domains = result["domains"]
    lines = [
        f"Tuning on seed {result['tuning_seed']}: final mean validation bpb per lr multiplier "
        "(x every peak lr of the recipe; the lowest is used).",
        "",
        "| recipe | " + " | ".join(f"x{m:g}" for m in result["multipliers_tried"]) + " |",
        "|---|" + "---|" * len(result["multipliers_tried"]),
    ]
    for name, tried in result["tuning"].items():
        cells = []
        for m in result["multipliers_tried"]:
            v = tried.get(f"{m:g}")
            cells.append("" if v is None else (f"**{v:.4f}**" if m == result["tuned"][name] else f"{v:.4f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Final validation bits per byte, mean ± std over seeds {result['seeds']} "
        f"({result['num_params']} parameters; {result['total_tokens']:,} tokens per run):",
        "",
        "| recipe | lr x | " + " | ".join(domains) + " | mean bpb | mean nats/token |",
        "|---|---|" + "---|" * (len(domains) + 2),
    ]
    for name, row in result["summary"].items():
        cells = [f"{row['bpb'][d]['mean']:.4f} ± {row['bpb'][d]['std']:.4f}" for d in domains]
        lines.append(
            f"| {name} | {result['tuned'][name]:g} | "
            + " | ".join(cells)
            + f" | {row['bpb_mean']['mean']:.4f} ± {row['bpb_mean']['std']:.4f}"
            + f" | {row['nats_mean']['mean']:.4f} ± {row['nats_mean']['std']:.4f} |"
        )
    reach = result["tokens_to_reach"]
    lines += ["", reach["sentence"]]
    return "\n".join(lines) + "\n"


def run_compare(
    config_path: str | Path, out_dir: str | Path = "runs/recipes", *, device: str = "auto"
) -> dict[str, Any]:
    """Tune, train every (recipe, seed) not yet finished, then write ``results.json``, ``results.md`` and
    ``recipes.png`` to ``out_dir``. Returns the results."""
    from .plots import plot_recipes

    cfg = load_config(CompareConfig, config_path)
    base_cfg = load_config(CurriculumConfig, cfg.base)  # validates the base before anything runs
    base = read_json(cfg.base)
    out = Path(out_dir)
    vocab = dataset_vocab_size(base_cfg.phases[0].sources[0].path)
    models = {}
    for r in cfg.recipes:
        model = family_config(
            cfg.width, vocab, cfg.block_size, name=f"{r.name}_w{cfg.width}", architecture=r.architecture
        )
        path = out / "models" / f"{r.name}_w{cfg.width}.json"
        write_json(path, model.model_dump())
        models[r.name] = (path, load_model_config(path))
    first = cfg.recipes[0].name
    total = tokens_for_params(models[first][1].num_params(), cfg.tokens_per_param)
    shared = {
        k: v
        for k, v in base.items()
        if not k.startswith("_")
        and k not in ("name", "model", "seed", "total_tokens", "tokens_per_param", "optimizer", "schedule")
    }
    shared["eval"] = {**base.get("eval", {}), "interval_steps": cfg.eval_interval_steps}

    def train(recipe: RecipeConfig, multiplier: float, seed: int) -> Path:
        path, model = models[recipe.name]
        data = {
            **shared,
            "name": run_name(recipe.name, multiplier, seed),
            "model": str(path),
            "seed": seed,
            "total_tokens": total,
            "optimizer": scaled_optimizer(recipe.optimizer, multiplier),
            "schedule": recipe.schedule.model_dump(),
        }
        config = write_run_config(out, data)
        train_or_skip(config, model, out, device)
        return out / data["name"]

    print(
        f"compare-recipes: {', '.join(r.name for r in cfg.recipes)} at width {cfg.width}, "
        f"{total:,} tokens per run; tuning on seed {cfg.tuning_seed}, then seeds {cfg.seeds}",
        flush=True,
    )
    tuning: dict[str, dict[str, float]] = {}
    tuned: dict[str, float] = {}
    for r in cfg.recipes:
        tuning[r.name] = {}
        for m in r.lr_multipliers:
            curve = validation_curve(train(r, m, cfg.tuning_seed))
            tuning[r.name][f"{m:g}"] = _mean(curve[-1][1])
        tuned[r.name] = min(r.lr_multipliers, key=lambda m: tuning[r.name][f"{m:g}"])
    curves: dict[str, dict[int, list]] = {r.name: {} for r in cfg.recipes}
    for seed in cfg.seeds:
        for r in cfg.recipes:
            curves[r.name][seed] = validation_curve(train(r, tuned[r.name], seed))
    domains = list(base_cfg.domains())
    summary = {
        name: {
            "bpb": {d: summarize([c[-1][1][d] for c in by_seed.values()]) for d in domains},
            "nats": {d: summarize([c[-1][2][d] for c in by_seed.values()]) for d in domains},
            "bpb_mean": summarize([_mean(c[-1][1]) for c in by_seed.values()]),
            "nats_mean": summarize([_mean(c[-1][2]) for c in by_seed.values()]),
        }
        for name, by_seed in curves.items()
    }
    ranked = sorted(summary, key=lambda n: summary[n]["bpb_mean"]["mean"])
    better, other = ranked[0], ranked[1]
    target = summary[other]["bpb_mean"]["mean"]
    tps = base_cfg.batch.global_batch_tokens
    per_seed = {
        seed: tokens_to_reach([(s, _mean(b)) for s, b, _ in c], target, tps) for seed, c in curves[better].items()
    }
    reached = [v for v in per_seed.values() if v is not None]
    reach: dict[str, Any] = {"better": better, "other": other, "target_bpb": target, "per_seed": per_seed}
    if len(reached) == len(per_seed):
        reach.update(tokens=summarize(reached), share_of_budget=statistics.fmean(reached) / total)
        reach["sentence"] = (
            f"`{better}` reached `{other}`'s final mean bpb ({target:.4f}) after {statistics.fmean(reached):,.0f} "
            f"tokens (mean over seeds; {100 * reach['share_of_budget']:.0f}% of the {total:,}), i.e. "
            f"{total / statistics.fmean(reached):.2f}x fewer tokens."
        )
    else:
        reach["sentence"] = f"`{better}` did not reach `{other}`'s final mean bpb ({target:.4f}) on every seed."
    result = {
        "config": str(config_path),
        "base": cfg.base,
        "width": cfg.width,
        "models": {n: {"path": str(p), "num_params": m.num_params()} for n, (p, m) in models.items()},
        "num_params": ", ".join(f"{n} {m.num_params():,}" for n, (_, m) in models.items()),
        "total_tokens": total,
        "tokens_per_step": tps,
        "tuning_seed": cfg.tuning_seed,
        "seeds": cfg.seeds,
        "multipliers_tried": sorted({m for r in cfg.recipes for m in r.lr_multipliers}),
        "tuning": tuning,
        "tuned": tuned,
        "domains": domains,
        "summary": summary,
        "curves": {n: {str(s): c for s, c in by.items()} for n, by in curves.items()},
        "tokens_to_reach": reach,
    }
    write_json(out / "results.json", result)
    text = format_tables(result)
    write_text(out / "results.md", text)
    plot_recipes(result, out / "recipes.png")
    print(text)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'recipes.png'}")
    return result
