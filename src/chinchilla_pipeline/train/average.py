"""Checkpoint averaging: the uniform mean of the weights of a run's (or one phase's) last K checkpoints.

The average is written to ``<run_dir>/averages/last-<K>[_<phase>]/checkpoint.pt`` (and its ``.sha256``):
outside ``checkpoints/``, so resume never picks it up, and one folder per average because ``evaluate``
and ``hellaswag`` write ``evaluation.json`` / ``hellaswag.json`` beside a checkpoint that is not in a
run's ``checkpoints/``. The file is a ``TrainState``: the averaged ``model``; ``model_config``, ``step``,
``tokens_seen``, ``fingerprint``, ``consumed``, ``boundary_evals`` and ``world_size`` of the newest
checkpoint averaged; ``optimizer``, ``sampler`` and ``rng`` empty (an average has no optimizer state to
resume from); and ``averaged``: ``{"last": K, "phase": ..., "checkpoints": [{"file", "step"}, ...]}``.
So ``evaluate``, ``export``, ``hellaswag`` and ``generate`` take it with ``--checkpoint`` unchanged.

Memory: one loaded checkpoint at a time plus a float32 accumulator, never K copies (GPT-2 124M: a 1.5 GB
checkpoint with its AdamW moments, and 0.5 GB of sums).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .checkpoint import CorruptCheckpoint, TrainState, write_checkpoint_file
from .rundir import FINAL, PERIODIC, average_path, checkpoint_dir, list_checkpoints

log = logging.getLogger(__name__)


def phase_of(state: TrainState) -> str | None:
    """The name of the phase the checkpoint's last step trained (its sampler's phase, named by the recipe)."""
    return state.fingerprint.get("recipe", {}).get(f"phases.{state.sampler.get('phase')}.name")


def _phase_names(state: TrainState) -> list[str]:
    recipe = state.fingerprint.get("recipe", {})
    keys = sorted((int(m.group(1)), k) for k in recipe if (m := re.fullmatch(r"phases\.(\d+)\.name", k)))
    return [recipe[k] for _, k in keys]


def phase_candidates(run_dir: Path, phase: str | None) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints in ``phase`` (None: all), oldest first.

    A finished phase is told by the file names: its final ``step_E_final-<phase>.pt`` and the periodic
    ones after the previous phase's final. A phase without a final is the one in progress: every
    checkpoint after the last final (``average_checkpoints`` checks its name once one is loaded).
    """
    ckpts = list_checkpoints(run_dir)
    if phase is None:
        return ckpts
    finals = [(s, m.group(2)) for s, p in ckpts if (m := FINAL.match(p.name))]
    names = [n for _, n in finals]
    if phase in names:
        i = names.index(phase)
        lo, hi = (finals[i - 1][0] if i > 0 else -1), finals[i][0]
    else:
        lo, hi = (finals[-1][0] if finals else -1), float("inf")
    return [(s, p) for s, p in ckpts if lo < s <= hi]


def _describe(shape_dtype: tuple) -> str:
    shape, dtype = shape_dtype
    return f"{list(shape)} {str(dtype).removeprefix('torch.')}"


def _check_same_model(ref: TrainState, ref_shapes: dict, ref_path: Path, state: TrainState, path: Path) -> None:
    """One model in all: equal ``model_config``, parameter names, shapes and dtypes, and tokenizer."""
    one_model = "only checkpoints of one model can be averaged"
    a, b = ref.model_config, state.model_config
    if a != b:
        fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise UserError(
            f"is another model than {ref_path.name}: model_config differs in {', '.join(fields)}; {one_model}",
            path=path,
        )
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in state.model.items()}
    if shapes != ref_shapes:
        extra, missing = sorted(set(shapes) - set(ref_shapes)), sorted(set(ref_shapes) - set(shapes))
        if extra:
            what = f"has parameter {extra[0]!r}, which {ref_path.name} has not"
        elif missing:
            what = f"has no parameter {missing[0]!r}, which {ref_path.name} has"
        else:
            k = min(k for k in shapes if shapes[k] != ref_shapes[k])
            what = f"has parameter {k!r} as {_describe(shapes[k])}, {ref_path.name} as {_describe(ref_shapes[k])}"
        raise UserError(f"is another model than {ref_path.name}: it {what}; {one_model}", path=path)
    if state.fingerprint.get("tokenizer") != ref.fingerprint.get("tokenizer"):
        raise UserError(f"was trained with another tokenizer than {ref_path.name}: cannot be averaged", path=path)


