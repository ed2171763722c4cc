"""Checkpoints: atomic files, the last K kept plus every phase's final, and a fingerprint.

Layout under ``<run_dir>/checkpoints/``::

    step_0000250.pt            periodic, the last ``keep_last`` kept
    step_0002374_final-a.pt    the end of phase "a" (2,374 steps for GPT-2 124M), never deleted

Each file is one ``torch.save`` dict written through ``atomic_open`` (temporary
file, fsync, rename): a file under its final name is always complete, so the
latest one by step is always loadable, even after ``kill -9`` mid-write.
"""

from __future__ import annotations

import hashlib
import pickle
import json
import re
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_open, remove_stale_temporaries
from ..errors import UserError

CKPT_VERSION = 1
_PERIODIC = re.compile(r"^step_(\d{7})\.pt$")
_FINAL = re.compile(r"^step_(\d{7})_final-(.+)\.pt$")


def config_hash(data: Any) -> str:
    """sha256 of canonical JSON (sorted keys): equal configs hash equal whatever their layout."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint, oldest first (a final sorts after a periodic of its step)."""
    d = checkpoint_dir(run_dir)
    found = []
    for p in d.glob("*.pt") if d.is_dir() else []:
        if m := _PERIODIC.match(p.name):
            found.append((int(m.group(1)), 0, p))
        elif m := _FINAL.match(p.name):
            found.append((int(m.group(1)), 1, p))
    return [(s, p) for s, _, p in sorted(found)]


def list_finals(run_dir: Path) -> list[Path]:
    """The phase-final checkpoints, oldest first."""
    return [p for _, p in list_checkpoints(run_dir) if _FINAL.match(p.name)]


def save_checkpoint(run_dir: Path, state: dict[str, Any], *, keep_last: int, final_of: str | None = None) -> Path:
    """Write ``state`` atomically; prune periodic checkpoints beyond the newest ``keep_last``."""
    d = checkpoint_dir(run_dir)
    remove_stale_temporaries(d)
    name = f"step_{state['step']:07d}" + (f"_final-{final_of}" if final_of else "")
    path = d / f"{name}.pt"
    with atomic_open(path, "wb") as f:
        torch.save({"version": CKPT_VERSION, **state}, f)
    periodic = sorted(p for p in d.glob("step_*.pt") if _PERIODIC.match(p.name))
    for old in periodic[:-keep_last]:
        old.unlink()
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load on CPU; only tensors and plain containers (``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"not a checkpoint written by `chinchilla pretrain` ({type(err).__name__})",
                        path=path) from None
    if not isinstance(state, dict) or state.get("version") != CKPT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise UserError(f"checkpoint version {version}, expected {CKPT_VERSION}", path=path)
    return state


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path: Path, allow_changes: bool) -> list[str]:
    """Differences between the checkpoint's fingerprint and the current one.

    Raises a ``UserError`` listing them unless ``allow_changes``; returns them
    (for the log) when allowed.
    """
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(key)
    if diffs and not allow_changes:
        raise UserError(f"was made with a different {', '.join(diffs)} than this run; resuming would mix "
                        "runs (pass --allow_changes to resume anyway)", path=path)
    return diffs
