"""``chinchilla ablate``: does the order of the curriculum's phases matter, measured over seeds.

From one base curriculum (``config/demo/curriculum.json``: phase a = wikipedia + books,
then phase b = c4 + forums, half the budget each) it generates one config per variant
that differs only in the phase structure:

- ``order`` ``as_base``: the base's order (the seed's: high quality first, diversity second);
  ``reversed``: the phases in reverse order (high quality last, during the learning-rate
  decay: the order MiniCPM, OLMo 2 and Feng et al. 2024 report as better);
  ``mixed``: one phase holding every source at its overall share of the base
  (share of its phase x weight within the phase), i.e. no curriculum;
- ``blend_in``: every phase after the first ramps in from the one before (``PhaseConfig.blend_in``);
- ``anneal_share``: a last phase, ``anneal``, on the first phase's sources, taking that share of
  the budget from the first phase, with the WSD decay over exactly it (``schedule.decay_phase``).

Model, seed, total tokens, batch and optimiser are the same for every variant, and so is each
source's number of tokens (within a step's rounding): only their order changes, and with an anneal
phase where the decay starts. Each (variant, seed) is an ordinary run of ``run_pretrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from ...atomic import write_json, write_text
from ...data.config import NAME_PATTERN
from ...errors import UserError
from ...model.config import Architecture, load_model_config
from ...plan import DEFAULT_TOKENS_PER_PARAM, tokens_for_params
from ...schema import StrictModel, load_config, read_json
from ...train.config import CurriculumConfig, ScheduleConfig, parse_blend
from ...train.metrics import read_metrics
from ...train.rundir import METRICS
from .recipes import tokens_to_reach
from .runs import (
    dataset_train_tokens,
    dataset_vocab_size,
    final_validation,
    mean_over_domains,
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
    blend_in: Optional[int | str] = None  # tokens or "x%" of the run: every phase after the first ramps in
    anneal_share: Optional[float] = Field(default=None, gt=0, lt=1)  # order "as_base" only

    @field_validator("blend_in", mode="before")
    @classmethod
    def _blend(cls, v):
        return parse_blend(v)

    @model_validator(mode="after")
    def _anneal_after_the_base_order(self):
        if self.anneal_share is not None and self.order != "as_base":
            raise ValueError('anneal_share anneals on the first phase\'s sources: it needs "order": "as_base"')
        return self


class AblationConfig(StrictModel):
    """``config/demo/ablation*.json``."""

    base: str = Field(min_length=1)  # curriculum config: phases, batch, optimiser, schedule and eval are taken from it
    # The family member trained (``model.family.family_config``): width 32 = 2 layers, 2 heads,
    # 160,640 parameters at vocabulary 4,096 and context 128.
    width: PositiveInt = 32
    architecture: Architecture = "gpt2"  # the base's recipe: "nanochat" with the nanochat recipe's base
    block_size: PositiveInt = 128
    tokens_per_param: PositiveFloat = (
        DEFAULT_TOKENS_PER_PARAM  # D = 20 N, Chinchilla's ratio, the same D for every variant
    )
    seeds: list[int] = Field(min_length=1)
    variants: list[VariantConfig] = Field(min_length=2)
    schedule: Optional[ScheduleConfig] = None  # replaces the base's schedule for every variant (e.g. wsd)
    eval_interval_steps: PositiveInt = 40  # validation this often: the curve the tokens-to-reach figure reads

    @model_validator(mode="after")
    def _unique(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {self.seeds}")
        return self


def variant_phases(phases: Sequence[dict[str, Any]], variant: VariantConfig) -> list[dict[str, Any]]:
    """The phase list of a variant, from the base's phases (dicts as in the config file)."""
    if variant.order == "mixed":
        paths = {s["name"]: s["path"] for p in phases for s in p["sources"]}
        mix = overall_proportions(phases)
        return [
            {
                "name": "mixed",
                "share": 1.0,
                "sources": [{"name": n, "path": paths[n], "weight": w} for n, w in mix.items()],
            }
        ]
    out = [dict(p) for p in (phases if variant.order == "as_base" else reversed(phases))]
    if variant.anneal_share is not None:
        first = out[0]
        if not first["share"] > variant.anneal_share:
            raise UserError(
                f"anneal_share {variant.anneal_share} takes all of phase '{first['name']}' ({first['share']})",
                field=f"variants.{variant.name}.anneal_share",
            )
        out[0] = {**first, "share": first["share"] - variant.anneal_share}
        out.append({"name": "anneal", "share": variant.anneal_share, "sources": [dict(s) for s in first["sources"]]})
    if variant.blend_in is not None:
        out = [out[0], *({**p, "blend_in": variant.blend_in} for p in out[1:])]
    return out


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
    shared["eval"] = {**shared.get("eval", {}), "interval_steps": cfg.eval_interval_steps}
    total = tokens_for_params(num_params, cfg.tokens_per_param)
    out = []
    for seed in seeds:
        for v in cfg.variants:
            schedule = dict(shared.get("schedule", {}))
            if v.anneal_share is not None:
                if schedule.get("kind") != "wsd":
                    raise UserError(
                        "an anneal phase needs the WSD schedule (its decay runs over the phase); the base's is "
                        f"{schedule.get('kind', 'cosine')!r}",
                        field=f"variants.{v.name}.anneal_share",
                    )
                schedule["decay_phase"] = "anneal"
            out.append(
                (
                    v.name,
                    seed,
                    {
                        **shared,
                        "schedule": schedule,
                        "name": f"{v.name}_seed{seed}",
                        "model": model_path,
                        "seed": seed,
                        "total_tokens": total,
                        "phases": variant_phases(base["phases"], v),
                    },
                )
            )
    return out


