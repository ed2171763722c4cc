"""The prep chain's stages alone, on 8 short texts, without worker processes (the whole chain: test_prepare.py)."""

import numpy as np
from tqdm import tqdm

from chinchilla_pipeline.data.caps import Caps
from chinchilla_pipeline.data.chain import cap_and_write, skip_done
from chinchilla_pipeline.data.hygiene import HYGIENE_COUNTERS, ValidationFilter
from chinchilla_pipeline.data.sources import DocumentBatch
from chinchilla_pipeline.data.split_writer import Progress, SplitWriter

TEXTS = [f"document {i}" for i in range(8)]


def batches(texts: list[str], size: int = 3, tail: int = 5) -> list[DocumentBatch]:
    """``texts`` in batches of ``size``, one counter column (1 per document), then the stream's tail batch."""
    out = [
        DocumentBatch(
            texts[i : i + size],
            np.ones((len(texts[i : i + size]), 1), np.int64),
            np.zeros(1, np.int64),
            np.zeros(len(texts[i : i + size]), np.int64),
        )
        for i in range(0, len(texts), size)
    ]
    return out + [DocumentBatch([], np.zeros((0, 1), np.int64), np.array([tail]), np.zeros(0, np.int64))]


def encoded(stream):
    """What ``EncoderPool.map`` yields: each document as end-of-text (0) and one id per character."""
    for b in stream:
        docs = [np.array([0, *map(ord, t)], np.uint16) for t in b.texts]
        lens = np.array([d.size for d in docs], np.int64)
        yield b, np.concatenate(docs) if docs else np.zeros(0, np.uint16), lens


def test_skip_done_drops_the_first_documents_across_batches_and_keeps_the_tail():
    out = list(skip_done(iter(batches(TEXTS)), 4))
    assert [b.texts for b in out] == [[], TEXTS[4:6], TEXTS[6:8], []]
    assert [len(b.counts) for b in out] == [0, 2, 2, 0] and out[-1].tail.tolist() == [5]


def test_cap_and_write_checks_the_validation_split_before_committing_it(tmp_path):
    columns = 1 + len(HYGIENE_COUNTERS)
    splits = SplitWriter(
        tmp_path,
        Progress("t", counts=[0] * columns, per_file={"validation": [0], "train": [0]}),
        vocab_size=256,
        eot_id=0,
        shard_tokens=10_000,
    )
    hygiene = ValidationFilter(3)
    committed = []  # the shards on disk at each check
    check = lambda: committed.append(sorted(p.name for p in tmp_path.glob("*.bin")))  # noqa: E731
    stream = encoded(hygiene.split(iter(batches(TEXTS))))
    reason, tail = cap_and_write(stream, splits, Caps(4, None, 3), hygiene, check, tqdm(disable=True))
    assert reason == "max_samples" and tail.tolist() == [0] * columns  # stopped by a cap: no tail counted
    assert committed[0] == [] and (splits.num_val, splits.num_train) == (3, 4)
    assert [s["num_docs"] for s in splits.progress.shards["validation"]] == [3]
