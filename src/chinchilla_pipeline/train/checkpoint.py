"""Checkpoints: atomic files with a checksum, the last K kept plus every phase's final, and a fingerprint.

Their names and places are the run directory's (``train/rundir.py``: ``checkpoints/step_0000250.pt`` periodic,
``checkpoints/step_0002374_final-a.pt`` a phase's end, each with its ``.sha256``).

Each file is one ``torch.save`` of a ``TrainState`` written through ``atomic_open``
(temporary file, fsync, rename): a file under its final name is complete and
has its checksum, even after ``kill -9`` mid-write. The sha256 is computed
while the bytes are written (no extra read) and checked before ``torch.load``
(one read of the file: ~1.5 GB for GPT-2 124M with AdamW moments), so a
flipped bit is never loaded silently: ``latest_intact`` skips a corrupt
checkpoint with a warning and falls back to the one before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from ..atomic import atomic_open, remove_stale_temporaries, sha256_file, write_text
from ..errors import UserError
from .distributed import Dist, all_reduce_sum
from .rundir import PERIODIC, checkpoint_dir, checkpoint_name

log = logging.getLogger(__name__)
CKPT_VERSION = 2  # 2: a .sha256 beside each file; fingerprint model/recipe as field maps (1 had hashes)


def config_hash(data: Any) -> str:
    """sha256 of canonical JSON (sorted keys): equal configs hash equal whatever their layout."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TrainState:
    """Everything a run needs to continue bitwise where it stopped: the one owner of the checkpoint layout.

    ``state_dict``/``from_state_dict`` (torchtitan's ``Stateful`` style) convert to and from the
    plain dict that ``torch.save`` writes; the trainer builds one to save and reads one to resume,
    ``export``/``generate``/``evaluate`` read ``model``, ``model_config``, ``step`` and ``tokens_seen``.
    """

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    sampler: dict[str, Any]  # {"phase": index, **WeightedMultiDatasetSampler.state_dict()}
    consumed: dict[str, int]  # sequences drawn per source, all phases
    tokens_seen: dict[str, int]
    boundary_evals: dict[str, dict[str, dict[str, float]]]  # phase -> {"loss"/"bpb": {domain: value}} at its end
    rng: dict[str, torch.Tensor]  # "torch", and "cuda" on GPU
    fingerprint: dict[str, Any]
    world_size: int
    model_config: dict[str, Any]

    def state_dict(self) -> dict[str, Any]:
        return {"version": CKPT_VERSION, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_state_dict(cls, state: Any, path: Path) -> "TrainState":
        """Every field of ``state`` (a ``load_checkpoint`` dict: version checked); a missing one is a
        ``UserError`` naming it."""
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in state]
        if missing:
            raise UserError(
                f"is not a complete checkpoint: no {', '.join(repr(m) for m in missing)} "
                "(expected a file written by `chinchilla pretrain`)",
                path=path,
            )
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})

    @classmethod
    def load(cls, path: Path) -> "TrainState":
        """``load_checkpoint`` (checksum verified) as a ``TrainState``."""
        return cls.from_state_dict(load_checkpoint(path), path)


def save_on_rank_zero(dist: Dist, write: Callable[[], None], step: int) -> None:
    """Rank 0 runs ``write``, the others wait; a write that fails (disk full, read-only) stops every rank at once:
    the ranks agree on the outcome with one all-reduce instead of a barrier the others would wait at until
    the process group's timeout (30 minutes)."""
    failure: Exception | None = None
    if dist.is_main:
        try:
            write()
        except Exception as err:  # noqa: BLE001 - raised again below, after the other ranks know
            failure = err
    failed = all_reduce_sum(torch.tensor([float(failure is not None)], device=dist.device), dist)
    if failure is not None:
        raise failure
    if failed.item():
        raise UserError(
            f"rank 0 could not write the checkpoint of step {step} (its error says why); this rank stops too"
        )


def run_wide_sampler_state(
    state: TrainState, names: list[str], phase_start: Callable[[int], int], path: Path
) -> dict[str, Any]:
    """The sampler state of ``state`` as the run-wide sampler's (``WeightedMultiDatasetSampler.state_dict``).
    A checkpoint from before it (one sampler per phase, its position counted from the phase's start, a
    ``phase`` index; those curricula had hard switches only) is converted: ``phase_start(i)`` is the first
    sequence of phase i. Sources other than ``names``: a ``UserError``."""
    old = state.sampler
    if "used" in old:
        new = old
    else:
        drawn = dict(zip(old["names"], old["drawn"]))
        new = {
            "position": phase_start(old["phase"]) + int(old["position"]),
            "drawn": [int(drawn.get(n, 0)) for n in names],
            "used": [int(state.consumed.get(n, 0)) for n in names],
            "names": names,
        }
    if new["names"] != names:
        raise UserError(f"was saved with sources {new['names']}, the config now has {names}", path=path)
    return {k: v for k, v in new.items() if k != "phase"}


class CorruptCheckpoint(UserError):
    """A checkpoint whose bytes do not match its checksum (or that has none)."""


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