def average_checkpoints(
    run_dir: str | Path, last: int, phase: str | None = None, out: str | Path | None = None
) -> Path:
    """Average the model weights of the run's last ``last`` intact checkpoints (of ``phase`` only when given)
    uniformly in float32, cast back to each tensor's stored dtype; write the average (atomically, with its
    sha256) to ``out`` (default ``rundir.average_path``) and return its path.

    A corrupt checkpoint is skipped with a warning (the one before it counts instead); fewer than ``last``
    checkpoints, or checkpoints of different models, are a ``UserError``. ``last`` 1 writes the newest
    checkpoint's weights exactly.
    """
    run_dir = Path(run_dir)
    if not isinstance(last, int) or last < 1:
        raise UserError(f"expected a positive number of checkpoints, got {last}", field="--last")
    out = Path(out) if out is not None else average_path(run_dir, last, phase)
    in_checkpoints = out.parent.resolve() == checkpoint_dir(run_dir).resolve()
    if in_checkpoints and (PERIODIC.match(out.name) or FINAL.match(out.name)):
        raise UserError("is a checkpoint name that resume would pick up: choose another name", path=out)
    pool = phase_candidates(run_dir, phase)
    of = f"phase '{phase}' of the run" if phase else "the run"
    keep_more = (
        "checkpoint.keep_last (periodic checkpoints kept) and checkpoint.interval_steps (steps between them) "
        "in the curriculum config keep more"
    )
    if not pool and phase is not None and (ckpts := list_checkpoints(run_dir)):
        names = _phase_names(TrainState.load(ckpts[-1][1]))  # an error path: one load to name the phases
        if phase not in names:
            raise UserError(f"has no phase '{phase}' (its phases: {', '.join(names)})", path=run_dir)
    if len(pool) < last:
        raise UserError(
            f"{of} has {len(pool)} checkpoint{'s' * (len(pool) != 1)}, fewer than --last {last}: {keep_more}",
            path=checkpoint_dir(run_dir),
        )
    total: dict[str, torch.Tensor] = {}
    ref: TrainState | None = None
    ref_path, ref_shapes, dtypes = Path(), {}, {}
    used: list[tuple[int, Path]] = []
    for step, path in reversed(pool):  # newest first: the newest intact one gives step, config, fingerprint
        if len(used) == last:
            break
        try:
            state = TrainState.load(path)
        except CorruptCheckpoint as err:
            log.warning("%s; not averaged, the checkpoint before it counts instead", err)
            continue
        if ref is None:
            if phase is not None and phase_of(state) != phase:
                raise UserError(
                    f"has no checkpoint of phase '{phase}' (its phases: {', '.join(_phase_names(state))}; "
                    f"the newest checkpoint, {path.name}, is of phase '{phase_of(state)}')",
                    path=run_dir,
                )
            ref, ref_path = dataclasses.replace(state, model={}, optimizer={}), path
            ref_shapes = {k: (tuple(v.shape), v.dtype) for k, v in state.model.items()}
            dtypes = {k: v.dtype for k, v in state.model.items()}
            total = {k: v.to(torch.float32, copy=True) if v.is_floating_point() else v for k, v in state.model.items()}
        else:
            _check_same_model(ref, ref_shapes, ref_path, state, path)
            for k, v in state.model.items():
                if v.is_floating_point():  # integer buffers, if any: the newest checkpoint's
                    total[k] += v.to(torch.float32)
        used.append((step, path))
        del state  # before the next load: one checkpoint in memory at a time
    if len(used) < last:
        raise UserError(
            f"{of} has {len(used)} intact checkpoint{'s' * (len(used) != 1)} of {len(pool)} (the others fail their "
            f"checksums), fewer than --last {last}: {keep_more}",
            path=checkpoint_dir(run_dir),
        )
    model = {k: (v / last).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}
    data: dict[str, Any] = dataclasses.replace(ref, model=model, sampler={}, rng={}).state_dict()
    data["averaged"] = {
        "last": last,
        "phase": phase,
        "run_dir": str(run_dir),
        "checkpoints": [{"file": p.name, "step": s} for s, p in reversed(used)],  # oldest first
    }
    write_checkpoint_file(out, data)
    return out


def averaged_from(path: str | Path) -> dict[str, Any]:
    """The ``averaged`` record of an average written by ``average_checkpoints`` (the tensors are not read)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return state.get("averaged", {})
