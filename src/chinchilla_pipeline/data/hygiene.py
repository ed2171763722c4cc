"""Held-out text stays held out: the validation split is unique and absent from train.

A dataset's stream (``sources.iter_batches``) is split by position: its first
``validation_docs`` documents are the validation split, the rest are training
documents. ``ValidationFilter`` sits on that stream, in ``prepare`` and in the
tokenizer's trainer alike, so both see the same split:

- a validation document equal to an earlier one is dropped (the next document
  takes its place), counted as ``dropped_duplicate_in_validation``;
- a training document equal to a validation document is dropped, counted as
  ``dropped_duplicate_of_validation``.

Equal means exact: the same text after the stream's normalisation (field or
template, joined rows, invalid UTF-8 replaced), compared by the sha256 of its
UTF-8 bytes. Near-duplicates (other whitespace, boilerplate around the same
text) are not caught; see docs/data-hygiene.md for where fuzzy deduplication
(MinHash, as in datatrove) would go. The filter is a pure function of the
stream, so a resumed ``prepare`` rebuilds the same hash set by re-reading the
stream from its start. ``validation_split`` reads one part's validation split as
``prepare`` writes it, for the tokenizer's trainer to hold it out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np

from .caps import Caps
from .config import DatasetConfig
from .sources import DocumentBatch, iter_batches

# Counter columns the filter appends to each batch's counts (after ``sources.COUNTERS``).
HYGIENE_COUNTERS = ("dropped_duplicate_in_validation", "dropped_duplicate_of_validation")
# Which documents reach the splits: part of a prepared dataset's and a tokenizer's fingerprint.
HYGIENE_VERSION = 1


def document_hash(text: str) -> bytes:
    """sha256 of the document's UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class ValidationFilter:
    """Drops duplicates inside the first ``validation_docs`` documents and train copies of them."""

    def __init__(self, validation_docs: int):
        self.validation_docs = validation_docs
        self.num_validation = 0  # unique validation documents seen
        self._hashes: set[bytes] = set()
        self._lengths: set[int] = set()  # equal texts have equal lengths: most documents skip the sha256
        self._digest = hashlib.sha256()  # over the validation documents' hashes, in stream order

    @property
    def validation_sha256(self) -> str:
        """Identity of the validation split: sha256 of its documents' sha256s, in order."""
        return self._digest.hexdigest()

    def _keep(self, text: str) -> int:
        """-1 to keep ``text``; else the ``HYGIENE_COUNTERS`` column that counts its drop."""
        if self.num_validation < self.validation_docs:
            h = document_hash(text)
            if h in self._hashes:
                return 0
            self._hashes.add(h)
            self._lengths.add(len(text))
            self._digest.update(h)
            self.num_validation += 1
            return -1
        if len(text) in self._lengths and document_hash(text) in self._hashes:
            return 1
        return -1

    def holds(self, text: str) -> bool:
        """Whether ``text`` is one of the validation documents seen so far."""
        return len(text) in self._lengths and document_hash(text) in self._hashes

    def split(self, batches: Iterator[DocumentBatch]) -> Iterator[DocumentBatch]:
        """``batches`` without the duplicates; counts gain the ``HYGIENE_COUNTERS`` columns.

        A dropped document's counts go to the next document kept (or the stream's tail),
        as the source's own filters do, so a run stopped by a cap counts what it read.
        """
        carry: np.ndarray | None = None  # counts since the last document kept
        for batch in batches:
            extra = np.zeros((len(batch.texts), len(HYGIENE_COUNTERS)), dtype=np.int64)
            for i, text in enumerate(batch.texts):
                col = self._keep(text)
                if col >= 0:
                    extra[i, col] = 1
            counts = np.hstack([batch.counts, extra])
            if carry is None:
                carry = np.zeros(counts.shape[1], dtype=np.int64)
            if not batch.texts:  # the stream's last batch: only its tail
                yield DocumentBatch([], counts, np.concatenate([batch.tail, extra.sum(axis=0)]) + carry, batch.files)
                continue
            kept = np.flatnonzero(extra.sum(axis=1) == 0)
            cum = np.cumsum(counts, axis=0) + carry
            if kept.size:
                upto = cum[kept]
                carry = cum[-1] - upto[-1]
                texts = batch.texts if kept.size == len(batch.texts) else [batch.texts[i] for i in kept]
                yield DocumentBatch(
                    texts,
                    np.diff(upto, axis=0, prepend=np.zeros((1, counts.shape[1]), np.int64)),
                    np.zeros(counts.shape[1], dtype=np.int64),
                    batch.files[kept],
                )
            else:
                carry = cum[-1]


def validation_split(
    cfg: DatasetConfig, config_path: str | Path, rank: int, world_size: int, keep: int = 0
) -> tuple[ValidationFilter, list[str]]:
    """Part ``rank`` of ``world_size``'s validation split as ``prepare`` writes it: the first
    ``Caps.for_rank(...).validation_docs`` documents of that part's stream through a ``ValidationFilter``.

    Returns the filter (its ``holds``, ``num_validation`` and ``validation_sha256`` describe the split)
    and the split's first ``keep`` documents; the stream is read no further than the batch ending the split.
    """
    take = Caps.for_rank(cfg, rank, world_size).validation_docs
    hygiene = ValidationFilter(take)
    docs: list[str] = []
    if not take:
        return hygiene, docs
    batches = hygiene.split(iter_batches(cfg, config_path, rank, world_size))
    position = 0  # documents of the filtered stream: the first ``take`` are the validation split
    try:
        for batch in batches:
            n = min(len(batch.texts), take - position)
            docs += batch.texts[: min(n, max(0, keep - len(docs)))]
            position += n
            if position == take:
                break
    finally:
        batches.close()
    return hygiene, docs
