"""Training metrics: one JSONL file per run, TensorBoard scalars, a one-line progress log.

``<run_dir>/metrics.jsonl`` is append-only across invocations (phase A, then
phase B, then resumes); a ``start`` record opens each invocation. After a
kill, the resumed run logs again the steps after its checkpoint: a reader keeps
the last record per (type, step).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .rundir import METRICS, TENSORBOARD

if TYPE_CHECKING:  # imported where used: reading metrics (report) needs no torch
    import torch

# Dense bf16 peak FLOP/s (no sparsity), by device-name substring, most specific first. A100 from nanoGPT's
# estimate_mfu, H100 SXM from NVIDIA's datasheet (989 TFLOPS); H100 PCIe, H100 NVL, H200 NVL and H200 SXM from
# NVIDIA's datasheets (half their "with sparsity" figures: 1,513, 1,671, 1,671 and 1,979 TFLOPS). "H200" alone
# (the SXM card's name, "NVIDIA H200") comes after "H200 NVL", which it would otherwise match.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "H200 NVL": 835e12,
    "H200": 989e12,
    "A100": 312e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The card's dense bf16 peak, or None where unknown (CPUs, other cards): MFU is then not reported
    unless ``--peak_tflops`` gives it."""
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def mfu(flops_per_token: int, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak (0..1); ``tokens_per_s`` and
    ``peak`` over the same devices (all ranks: the global rate against every card's peak together)."""
    return None if not peak else flops_per_token * tokens_per_s / peak


def transition_summary(
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    earlier_domains: list[str],
    phase_domains: list[str],
) -> dict[str, Any]:
    """Per-domain validation loss before and after a phase, from two ``Validator.evaluate`` results
    ({"loss": nats/token, "bpb": bits/byte}, each by domain).

    ``forgetting``: for domains of earlier phases that this phase does not train
    on, how much their loss rose (after - before; > 0 means forgotten).
    ``gain``: for this phase's domains, how much their loss fell (before - after).
    ``before``/``after``/``forgetting``/``gain`` are in nats/token; the same four with ``_bpb`` in bits/byte.
    A boundary saved before bits per byte (a checkpoint holding {domain: nats}) gives the nats alone.
    """
    before, after = _by_unit(before), _by_unit(after)
    out: dict[str, Any] = {}
    for unit, suffix in (("loss", ""), ("bpb", "_bpb")):
        if unit not in before or unit not in after:
            continue
        b, a = before[unit], after[unit]
        out |= {
            f"before{suffix}": b,
            f"after{suffix}": a,
            f"forgetting{suffix}": {
                d: a[d] - b[d] for d in earlier_domains if d not in phase_domains and d in b and d in a
            },
            f"gain{suffix}": {d: b[d] - a[d] for d in phase_domains if d in b and d in a},
        }
    return out


def transition_record(
    phase_sources: list[tuple[str, list[str]]], i: int, boundary_evals: dict[str, Any], step: int
) -> dict[str, Any]:
    """The ``transition`` record at the end of phase ``i`` (``phase_sources``: each phase's name and source
    names): its boundary validation and, when the previous phase's is known, the change on every domain."""
    name = phase_sources[i][0]
    record: dict[str, Any] = {
        "type": "transition",
        "step": step,
        "phase": name,
        "validation_loss": boundary_evals[name]["loss"],
        "validation_bpb": boundary_evals[name]["bpb"],
    }
    prev = phase_sources[i - 1][0] if i > 0 else None
    if prev in boundary_evals:
        earlier = [s for _, sources in phase_sources[:i] for s in sources]
        summary = transition_summary(boundary_evals[prev], boundary_evals[name], earlier, phase_sources[i][1])
        record.update(after_phase=prev, **summary)
    return record


def describe_transition(record: dict[str, Any]) -> str:
    """The log line of a ``transition`` record: nats first, bits/byte where recorded."""

    def changes(key: str) -> str:  # "d +0.0123 (+0.0178 bpb)"
        bpb = record.get(f"{key}_bpb", {})
        return ", ".join(
            f"{d} {v:+.4f}" + (f" ({bpb[d]:+.4f} bpb)" if d in bpb else "") for d, v in record[key].items()
        )

    line = f"phase '{record['phase']}' done at step {record['step']}"
    if "after_phase" not in record:
        return line
    return (
        f"{line}; validation loss after phase '{record['after_phase']}' -> after '{record['phase']}': "
        + ", ".join(f"{d} {record['before'][d]:.4f} -> {v:.4f}" for d, v in record["after"].items())
        + f"; forgetting {changes('forgetting')}; gain {changes('gain')}"
    )


def _by_unit(evaluation: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{"loss": ..., "bpb": ...}; a checkpoint's boundary from before bits per byte, {domain: nats}, as {"loss": it}."""
    return evaluation if all(isinstance(v, dict) for v in evaluation.values()) else {"loss": evaluation}


def format_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A record's finite numbers as ``<type>/<key>`` and, for dicts of numbers, ``<type>/<key>/<sub>``."""
    kind, out = record["type"], {}
    for key, value in record.items():
        if key in ("type", "step"):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{kind}/{key}"] = value
        elif isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    out[f"{kind}/{key}/{sub}"] = v
    return out


class MetricsLog:
    """JSONL + TensorBoard writer; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, wandb: dict[str, Any] | None = None):
        """``wandb``: None (off) or ``WandbLogger``'s arguments (project, name, entity)."""
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(run_dir / METRICS, "a", encoding="utf-8")
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / TENSORBOARD))
            if wandb:
                from .wandb_log import WandbLogger

                self._wandb = WandbLogger(run_dir, **wandb)

    def write(self, record: dict[str, Any]) -> None:
        """One JSONL line; numeric fields (and dicts of them) also go to TensorBoard (and wandb) at ``step``."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps(record, sort_keys=True) + "\n")
        self._jsonl.flush()
        step = record.get("step")
        values = scalars(record) if step is not None else {}
        for tag, value in values.items():
            self._tb.add_scalar(tag, value, step)
        if self._wandb is not None:
            self._wandb.log(record, values)

    def say(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
            if self._wandb is not None:
                self._wandb.close()


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the run stops before writing any later checkpoint."""


class PendingSteps:
    """Each step's loss and gradient norm, kept on the device until the log interval (no per-step sync)."""

    def __init__(self):
        self.rows: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []  # (step, lr, loss, grad norm)

    def add(self, step: int, lr: float, loss: torch.Tensor, norm: torch.Tensor) -> None:
        self.rows.append((step, lr, loss, norm))

    def gather(self, all_reduce_mean) -> list[tuple[int, float, float, float]]:
        """The pending rows on the host, losses averaged over the ranks (``all_reduce_mean``: one
        collective), then cleared; ``NonFiniteLoss`` at the first NaN/inf loss or gradient norm."""
        import torch

        if not self.rows:
            return []
        losses = all_reduce_mean(torch.stack([r[2] for r in self.rows]).float())
        values = torch.stack([losses, torch.stack([r[3].float() for r in self.rows])]).tolist()
        out = [(step, lr, loss, norm) for (step, lr, _, _), loss, norm in zip(self.rows, *values)]
        self.rows.clear()
        for step, _, loss, norm in out:
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"loss is {loss} at step {step}; stopping without writing a checkpoint")
            if not math.isfinite(norm):  # the update already spread it to the weights
                raise NonFiniteLoss(f"gradient norm is {norm} at step {step}; stopping without writing a checkpoint")
        return out


class RateMeter:
    """Tokens/s over the steps since the last ``reset`` (reset after evals and checkpoints)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1

    def seconds_per_step(self) -> float:
        return (time.perf_counter() - self.t0) / max(1, self.steps)


def read_all_metrics(path: Path) -> dict[str, dict[Any, dict[str, Any]]]:
    """type -> step -> the last record of that (type, step): resumed steps replace killed ones.

    ``epoch`` records are keyed by (step, source); a line that is not JSON is a ``UserError``.
    """
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(
                    f"line {n} is not JSON (a metrics.jsonl from `chinchilla pretrain` was expected)", path=path
                ) from None
            key = (rec.get("step"), rec.get("source")) if rec.get("type") == "epoch" else rec.get("step")
            out.setdefault(rec.get("type"), {})[key] = rec
    return out


def read_metrics(path: Path, kind: str) -> dict[int, dict[str, Any]]:
    """The last record of type ``kind`` for each step (resumed steps replace killed ones)."""
    return read_all_metrics(path).get(kind, {})
