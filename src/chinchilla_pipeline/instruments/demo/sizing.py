"""Size a scaled-down model the Chinchilla way: 20 tokens per parameter at the size a time allows.

The models form one family per architecture (depth and heads growing with the width),
so that a parameter count picks one model. The throughput this machine reaches is
measured, not assumed: a short training loop at a probe size gives FLOP/s, the
planner turns time x FLOP/s into N and D = 20 N, and the probe is repeated at the
answer's size until the two agree (small models use the cores less well).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ...atomic import write_json
from ...model.config import ModelConfig
from ...model.family import family_config, model_for_params
from ...plan import DEFAULT_TOKENS_PER_PARAM, params_for_compute, tokens_for_params
from ...train.config import OptimizerConfig
from ..bench.train import DEFAULT_OPTIMIZER, bare_loop

log = logging.getLogger(__name__)


def measure_flops_rate(
    cfg: ModelConfig, device: torch.device, micro: int, steps: int = 6, optimizer: OptimizerConfig = DEFAULT_OPTIMIZER
) -> float:
    """Training FLOP/s this machine reaches on ``cfg`` (bare forward + backward + ``optimizer`` loop)."""
    measured = bare_loop(
        cfg,
        device,
        micro=micro,
        accum=1,
        steps=steps,
        warmup=2,
        dtype="auto",
        compile_="off",
        seed=0,
        optimizer=optimizer,
    )
    return measured["tokens_per_s"] * cfg.flops_per_token()


def size_for_time(
    seconds: float,
    vocab_size: int,
    block_size: int,
    micro: int,
    tokens_per_param: float = DEFAULT_TOKENS_PER_PARAM,
    device: str = "cpu",
    max_probes: int = 3,
    architecture: str = "gpt2",
    optimizer: OptimizerConfig = DEFAULT_OPTIMIZER,
) -> dict[str, Any]:
    """The model and token budget that ``seconds`` of training allow at ``tokens_per_param``.

    Compute C = FLOP/s x seconds (FLOP/s measured), then N from C = 6 N D with
    D = tokens_per_param x N (the planner's ``params_for_compute``); the probe moves to
    the chosen size until the choice stops changing.
    """
    dev = torch.device(device)
    cfg = family_config(64, vocab_size, block_size, architecture=architecture)
    probes = []
    for _ in range(max_probes):
        rate = measure_flops_rate(cfg, dev, micro, optimizer=optimizer)
        # 6ND counts only parameter FLOPs; the model's own FLOPs per token add attention, so the
        # budget in parameter FLOPs is the measured rate scaled by 6N / flops_per_token.
        param_share = 6 * cfg.num_params() / cfg.flops_per_token()
        n = params_for_compute(rate * param_share * seconds, tokens_per_param)
        chosen = model_for_params(n, vocab_size, block_size, architecture)
        probes.append(
            {"probe_width": cfg.n_embd, "flops_per_s": rate, "target_params": n, "chosen_width": chosen.n_embd}
        )
        log.info("probe width %d: %.2f GFLOP/s -> N = %.0f -> width %d", cfg.n_embd, rate / 1e9, n, chosen.n_embd)
        if chosen.n_embd == cfg.n_embd:
            break
        cfg = chosen
    num_params = chosen.num_params()
    return {
        "model": chosen,
        "num_params": num_params,
        "num_tokens": tokens_for_params(num_params, tokens_per_param),
        "seconds": seconds,
        "tokens_per_param": tokens_per_param,
        "probes": probes,
        "expected_tokens_per_s": probes[-1]["flops_per_s"] / chosen.flops_per_token(),
    }


def write_demo_model(
    out_path: str | Path,
    seconds: float,
    vocab_size: int,
    block_size: int,
    micro: int,
    device: str = "cpu",
    architecture: str = "gpt2",
    optimizer: OptimizerConfig = DEFAULT_OPTIMIZER,
) -> dict[str, Any]:
    """Measure, size, and write the model config (and the sizing record beside it) of ``architecture``,
    timed with ``optimizer`` (the recipe's: Muon's step costs more than AdamW's)."""
    sized = size_for_time(
        seconds, vocab_size, block_size, micro, device=device, architecture=architecture, optimizer=optimizer
    )
    model: ModelConfig = sized["model"]
    data = model.model_dump()
    data["name"] = f"demo_{model.num_params() // 1000}k"
    data["_comment"] = (
        f"Written by `chinchilla demo-size`: {seconds:.0f} s of training at the measured "
        f"{sized['probes'][-1]['flops_per_s'] / 1e9:.2f} GFLOP/s allow N = {sized['num_params']:,} "
        f"parameters and D = {sized['tokens_per_param']:g} N = {sized['num_tokens']:,} tokens."
    )
    write_json(out_path, data)
    record = {k: v for k, v in sized.items() if k != "model"}
    record["model_config"] = str(out_path)
    write_json(Path(out_path).with_name("sizing.json"), record)
    return sized


def format_sizing(out_path: str | Path, sized: dict[str, Any]) -> str:
    """One line: the model ``write_demo_model`` chose, its N and D, and the throughput measured."""
    m = sized["model"]
    return (
        f"{out_path}: width {m.n_embd}, {m.n_layer} layers, {m.n_head} heads, context {m.block_size}, "
        f"vocabulary {m.vocab_size:,}: N = {sized['num_params']:,} parameters, D = {sized['num_tokens']:,} "
        f"tokens ({sized['tokens_per_param']:g} N) at ~{sized['expected_tokens_per_s']:,.0f} tokens/s measured"
    )
