"""The prep chain: one rank's stream of documents from its source to shards, each stage over the one before.

``run_chain`` lists the stages in the order they run: read -> hold out -> skip what complete shards hold ->
encode -> cap and write. ``prepare.prepare_dataset`` sets them up (the source, the worker processes, the
writer's resumed progress) and writes the manifest from what they leave.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from .caps import SOURCE_EXHAUSTED, Caps
from .encode import EncoderPool
from .hygiene import ValidationFilter
from .sources import DocumentBatch
from .split_writer import SplitWriter


def run_chain(
    documents: Iterator[DocumentBatch],
    hygiene: ValidationFilter,
    pool: EncoderPool,
    splits: SplitWriter,
    caps: Caps,
    check: Callable[[], None],
    bar: tqdm,
) -> tuple[str, np.ndarray]:
    """The prep chain, each stage a generator over the one before, in the order it runs:

    1. read: ``documents``, this rank's stream from its start (``sources.iter_batches``, opened by the caller
       before anything is written);
    2. hold out: the first ``caps.validation_docs`` unique documents are the validation split, training copies
       of them are dropped (``hygiene.split``);
    3. skip what is done: the ``splits.consumed`` documents that complete shards hold (``skip_done``);
    4. encode: tokens from the worker processes, in stream order (``EncoderPool.map``);
    5. cap and write: the validation split, checked and committed, then training documents until a cap or
       the end of the source (``cap_and_write``).

    Hold out precedes the skip because its state is not saved: a resume rebuilds the validation hashes by
    passing the stream through the filter again from its start, so the split, its sha256 and the training
    documents dropped are an unbroken run's. The skipped documents are read again (the reader: ~40 MB of text
    per CPU-second, BENCHMARKS.md) but not tokenized. Returns ``cap_and_write``'s stop reason and tail counts.
    """
    stream = hygiene.split(documents)
    stream = skip_done(stream, splits.consumed)
    encoded = pool.map(stream, lambda b: b.texts, first_position=splits.consumed)
    return cap_and_write(encoded, splits, caps, hygiene, check, bar)


def skip_done(batches: Iterator[DocumentBatch], num_docs: int) -> Iterator[DocumentBatch]:
    """``batches`` without their first ``num_docs`` documents (already in complete shards), before tokenization."""
    for batch in batches:
        if num_docs:
            drop = min(num_docs, len(batch.texts))
            num_docs -= drop
            batch = DocumentBatch(batch.texts[drop:], batch.counts[drop:], batch.tail, batch.files[drop:])
        yield batch


def cap_and_write(
    encoded: Iterator[tuple[DocumentBatch, np.ndarray, np.ndarray]],
    splits: SplitWriter,
    caps: Caps,
    hygiene: ValidationFilter,
    check: Callable[[], None],
    bar: tqdm,
) -> tuple[str, np.ndarray]:
    """Write ``encoded`` batches (documents, tokens, lengths) to ``splits``: the stream's first documents to the
    validation split, then training documents until a cap refuses one or the source ends.

    ``check()`` runs on every batch once ``hygiene`` has read the whole validation split (its sha256 is final;
    on a resume: at once), so before that split is committed, and at the end of a source that ran out inside
    it. Returns why the run stopped and the counts of the rows read after the last document when the source
    ran out (zeros otherwise). A failure removes the unfinished shard.
    """
    try:
        for batch, tokens, lens in encoded:
            i = caps.validation_take(splits.num_val, len(lens))  # the stream's first documents
            if i:
                splits.add("validation", *_documents(batch, tokens, lens, 0, i))
            if hygiene.num_validation >= caps.validation_docs:
                check()
            if i and splits.num_val == caps.validation_docs:
                splits.commit()
            fit, stop_reason = caps.train_take(splits.num_train, splits.num_tokens, lens[i:])
            if fit:
                splits.add("train", *_documents(batch, tokens, lens, i, i + fit))
                bar.update(int(lens[i : i + fit].sum()))
            if stop_reason is not None:
                break
        else:  # the source ran out: maybe inside the validation split, maybe exactly at a cap
            check()
            stop_reason = caps.reason_at_end(splits.num_train, splits.num_tokens)
        splits.finish()
    except BaseException:
        splits.abort()
        raise
    # The rows after the source's last document: counted in the stream's last batch (every stream ends with one
    # holding only them), never in the saved progress.
    return stop_reason, batch.tail if stop_reason == SOURCE_EXHAUSTED else np.zeros_like(batch.tail)


def _documents(
    batch: DocumentBatch, tokens: np.ndarray, lens: np.ndarray, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Documents ``start:stop`` of an encoded batch, as ``SplitWriter.add`` takes them: their tokens, lengths,
    counter rows and file indices."""
    first = int(lens[:start].sum())
    rows = slice(start, stop)
    return tokens[first : first + lens[rows].sum()], lens[rows], batch.counts[rows], batch.files[rows]
