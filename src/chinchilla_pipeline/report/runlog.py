"""A run's ``metrics.jsonl`` as series against tokens trained: what the report plots and tabulates.

The trainer records everything the report needs (docs/training.md, section "Metrics"):
``start`` (parameters, tokens per step, phase step ranges), ``phase_start``
(phase names), ``train`` (loss, lr, and at each log interval tokens/s,
tokens seen per source and the mixture's target weight of each),
``validation`` (loss per domain in nats/token and bits per byte), ``epoch`` (a
source ran out and repeats), ``transition`` (per-domain forgetting and gain, in
both units) and, when
the curriculum asks for it, ``hellaswag`` (acc_norm and acc at each evaluation). After
a resume, the last record per (type, step) wins, as ``read_metrics`` does.

Tokens trained after optimiser step ``s`` (0-based, as ``train`` records) are
``(s + 1) x tokens_per_step``; a ``validation`` or ``transition`` record at step
``S`` is after ``S`` steps, i.e. ``S x tokens_per_step`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..train.metrics import read_all_metrics
from ..train.rundir import METRICS


@dataclass
class Phase:
    name: str
    first_step: int
    end_step: int  # exclusive
    tokens_per_source: dict[str, int] = field(default_factory=dict)  # trained in this phase (measured)


@dataclass
class RunLog:
    name: str
    num_params: int
    tokens_per_step: int
    total_steps: int  # the run's own plan: total_steps x tokens_per_step = its budget
    phases: list[Phase]  # the phases that started, in order
    steps_done: int
    train_tokens: list[int]  # x of the train series: tokens trained after each step
    train_loss: list[float]  # nats/token, mean over the global batch
    lr: list[float]
    rate_tokens: list[int]  # x of the log-interval series
    tokens_per_s: list[float]
    tokens_seen: list[dict[str, int]]  # per source, at each log interval
    target_weights: list[dict[str, float]]  # the mixture's weight per source there; {} in older records
    val_tokens: list[int]
    val_loss: list[dict[str, float]]  # per domain, nats/token
    val_bpb: list[dict[str, float]]  # per domain, bits/byte; {} for a record written before bits per byte
    transitions: list[dict[str, Any]]
    epochs: list[dict[str, Any]] = field(default_factory=list)  # a source exhausted and reshuffled
    hellaswag: list[dict[str, Any]] = field(default_factory=list)  # acc_norm, acc, ... at each evaluation

    @property
    def tokens_trained(self) -> int:
        return self.steps_done * self.tokens_per_step

    @property
    def domains(self) -> list[str]:
        """Every source or validated domain: in phase order, the most-trained first within a phase."""
        order: list[str] = []
        for ph in self.phases:
            order += sorted((k for k in ph.tokens_per_source if k not in order), key=lambda k: -ph.tokens_per_source[k])
        others = {k for seen in self.tokens_seen for k in seen} | {k for v in self.val_loss for k in v}
        return order + sorted(others - set(order))

    def boundaries(self) -> list[tuple[str, int]]:
        """(phase name, tokens at its start) for every phase after the first."""
        return [(p.name, p.first_step * self.tokens_per_step) for p in self.phases[1:]]


def read_run(run_dir: str | Path) -> RunLog:
    """Parse ``<run_dir>/metrics.jsonl``; a missing file or a run without a training step is a ``UserError``."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.is_file():
        raise UserError(
            "no metrics.jsonl: not a run directory of `chinchilla pretrain`, or the run has not started", path=run_dir
        )
    recs = read_all_metrics(path)
    train = recs.get("train", {})
    if not recs.get("start") or not train:
        raise UserError("has no training step yet: nothing to report", path=path)
    start = recs["start"][max(recs["start"])]  # the latest invocation's plan
    tps = int(start["tokens_per_step"])
    steps = sorted(train)
    logged = [s for s in steps if "tokens_per_s" in train[s]]
    if not logged:
        raise UserError(
            "has no logged interval yet (the trainer logs every `log_interval_steps` steps): nothing to report",
            path=path,
        )
    names = {s: r["phase"] for s, r in recs.get("phase_start", {}).items()}
    phases = [Phase(names[a], a, b) for a, b in start["phase_steps"] if a in names]
    for ph in phases:
        inside = [s for s in logged if ph.first_step <= s < ph.end_step]
        if inside:
            before = [s for s in logged if s < ph.first_step]
            prev = train[before[-1]]["tokens_seen"] if before else {}
            last = train[inside[-1]]["tokens_seen"]
            ph.tokens_per_source = {k: v - prev.get(k, 0) for k, v in last.items() if v - prev.get(k, 0) > 0}
    val = recs.get("validation", {})
    return RunLog(
        name=run_dir.resolve().name,
        num_params=int(start["num_params"]),
        tokens_per_step=tps,
        total_steps=int(start["total_steps"]),
        phases=phases,
        steps_done=steps[-1] + 1,
        train_tokens=[(s + 1) * tps for s in steps],
        train_loss=[train[s]["loss"] for s in steps],
        lr=[train[s]["lr"] for s in steps],
        rate_tokens=[(s + 1) * tps for s in logged],
        tokens_per_s=[train[s]["tokens_per_s"] for s in logged],
        tokens_seen=[train[s]["tokens_seen"] for s in logged],
        target_weights=[train[s].get("target_weights", {}) for s in logged],
        val_tokens=[s * tps for s in sorted(val)],
        val_loss=[val[s]["loss"] for s in sorted(val)],
        val_bpb=[val[s].get("bpb", {}) for s in sorted(val)],
        transitions=[recs["transition"][s] for s in sorted(recs.get("transition", {}))],
        epochs=[recs["epoch"][k] for k in sorted(recs.get("epoch", {}))],
        hellaswag=[recs["hellaswag"][s] for s in sorted(recs.get("hellaswag", {}))],
    )