def reach(curves: dict[str, dict[int, list[tuple[int, float]]]], targets: dict[int, float], tokens_per_step: int):
    """Per variant: the tokens each seed's run needed to reach ``targets[seed]`` (the first variant's final
    mean bpb on that seed; linear between evaluations), their mean, and how many seeds never reached it."""
    out = {}
    for variant, by_seed in curves.items():
        got = {s: tokens_to_reach(curve, targets[s], tokens_per_step) for s, curve in by_seed.items()}
        reached = [t for t in got.values() if t is not None]
        out[variant] = {
            "by_seed": {str(s): t for s, t in got.items()},
            "mean": sum(reached) / len(reached) if len(reached) == len(got) else None,
            "not_reached": len(got) - len(reached),
        }
    return out


def aggregate(finals: dict[str, dict[int, dict[str, float]]]) -> dict[str, Any]:
    """Per variant: each domain's and the average's mean/std/min/max over seeds, and the average's
    difference from the first variant, paired by seed (same seed = same initial weights)."""

    def average(by_seed: dict[int, dict[str, float]]) -> dict[int, float]:
        return {s: mean_over_domains(losses) for s, losses in by_seed.items()}

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


def format_reach(to_reach: dict[str, Any], reference: dict[int, float], first: str, total: int) -> str:
    """Markdown: the tokens each variant needed to reach the first variant's final mean bpb, per seed."""
    seeds = sorted(reference)
    lines = [
        f"Tokens to reach `{first}`'s final mean bpb (its seed's: "
        + ", ".join(f"{s}: {reference[s]:.4f}" for s in seeds)
        + f"), linear between evaluations, of {total:,}:",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | share of the run |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for variant, row in to_reach.items():
        cells = [
            f"{row['by_seed'][str(s)]:,.0f}" if row["by_seed"][str(s)] is not None else "not reached" for s in seeds
        ]
        mean = row["mean"]
        tail = [f"{mean:,.0f}", f"{mean / total:.0%}"] if mean is not None else ["—", "—"]
        lines.append(f"| {variant} | " + " | ".join(cells + tail) + " |")
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
    model_path = write_family_model(
        out, cfg.width, dataset_vocab_size(first_source.path), cfg.block_size, cfg.architecture
    )
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
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {v.name: {} for v in cfg.variants}  # (step, mean bpb)
    seconds: dict[str, float] = {}
    for variant, seed, data in runs:
        path = write_run_config(out, data)
        took = train_or_skip(path, model, out, device)
        if took is not None:
            seconds[data["name"]] = took
        final = final_validation(out / data["name"], total_steps(path, model))
        finals[variant][seed] = {d: final["loss"][d] for d in base_cfg.domains()}  # the curriculum's order
        finals_bpb[variant][seed] = {d: final["bpb"][d] for d in base_cfg.domains()}
        records = read_metrics(out / data["name"] / METRICS, "validation")
        curves[variant][seed] = [(step, records[step]["bpb_mean"]) for step in sorted(records)]
    summary, summary_bpb = aggregate(finals), aggregate(finals_bpb)
    first = cfg.variants[0].name
    total = runs[0][2]["total_tokens"]
    tokens_per_step = base_cfg.batch.global_batch_tokens
    reference = {s: mean_over_domains(b) for s, b in finals_bpb[first].items()}
    to_reach = reach(curves, reference, tokens_per_step)
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
        "variants": {v.name: {**v.model_dump(), "phases": variant_phases(base["phases"], v)} for v in cfg.variants},
        "final_validation": {v: {str(s): losses for s, losses in by.items()} for v, by in finals.items()},
        "final_validation_bpb": {v: {str(s): bpb for s, bpb in by.items()} for v, by in finals_bpb.items()},
        "summary": summary,
        "summary_bpb": summary_bpb,
        "tokens_to_reach_first": to_reach,
        "seconds_this_invocation": seconds,
    }
    write_json(out / "results.json", result)
    table, table_bpb = format_table(summary, first), format_table(summary_bpb, first)
    epochs = ", ".join(f"{n} {e['tokens'] / 1e6:.2f}M ({e['epochs']:.2f} epochs)" for n, e in exposure.items())
    reach_md = format_reach(to_reach, reference, first, total)
    write_text(
        out / "results.md",
        "Final validation bits per byte (summed losses / (ln 2 x UTF-8 bytes of the predicted tokens)), mean ± "
        f"std (min–max) over seeds; {model.num_params():,} parameters, {total:,} tokens per run; tokens per "
        f"source in every variant: {epochs}.\n\n{table_bpb}\n\n{reach_md}\n\n"
        f"The same in nats/token:\n\n{table}\n",
    )
    plot_ablation(
        summary_bpb,
        finals_bpb,
        out / "ablation.png",
        title=f"{model.num_params() / 1e3:.0f}K parameters, {result['total_tokens'] / 1e6:.1f}M tokens, "
        f"{len(seeds)} seeds",
    )
    print(table_bpb)
    print(reach_md)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'ablation.png'}")
    return result
