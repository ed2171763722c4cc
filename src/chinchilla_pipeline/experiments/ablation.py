"""``chinchilla ablate``: does the order of the curriculum's phases matter, measured over seeds.

From one base curriculum (``config/demo/curriculum_gpt2.json``: phase a = wikipedia + books,
then phase b = c4 + forums, half the budget each) it generates one config per variant
that differs only in the phase structure:

- ``as_base``: the base's order (the seed's: high quality first, diversity second);
- ``reversed``: the phases in reverse order (high quality last, during the learning-rate
  decay: the order MiniCPM, OLMo 2 and Feng et al. 2024 report as better);
- ``mixed``: one phase holding every source at its overall share of the base
  (share of its phase x weight within the phase), i.e. no curriculum.

Model, seed, total tokens, batch, optimiser and schedule are the same for every variant,
so each source gets the same number of tokens in every variant (within a step's rounding)
and only their order differs. Each (variant, seed) is an ordinary run of ``run_pretrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from ..atomic import write_json, write_text
from ..data.config import NAME_PATTERN
from ..model.config import load_model_config
from ..plan import DEFAULT_TOKENS_PER_PARAM, tokens_for_params
from ..schema import StrictModel, load_config, read_json
from ..train.config import CurriculumConfig, ScheduleConfig
from .runs import (
    dataset_train_tokens,
    dataset_vocab_size,
    final_validation,
    overall_proportions,
    summarize,
    total_steps,
    train_or_skip,
    write_family_model,
    write_run_config,
)

Order = Literal["as_base", "reversed", "mixed"]


class VariantConfig(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)  # labels the runs (<name>_seed<seed>) and the table's rows
    order: Order


class AblationConfig(StrictModel):
    """``config/demo/ablation*.json``."""

    base: str = Field(min_length=1)  # curriculum config: phases, batch, optimiser, schedule and eval are taken from it
    # The family member trained (``model.family.family_config``): width 32 = 2 layers, 2 heads,
    # 160,640 parameters at vocabulary 4,096 and context 128.
    width: PositiveInt = 32
    block_size: PositiveInt = 128
    tokens_per_param: PositiveFloat = (
        DEFAULT_TOKENS_PER_PARAM  # D = 20 N, Chinchilla's ratio, the same D for every variant
    )
    seeds: list[int] = Field(min_length=1)
    variants: list[VariantConfig] = Field(min_length=2)
    schedule: Optional[ScheduleConfig] = None  # replaces the base's schedule for every variant (e.g. wsd)

    @model_validator(mode="after")
    def _unique(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {self.seeds}")
        return self


def variant_phases(phases: Sequence[dict[str, Any]], order: Order) -> list[dict[str, Any]]:
    """The phase list of a variant, from the base's phases (dicts as in the config file)."""
    if order == "as_base":
        return [dict(p) for p in phases]
    if order == "reversed":
        return [dict(p) for p in reversed(phases)]
    paths = {s["name"]: s["path"] for p in phases for s in p["sources"]}
    return [
        {
            "name": "mixed",
            "share": 1.0,
            "sources": [{"name": n, "path": paths[n], "weight": w} for n, w in overall_proportions(phases).items()],
        }
    ]


def run_configs(
    cfg: AblationConfig, base: dict[str, Any], model_path: str, num_params: int, seeds: Sequence[int]
) -> list[tuple[str, int, dict[str, Any]]]:
    """(variant, seed, curriculum config data) for every run, seed-major (all variants of a seed together)."""
    shared = {
        k: v
        for k, v in base.items()
        if not k.startswith("_") and k not in ("name", "model", "seed", "total_tokens", "tokens_per_param", "phases")
    }
    if cfg.schedule is not None:
        shared["schedule"] = cfg.schedule.model_dump()
    total = tokens_for_params(num_params, cfg.tokens_per_param)
    out = []
    for seed in seeds:
        for v in cfg.variants:
            out.append(
                (
                    v.name,
                    seed,
                    {
                        **shared,
                        "name": f"{v.name}_seed{seed}",
                        "model": model_path,
                        "seed": seed,
                        "total_tokens": total,
                        "phases": variant_phases(base["phases"], v.order),
                    },
                )
            )
    return out


def aggregate(finals: dict[str, dict[int, dict[str, float]]]) -> dict[str, Any]:
    """Per variant: each domain's and the average's mean/std/min/max over seeds, and the average's
    difference from the first variant, paired by seed (same seed = same initial weights)."""

    def average(by_seed: dict[int, dict[str, float]]) -> dict[int, float]:
        return {s: sum(losses.values()) / len(losses) for s, losses in by_seed.items()}

    first_avg = average(next(iter(finals.values())))
    out: dict[str, Any] = {}
    for variant, by_seed in finals.items():
        domains = list(next(iter(by_seed.values())))
        avg = average(by_seed)
        out[variant] = {
            "domains": {d: summarize([by_seed[s][d] for s in by_seed]) for d in domains},
            "average": summarize(list(avg.values())),
            "average_minus_first": summarize([avg[s] - first_avg[s] for s in avg]),
            "seeds": sorted(by_seed),
        }
    return out


