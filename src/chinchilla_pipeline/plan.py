"""Chinchilla planner: tokens, compute, steps, phases, wall-clock and predicted loss for a model size.

Conventions (sources in docs/references.md):

- N counts every parameter, embeddings included, as Hoffmann et al. 2022 (Chinchilla) do;
  the non-embedding count (Kaplan et al. 2020) is reported beside it, never used in C.
- D = tokens_per_param x N; the seed's rule is 20 (124M x 20 = 2.48B tokens).
- C = 6 N D training FLOPs (forward 2 N D + backward 4 N D).
- Loss L(N, D) = E + A / N^alpha + B / D^beta, with two published fits of that form.
- The compute-optimal split of a budget C under a fit is Hoffmann's eq. 4 closed form:
  N_opt = G (C/6)^a, D_opt = (C/6)^b / G, G = (alpha A / (beta B))^(1/(alpha+beta)),
  a = beta/(alpha+beta), b = alpha/(alpha+beta).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .counts import human, human_seconds
from .errors import UserError
from .model.config import load_model_config
from .train.config import DEFAULT_GLOBAL_BATCH_TOKENS, DEFAULT_TOKENS_PER_PARAM, check_phase_shares, load_curriculum
from .train.schedule import make_schedule, phase_boundaries

# The seed's curriculum: phase A 1.5B tokens, phase B 1.5B tokens, i.e. half each.
DEFAULT_PHASES: tuple[tuple[str, float], ...] = (("A", 0.5), ("B", 0.5))
FLOPS_PER_PARAM_TOKEN = 6  # C = 6 N D
# Hoffmann et al. 2022 (abstract) fitted "over 400 language models ranging from 70 million to over
# 16 billion parameters on 5 to 500 billion tokens"; outside that box the fits extrapolate.
FIT_RANGE_PARAMS = (70e6, 16e9)
FIT_RANGE_TOKENS = (5e9, 500e9)


@dataclass(frozen=True)
class ScalingFit:
    """A parametric loss fit L(N, D) = E + A / N^alpha + B / D^beta (N parameters, D tokens)."""

    name: str
    citation: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, num_params: float, num_tokens: float) -> float:
        """Predicted final training loss (nats per token on the fit's own data, MassiveText)."""
        return self.E + self.A / num_params**self.alpha + self.B / num_tokens**self.beta

    def compute_optimal(self, flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising L under 6 N D = ``flops`` (Hoffmann et al. 2022, eq. 4)."""
        if flops <= 0:
            raise ValueError(f"compute budget must be > 0 FLOPs, got {flops}")
        s = self.alpha + self.beta
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        n_opt = g * (flops / FLOPS_PER_PARAM_TOKEN) ** (self.beta / s)
        return n_opt, flops / (FLOPS_PER_PARAM_TOKEN * n_opt)


# Constants as published (Hoffmann et al. 2022; Besiroglu et al. 2024).
HOFFMANN_2022 = ScalingFit(
    name="hoffmann2022",
    citation="Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, approach 3",
    E=1.69,
    A=406.4,
    B=410.7,
    alpha=0.34,
    beta=0.28,
)
BESIROGLU_2024 = ScalingFit(
    name="besiroglu2024",
    citation="Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt (arXiv 2404.10102)",
    E=1.82,
    A=482.01,
    B=2085.43,
    alpha=0.3478,
    beta=0.3658,
)
FITS: tuple[ScalingFit, ...] = (HOFFMANN_2022, BESIROGLU_2024)


def tokens_for_params(num_params: float, tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM) -> int:
    """D = tokens_per_param x N, rounded to a whole token."""
    return int(round(tokens_per_param * num_params))


def training_flops(num_params: float, num_tokens: float) -> float:
    """C = 6 N D FLOPs."""
    return FLOPS_PER_PARAM_TOKEN * num_params * num_tokens


def params_for_compute(flops: float, tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM) -> float:
    """N such that 6 N (r N) = C at a fixed ratio r = D/N: N = sqrt(C / (6 r))."""
    return math.sqrt(flops / (FLOPS_PER_PARAM_TOKEN * tokens_per_param))


def params_for_time(
    tokens_per_second: float, seconds: float, tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM
) -> tuple[float, int]:
    """(N, D) that a time budget allows: D = throughput x seconds, N = D / r.

    Throughput itself depends on N (smaller models run faster); callers measure it at
    a size near the answer and iterate if the answer moves far from that size.
    """
    if tokens_per_second <= 0 or seconds <= 0:
        raise ValueError("tokens_per_second and seconds must be > 0")
    num_tokens = int(tokens_per_second * seconds)
    return num_tokens / tokens_per_param, num_tokens


def chinchilla_plan(
    num_params: float,
    *,
    num_non_embedding_params: Optional[float] = None,
    tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM,
    num_tokens: Optional[int] = None,
    tokens_per_step: int = DEFAULT_GLOBAL_BATCH_TOKENS,
    phases: Sequence[tuple[str, float]] = DEFAULT_PHASES,
    compute_budget: Optional[float] = None,
    tokens_per_second: Optional[float] = None,
    fits: Sequence[ScalingFit] = FITS,
) -> dict[str, Any]:
    """Everything the planner reports, as a JSON-ready dict.

    D is ``num_tokens`` when given (a curriculum's own budget), else ``tokens_per_param`` x N.
    Phases are cut as the trainer cuts them (``train.schedule.phase_boundaries``). ``compute_budget``
    (FLOPs) defaults to 6 N D of this plan; the compute-optimal N and D under each fit are computed for it.
    ``tokens_per_second`` adds the wall-clock time.
    """
    if num_params <= 0:
        raise UserError(f"must be > 0, got {num_params:g}", field="num_params")
    if tokens_per_param <= 0:
        raise UserError(f"must be > 0, got {tokens_per_param:g}", field="tokens_per_param")
    if tokens_per_step <= 0:
        raise UserError(f"must be > 0, got {tokens_per_step}", field="--global_batch_tokens")
    try:
        check_phase_shares([n for n, _ in phases], [s for _, s in phases])
    except ValueError as err:
        raise UserError(str(err), field="--phase") from None
    if num_tokens is None:
        num_tokens = tokens_for_params(num_params, tokens_per_param)
    else:
        tokens_per_param = num_tokens / num_params
    flops = training_flops(num_params, num_tokens)
    bounds = phase_boundaries([s for _, s in phases], num_tokens, tokens_per_step)
    phase_rows = [
        {
            "name": name,
            "share": share,
            "num_tokens": int(round(share * num_tokens)),
            "num_steps": end - first,
            "first_step": first,
        }
        for (name, share), (first, end) in zip(phases, bounds)
    ]
    num_steps = bounds[-1][1]
    if any(ph["num_steps"] <= 0 for ph in phase_rows):
        raise UserError(
            f"a phase gets no step: {num_tokens:,} tokens in steps of {tokens_per_step:,}",
            field="--global_batch_tokens",
        )
    budget = flops if compute_budget is None else compute_budget
    if budget <= 0:
        raise UserError(f"must be > 0 FLOPs, got {budget:g}", field="compute_budget")

    fit_rows = {}
    for fit in fits:
        n_opt, d_opt = fit.compute_optimal(budget)
        fit_rows[fit.name] = {
            "constants": {k: v for k, v in asdict(fit).items() if k not in ("name", "citation")},
            "citation": fit.citation,
            "loss_at_plan": fit.loss(num_params, num_tokens),
            "compute_optimal": {
                "compute_flops": budget,
                "num_params": n_opt,
                "num_tokens": d_opt,
                "tokens_per_param": d_opt / n_opt,
                "loss": fit.loss(n_opt, d_opt),
            },
        }

    plan: dict[str, Any] = {
        "num_params": int(num_params),
        "num_non_embedding_params": None if num_non_embedding_params is None else int(num_non_embedding_params),
        "tokens_per_param": tokens_per_param,
        "num_tokens": num_tokens,
        "compute_flops": flops,
        "tokens_per_step": tokens_per_step,
        "num_steps": num_steps,
        "num_tokens_trained": num_steps * tokens_per_step,  # whole steps: within half a step of D
        "phases": phase_rows,
        "compute_budget_flops": budget,
        "fits": fit_rows,
        # False: N or D lies outside the range the fits were made on, and their numbers extrapolate.
        "within_fit_range": (
            FIT_RANGE_PARAMS[0] <= num_params <= FIT_RANGE_PARAMS[1]
            and FIT_RANGE_TOKENS[0] <= num_tokens <= FIT_RANGE_TOKENS[1]
        ),
        "tokens_per_second": tokens_per_second,
        "wall_clock_seconds": None,
    }
    if tokens_per_second is not None:
        if tokens_per_second <= 0:
            raise UserError(f"must be > 0, got {tokens_per_second:g}", field="tokens_per_second")
        plan["wall_clock_seconds"] = plan["num_tokens_trained"] / tokens_per_second
    return plan


# ---------------------------------------------------------------- formatting


def format_plan(plan: dict[str, Any]) -> str:
    """A readable table of a plan made by ``chinchilla_plan``."""
    rows = [
        ("N (all parameters, Chinchilla)", f"{plan['num_params']:,} ({human(plan['num_params'])})"),
        (
            "N non-embedding (Kaplan)",
            "n/a"
            if plan["num_non_embedding_params"] is None
            else f"{plan['num_non_embedding_params']:,} ({human(plan['num_non_embedding_params'])})",
        ),
        ("tokens per parameter", f"{plan['tokens_per_param']:g}"),
        ("D tokens", f"{plan['num_tokens']:,} ({human(plan['num_tokens'])})"),
        ("C = 6 N D", f"{plan['compute_flops']:.3e} FLOPs"),
        ("global batch", f"{plan['tokens_per_step']:,} tokens"),
        ("steps", f"{plan['num_steps']:,} ({plan['num_tokens_trained']:,} tokens in whole steps)"),
    ]
    for ph in plan["phases"]:
        rows.append(
            (
                f"phase {ph['name']} ({ph['share']:.0%})",
                f"{human(ph['num_tokens'])} tokens, {ph['num_steps']:,} steps from step {ph['first_step']:,}",
            )
        )
    if plan["wall_clock_seconds"] is not None:
        rows.append(
            (
                "wall-clock",
                f"{human_seconds(plan['wall_clock_seconds'])} at {human(plan['tokens_per_second'])} tokens/s",
            )
        )
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"compute-optimal split of C = {plan['compute_budget_flops']:.3e} FLOPs, and predicted loss:")
    header = f"  {'fit':<14} {'N_opt':>9} {'D_opt':>9} {'D/N':>6} {'L(N_opt,D_opt)':>15} {'L(plan)':>8}"
    lines.append(header)
    for name, f in plan["fits"].items():
        co = f["compute_optimal"]
        lines.append(
            f"  {name:<14} {human(co['num_params']):>9} {human(co['num_tokens']):>9} "
            f"{co['tokens_per_param']:>6.1f} {co['loss']:>15.4f} {f['loss_at_plan']:>8.4f}"
        )
    if not plan["within_fit_range"]:
        lines.append(
            f"  note: the fits come from {human(FIT_RANGE_PARAMS[0])}-{human(FIT_RANGE_PARAMS[1])} "
            f"parameters and {human(FIT_RANGE_TOKENS[0])}-{human(FIT_RANGE_TOKENS[1])} tokens; "
            "this plan is outside, so their N_opt, D_opt and loss are extrapolations"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def resolve_plan(
    *,
    curriculum: str | Path | None = None,
    model_config: str | Path | None = None,
    num_params: float | None = None,
    non_embedding_params: float | None = None,
    tokens_per_param: float | None = None,
    global_batch_tokens: float | None = None,
    phases: Sequence[tuple[str, float]] | None = None,
    compute_budget: float | None = None,
    tokens_per_second: float | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """``chinchilla plan``: N from a curriculum, a model config, a count or a time budget; then the plan.

    A curriculum's budget, batch and phases come from its ``train.schedule.Schedule``, the one
    ``chinchilla pretrain`` trains by; explicit arguments override them.
    """
    given: dict[str, Any] = {}
    if curriculum is not None:
        cfg, model = load_curriculum(curriculum)
        run = make_schedule(cfg, model, path=curriculum)
        given = {
            "num_params": model.num_params(),
            "num_non_embedding_params": model.num_non_embedding_params(),
            "num_tokens": run.num_tokens,
            "tokens_per_step": run.tokens_per_step,
            "phases": [(ph.name, ph.share) for ph in cfg.phases],
        }
        source: dict[str, Any] = {"curriculum": str(curriculum)}
    elif model_config is not None:
        model = load_model_config(model_config)
        given = {"num_params": model.num_params(), "num_non_embedding_params": model.num_non_embedding_params()}
        source = {"model_config": str(model_config)}
    elif num_params is not None:
        given = {"num_params": num_params, "num_non_embedding_params": non_embedding_params}
        source = {"num_params": num_params}
    if tokens_per_param is not None:
        given.pop("num_tokens", None)  # an explicit ratio replaces the curriculum's budget
    ratio = tokens_per_param or DEFAULT_TOKENS_PER_PARAM
    if "num_params" not in given:
        if tokens_per_second is None or budget_seconds is None:
            raise UserError(
                "give --curriculum, --model_config, --num_params, or --tokens_per_second with --budget_seconds",
                field="num_params",
            )
        given["num_params"], _ = params_for_time(tokens_per_second, budget_seconds, ratio)
        source = {"budget_seconds": budget_seconds, "tokens_per_second": tokens_per_second}
    plan = chinchilla_plan(
        given["num_params"],
        num_non_embedding_params=given.get("num_non_embedding_params"),
        tokens_per_param=ratio,
        num_tokens=given.get("num_tokens"),
        tokens_per_step=int(global_batch_tokens or given.get("tokens_per_step", DEFAULT_GLOBAL_BATCH_TOKENS)),
        phases=phases or given.get("phases", DEFAULT_PHASES),
        compute_budget=compute_budget,
        tokens_per_second=tokens_per_second,
    )
    plan["input"] = source
    return plan