class _HashingWriter:
    """A write-only file for ``torch.save`` that hashes what it writes and keeps the first ``OSError``
    (torch reports a failed write as a bare ``RuntimeError``; the errno is what the user needs)."""

    def __init__(self, f: BinaryIO):
        self.f, self.sha, self.error = f, hashlib.sha256(), None

    def write(self, data) -> int:
        try:
            n = self.f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise
        self.sha.update(data)
        return n

    def flush(self) -> None:
        self.f.flush()


def write_checkpoint_file(path: Path, data: dict[str, Any]) -> None:
    """``torch.save`` of ``data`` to ``path`` through ``atomic_open``, its sha256 beside it (written first)."""
    with atomic_open(path, "wb") as f:
        w = _HashingWriter(f)
        try:
            torch.save(data, w)
        except RuntimeError:
            if w.error is not None:
                raise w.error from None
            raise
        # The checksum goes first: a .pt under its final name always has its .sha256.
        write_text(checksum_path(path), w.sha.hexdigest() + "\n")


def save_checkpoint(
    run_dir: Path, state: TrainState | dict[str, Any], *, keep_last: int, final_of: str | None = None
) -> Path:
    """Write ``state`` and its sha256 atomically; prune periodic checkpoints beyond the newest ``keep_last``."""
    d = checkpoint_dir(run_dir)
    remove_stale_temporaries(d)
    data = state.state_dict() if isinstance(state, TrainState) else {"version": CKPT_VERSION, **state}
    path = d / checkpoint_name(data["step"], final_of)
    write_checkpoint_file(path, data)
    periodic = sorted(p for p in d.glob("step_*.pt") if PERIODIC.match(p.name))
    for old in periodic[:-keep_last]:
        old.unlink()
        checksum_path(old).unlink(missing_ok=True)
    return path


def verify_checkpoint(path: Path) -> None:
    """Compare the file's sha256 with its ``.sha256``; ``CorruptCheckpoint`` when they differ or it has none."""
    try:
        expected = checksum_path(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise CorruptCheckpoint(
            f"has no checksum file {checksum_path(path).name}: cannot tell whether it is intact", path=path
        ) from None
    actual = sha256_file(path)
    if actual != expected:
        raise CorruptCheckpoint(
            f"is corrupt: sha256 {actual[:12]}..., its checksum file says {expected[:12]}... "
            "(bits changed on disk since it was written)",
            path=path,
        )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Verify the checksum, then load on CPU; only tensors and plain containers (``weights_only``)."""
    if not Path(path).is_file():
        raise UserError("no such checkpoint file", path=path)
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise UserError(
            f"not a checkpoint written by `chinchilla pretrain` ({type(err).__name__})", path=path
        ) from None
    if not isinstance(state, dict) or state.get("version") != CKPT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise UserError(f"checkpoint version {version}, expected {CKPT_VERSION}", path=path)
    return state


def latest_intact(candidates: list[Path]) -> tuple[Path, TrainState]:
    """The newest of ``candidates`` (oldest first) whose checksum holds, loaded; a corrupt one is skipped
    with a warning. None intact: a ``UserError`` listing them."""
    bad, unchecked = [], []
    for path in reversed(candidates):
        try:
            return path, TrainState.load(path)
        except CorruptCheckpoint as err:
            log.warning("%s; falling back to the checkpoint before it", err)
            (bad if checksum_path(path).is_file() else unchecked).append(path.name)
    why = [f"{', '.join(bad)} fail their checksums"] if bad else []
    if unchecked:  # a .sha256 removed, or a checkpoint of version 1, from before checksums
        why.append(f"{', '.join(unchecked)} have no .sha256 (version 1 checkpoints had none and cannot be resumed)")
    raise UserError(
        f"no intact checkpoint: {'; '.join(why)}; delete them to start over, or restore them from a copy",
        path=candidates[-1].parent if candidates else None,
    )


def _short(value: Any) -> str:
    """A fingerprint value for a message: sha256 digests cut to 12 characters, anything longer than 40 cut
    with "...", absent values as ``none``."""
    if value is None:
        return "none"
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Fingerprint fields added after checkpoints were written, with the value every older checkpoint had: a
# checkpoint that lacks one agrees with a run at that value (GPT-2's model and AdamW, before the modern recipe).
ADDED_FIELDS = {("model", "architecture"): "gpt2", ("recipe", "optimizer.kind"): "adamw"}


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path: Path, allow_changes: bool) -> list[str]:
    """Differences between the checkpoint's fingerprint and the current one (``ADDED_FIELDS`` missing from
    the checkpoint read as their old value).

    Raises a ``UserError`` listing them unless ``allow_changes``; returns them
    (for the log) when allowed.
    """
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            a = {**{k: v for (part, k), v in ADDED_FIELDS.items() if part == key}, **a}
            diffs += [
                f"{key}.{k} ({_short(a.get(k))} -> {_short(b.get(k))})"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            diffs.append(f"{key} ({_short(a)} -> {_short(b)})")
    if diffs and not allow_changes:
        raise UserError(
            f"was made with a different {', '.join(diffs)} than this run; resuming would mix "
            "runs (pass --allow_changes to resume anyway)",
            path=path,
        )
    return diffs