def format_table(summary: dict[str, Any], first: str) -> str:
    """Markdown: one row per variant, mean ± std (min–max) of the final validation loss per domain
    (``aggregate`` of nats/token or of bits per byte: the table is the same)."""
    domains = list(next(iter(summary.values()))["domains"])

    def cell(s: dict[str, float]) -> str:
        return f"{s['mean']:.4f} ± {s['std']:.4f} ({s['min']:.4f}–{s['max']:.4f})"

    head = ["variant", "seeds", *domains, "average", f"average − {first} (paired)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in summary.items():
        diff = row["average_minus_first"]  # paired by seed: the seeds both variants ran
        lines.append(
            "| "
            + " | ".join(
                [
                    variant,
                    str(len(row["seeds"])),
                    *(cell(row["domains"][d]) for d in domains),
                    cell(row["average"]),
                    "reference" if variant == first else f"{diff['mean']:+.4f} ± {diff['std']:.4f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def run_ablation(
    config_path: str | Path,
    out_dir: str | Path = "runs/ablation",
    *,
    seeds: Sequence[int] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train every (variant, seed) not yet finished, then write ``results.json``, ``results.md``
    and ``ablation.png`` to ``out_dir``. Returns the results: the final validation loss in nats/token
    (``final_validation``, ``summary``) and in bits per byte (``final_validation_bpb``, ``summary_bpb``)."""
    from .plots import plot_ablation

    cfg = load_config(AblationConfig, config_path)
    seeds = list(seeds) if seeds else cfg.seeds
    base_cfg = load_config(CurriculumConfig, cfg.base)  # validates the base before anything runs
    base = read_json(cfg.base)
    out = Path(out_dir)
    first_source = base_cfg.phases[0].sources[0]
    model_path = write_family_model(out, cfg.width, dataset_vocab_size(first_source.path), cfg.block_size)
    model = load_model_config(model_path)
    runs = run_configs(cfg, base, str(model_path), model.num_params(), seeds)
    print(
        f"ablation: {len(runs)} runs ({len(cfg.variants)} variants x {len(seeds)} seeds), model width "
        f"{cfg.width}: {model.num_params():,} parameters, {runs[0][2]['total_tokens']:,} tokens each",
        flush=True,
    )
    # variant -> seed -> domain -> final validation loss (nats/token), and the same in bits per byte
    finals: dict[str, dict[int, dict[str, float]]] = {v.name: {} for v in cfg.variants}
    finals_bpb: dict[str, dict[int, dict[str, float]]] = {v.name: {} for v in cfg.variants}
    seconds: dict[str, float] = {}
    for variant, seed, data in runs:
        path = write_run_config(out, data)
        took = train_or_skip(path, model, out, device)
        if took is not None:
            seconds[data["name"]] = took
        final = final_validation(out / data["name"], total_steps(path, model))
        finals[variant][seed] = {d: final["loss"][d] for d in base_cfg.domains()}  # the curriculum's order
        finals_bpb[variant][seed] = {d: final["bpb"][d] for d in base_cfg.domains()}
    summary, summary_bpb = aggregate(finals), aggregate(finals_bpb)
    first = cfg.variants[0].name
    total = runs[0][2]["total_tokens"]
    # Tokens each source gets (the same in every variant) and how many passes over its training split.
    exposure = {
        n: {"tokens": share * total, "epochs": share * total / dataset_train_tokens(base_cfg.domains()[n])}
        for n, share in overall_proportions(base["phases"]).items()
    }
    result = {
        "config": str(config_path),
        "base": cfg.base,
        "model": str(model_path),
        "num_params": model.num_params(),
        "total_tokens": total,
        "source_exposure": exposure,
        "variants": {
            v.name: {"order": v.order, "phases": variant_phases(base["phases"], v.order)} for v in cfg.variants
        },
        "final_validation": {v: {str(s): losses for s, losses in by.items()} for v, by in finals.items()},
        "final_validation_bpb": {v: {str(s): bpb for s, bpb in by.items()} for v, by in finals_bpb.items()},
        "summary": summary,
        "summary_bpb": summary_bpb,
        "seconds_this_invocation": seconds,
    }
    write_json(out / "results.json", result)
    table, table_bpb = format_table(summary, first), format_table(summary_bpb, first)
    epochs = ", ".join(f"{n} {e['tokens'] / 1e6:.2f}M ({e['epochs']:.2f} epochs)" for n, e in exposure.items())
    write_text(
        out / "results.md",
        f"Final validation loss (nats/token), mean ± std (min–max) over seeds; "
        f"{model.num_params():,} parameters, {total:,} tokens per run; tokens per "
        f"source in every variant: {epochs}.\n\n{table}\n\n"
        "The same in bits per byte (summed losses / (ln 2 x UTF-8 bytes of the predicted tokens)):"
        f"\n\n{table_bpb}\n",
    )
    plot_ablation(
        summary,
        finals,
        out / "ablation.png",
        title=f"{model.num_params() / 1e3:.0f}K parameters, {result['total_tokens'] / 1e6:.1f}M tokens, "
        f"{len(seeds)} seeds",
    )
    print(table)
    print(table_bpb)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'ablation.png'}")
    return result
