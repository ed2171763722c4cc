"""A run directory's layout, ``<out_dir>/<config name>/``: the one owner of every name in it.

::

    metrics.jsonl                      one JSON record per line (train, validation, transition, checkpoint, ...)
    tensorboard/                       the same scalars for TensorBoard
    checkpoints/step_0000250.pt        periodic, the last ``keep_last`` kept (train/checkpoint.py)
    checkpoints/step_0000250.pt.sha256 its sha256, written before the .pt is renamed into place
    checkpoints/step_0002374_final-a.pt the end of phase "a", never deleted
    averages/last-3[_b]/checkpoint.pt  ``chinchilla average-checkpoints`` (train/average.py); resume never reads it
    evaluation.json                    ``chinchilla evaluate``: each domain's whole validation split
    hellaswag.json                     ``chinchilla hellaswag``
    report/                            ``chinchilla report``: report.md and its plots
    wandb_run_id, wandb/NNNN/          with ``--wandb_project``: one wandb run per directory, one folder per invocation

No I/O beyond listing: importable without torch (report, export and the instruments read runs with it).
"""

from __future__ import annotations

import re
from pathlib import Path

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
AVERAGES = "averages"
EVALUATION = "evaluation.json"
HELLASWAG = "hellaswag.json"
REPORT = "report"
WANDB_ID = "wandb_run_id"
WANDB = "wandb"

PERIODIC = re.compile(r"^step_(\d{7})\.pt$")
FINAL = re.compile(r"^step_(\d{7})_final-(.+)\.pt$")


def checkpoint_name(step: int, final_of: str | None = None) -> str:
    """``step_0000250.pt``, or ``step_0002374_final-a.pt`` for the end of phase ``final_of``."""
    return f"step_{step:07d}" + (f"_final-{final_of}" if final_of else "") + ".pt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def average_path(run_dir: str | Path, last: int, phase: str | None) -> Path:
    """Where the average of the last ``last`` checkpoints (of ``phase``, when given) is written."""
    return Path(run_dir) / AVERAGES / (f"last-{last}" + (f"_{phase}" if phase else "")) / "checkpoint.pt"


def result_dir(checkpoint: str | Path) -> Path:
    """The run directory that an evaluation of ``checkpoint`` (a file's directory, a checkpoints/ folder or a
    run directory) writes its results into."""
    path = Path(checkpoint)
    return path.parent if path.name == CHECKPOINTS else path


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint, oldest first (a final sorts after a periodic of its step)."""
    d = checkpoint_dir(run_dir)
    found = []
    for p in d.glob("*.pt") if d.is_dir() else []:
        if m := PERIODIC.match(p.name):
            found.append((int(m.group(1)), 0, p))
        elif m := FINAL.match(p.name):
            found.append((int(m.group(1)), 1, p))
    return [(s, p) for s, _, p in sorted(found)]


def list_finals(run_dir: str | Path) -> list[Path]:
    """The phase-final checkpoints, oldest first."""
    return [p for _, p in list_checkpoints(run_dir) if FINAL.match(p.name)]
