"""Write a dataset's splits as shards, committing progress after each complete shard.

``.progress.json`` lists the complete shards and how many stream documents they
hold: the only state a restart needs. A shard is committed (closed, checksummed,
listed) before the progress that names it, so a ``kill -9`` at any point leaves
either a committed shard or one that the restart deletes and rewrites.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from ..errors import UserError
from ..schema import read_json
from .layout import INDEX_SUFFIX, PROGRESS_NAME, SHARD_SUFFIX, shard_name
from .manifest import shard_entry
from .shards import ShardWriter

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What complete shards hold."""

    fingerprint: str
    docs_consumed: int = 0  # documents of the stream (validation + training) in complete shards
    shards: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"train": [], "validation": []})
    counts: list[int] = field(default_factory=list)  # the source's counters up to docs_consumed
    per_file: dict[str, list[int]] = field(default_factory=dict)  # documents per source file, per split

    def save(self, out: Path) -> None:
        write_json(
            out / PROGRESS_NAME,
            {
                "fingerprint": self.fingerprint,
                "docs_consumed": self.docs_consumed,
                "counts": self.counts,
                "per_file": self.per_file,
                "shards": self.shards,
            },
        )

    def total(self, split: str, key: str) -> int:
        return sum(s[key] for s in self.shards[split])


def load_progress(out: Path, fp: str, num_counters: int, num_files: int) -> Progress:
    """Resume from ``.progress.json``; another run's progress is refused, never silently discarded."""
    spath = out / PROGRESS_NAME
    if spath.is_file():
        saved = read_json(spath)
        if saved.get("fingerprint") != fp:
            raise UserError(
                f"{out} holds a half-prepared dataset of another config, tokenizer or stream "
                f"version ({saved.get('docs_consumed', 0):,} documents); pass --overwrite to discard "
                "it",
                path=spath,
            )
        log.info("resuming %s after %d documents", out, saved["docs_consumed"])
        return Progress(fp, saved["docs_consumed"], saved["shards"], saved["counts"], saved["per_file"])
    # A first shard renamed into place before any progress was saved.
    for p in [*out.glob(f"*{SHARD_SUFFIX}"), *out.glob(f"*{INDEX_SUFFIX}")]:
        p.unlink()
    return Progress(fp, counts=[0] * num_counters, per_file={s: [0] * num_files for s in ("validation", "train")})


class SplitWriter:
    """Appends whole documents to the validation or training split, in stream order.

    Owns the running totals (stream documents consumed, each split's documents, training
    tokens, the source's counters) and the one open shard. Training shards rotate at
    ``shard_tokens``: the document that reaches it ends the shard.
    """

    def __init__(self, out: Path, progress: Progress, vocab_size: int, eot_id: int, shard_tokens: int):
        self.out, self.progress = out, progress
        self.vocab_size, self.eot_id, self.shard_tokens = vocab_size, eot_id, shard_tokens
        self.consumed = progress.docs_consumed
        self.read = np.array(progress.counts, dtype=np.int64)  # counters of the documents consumed
        self.per_file = {s: np.array(n, dtype=np.int64) for s, n in progress.per_file.items()}
        self.num_val = progress.total("validation", "num_docs")
        self.num_train = progress.total("train", "num_docs")
        self.num_tokens = progress.total("train", "num_tokens")
        self._writer: ShardWriter | None = None
        self._split = ""

    def add(self, split: str, tokens: np.ndarray, lens: np.ndarray, counts: np.ndarray, files: np.ndarray) -> None:
        """Append documents: ``tokens`` concatenated, ``lens`` their lengths, ``counts`` their counter rows,
        ``files`` their source files' indices."""
        offsets = np.concatenate(([0], np.cumsum(lens)))
        i = 0
        while i < len(lens):
            w = self._open(split)
            take = len(lens) - i
            if split == "train":  # up to the document that fills the shard
                cum = offsets[i + 1 :] - offsets[i]
                take = min(take, int(np.searchsorted(cum, self.shard_tokens - w.num_tokens, "left")) + 1)
            w.add(tokens[offsets[i] : offsets[i + take]], lens[i : i + take])
            self.read += counts[i : i + take].sum(axis=0)
            np.add.at(self.per_file[split], files[i : i + take], 1)
            self.consumed += take
            if split == "train":
                self.num_train += take
                self.num_tokens += int(offsets[i + take] - offsets[i])
                if w.num_tokens >= self.shard_tokens:
                    self.commit()
            else:
                self.num_val += take
            i += take

    def commit(self) -> None:
        """Close the open shard, list it and save the progress that names it."""
        assert self._writer is not None, "no open shard to commit"
        self._commit(self._writer, self._split)
        self._writer = None

    def finish(self) -> None:
        """Commit the open shard, and an empty one for a split that has none."""
        for split in ("validation", "train"):
            if self._writer is not None and self._split == split:
                self.commit()
            elif not self.progress.shards[split]:
                self._commit(self._new(split), split)

    def abort(self) -> None:
        """Delete the open (incomplete) shard."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _new(self, split: str) -> ShardWriter:
        return ShardWriter(self.out / shard_name(split, len(self.progress.shards[split])), self.vocab_size, self.eot_id)

    def _open(self, split: str) -> ShardWriter:
        if self._writer is None:
            self._writer, self._split = self._new(split), split
        return self._writer

    def _commit(self, w: ShardWriter, split: str) -> None:
        w.close()
        self.progress.shards[split].append(shard_entry(w.bin_path, w.num_tokens, w.num_docs))
        self.progress.docs_consumed, self.progress.counts = self.consumed, self.read.tolist()
        self.progress.per_file = {s: n.tolist() for s, n in self.per_file.items()}
        self.progress.save(self.out)
