"""Ids proven identical, not assumed: the fast encoder's ids against HF ``tokenizers``' on a sample of each run.

The workers encode the sample a second time with HF (``encode.py``), so a chunk's ids come back checked
before the main process writes any of them. Sampled: every document until ``CHECK_FIRST_CHARS`` of text
in each run (a resume checks its first documents again), then the documents whose position in the stream
(training and validation documents after the duplicate filter, counted from its start, also on a resume)
is a multiple of ``CHECK_EVERY``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# 4 MB of text: ~0.9M ids, 1.9 CPU-s of HF (BENCHMARKS.md), once per run and source, over the first chunks.
CHECK_FIRST_CHARS = 4_000_000
# Then 1 document in 1,000: HF is 24-35x slower than gigatoken, so this adds 2.4-3.5% to gigatoken's CPU time
# (~0.3 CPU-s per GB of text, HF encoding 0.33 CPU-s per MB).
CHECK_EVERY = 1_000


@dataclass(frozen=True)
class Difference:
    """The first difference within one document: its index in the chunk, the token index and both ids
    (None where that encoder's ids ended first)."""

    doc: int
    token: int
    fast_id: int | None
    reference_id: int | None


class IdMismatch(Exception):
    """The two encoders disagree on the document at ``position`` of the stream (prepare names the source)."""

    def __init__(self, position: int, diff: Difference, encoder: str):
        def show(i: int | None) -> str:
            return "end of document" if i is None else f"id {i}"

        super().__init__(
            f"{encoder} and HF tokenizers give different ids for document {position:,} of the stream: first at "
            f"token {diff.token:,} ({encoder} {show(diff.fast_id)}, HF {show(diff.reference_id)}); nothing more "
            "was written: rerun with --encoder hf"
        )


class CheckSampler:
    """Which documents of each chunk to check; chunks are taken in stream order from ``first_position``."""

    def __init__(self, first_position: int = 0):
        self.position, self.num_chars = first_position, 0

    def take(self, texts: list[str]) -> tuple[int, list[int]]:
        """The stream position of ``texts[0]`` and the indices in ``texts`` to check."""
        start, which = self.position, []
        for i, text in enumerate(texts):
            if self.num_chars < CHECK_FIRST_CHARS or (start + i) % CHECK_EVERY == 0:
                which.append(i)
            self.num_chars += len(text)
        self.position += len(texts)
        return start, which


def first_difference(
    ids: np.ndarray, lens: np.ndarray, which: list[int], ref_ids: np.ndarray, ref_lens: np.ndarray
) -> Difference | None:
    """Compare documents ``which`` of (``ids``, ``lens``) with the reference encoding of those documents alone."""
    starts = np.concatenate([[0], np.cumsum(lens)])
    ref_start = 0
    for doc, n_ref in zip(which, ref_lens.tolist()):
        got, want = ids[starts[doc] : starts[doc + 1]], ref_ids[ref_start : ref_start + n_ref]
        ref_start += n_ref
        if got.size == want.size and np.array_equal(got, want):
            continue
        n = min(got.size, want.size)
        at = int(np.flatnonzero(got[:n] != want[:n])[0]) if np.any(got[:n] != want[:n]) else n
        return Difference(doc, at, int(got[at]) if at < got.size else None, int(want[at]) if at < want.size else None)
    return None
