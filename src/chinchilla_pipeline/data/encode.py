"""Tokenize batches of documents in worker processes, results in submission order.

Each worker runs the tokenizer single-threaded and turns its ids into numpy
there, so everything per batch (encoding, the Python id lists, the conversion)
runs in parallel; with the tokenizer's own thread pool, only the encoding
would, and the rest would stay serial on the main thread. The output depends
only on the documents and the tokenizer, never on the number of workers.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")
_worker: dict = {}  # the tokenizer of this worker process


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encode_texts(tokenizer, eot_id: int, texts: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of ``texts`` concatenated, each document preceded by ``eot_id``; and the documents' lengths."""
    ids = [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) + 1
    flat: list[int] = []
    for doc in ids:
        flat.append(eot_id)
        flat.extend(doc)
    return np.array(flat, dtype=dtype), lens


def _init_worker(tokenizer_json: str, eot_id: int, dtype: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers are the parallelism
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    from tokenizers import Tokenizer

    _worker.update(tokenizer=Tokenizer.from_str(tokenizer_json), eot_id=eot_id, dtype=np.dtype(dtype))


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return encode_texts(_worker["tokenizer"], _worker["eot_id"], texts, _worker["dtype"])


class EncoderPool:
    """``workers`` processes holding the tokenizer of ``tokenizer_json`` (its file's text)."""

    def __init__(self, tokenizer_json: str, eot_id: int, dtype: np.dtype, workers: int):
        import multiprocessing

        self.workers = workers
        # spawn: the parent holds threads (the reader's, Arrow's), which fork would copy half-way.
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker,
                                         initargs=(tokenizer_json, eot_id, np.dtype(dtype).str))

    def map(self, items: Iterator[T], texts: Callable[[T], list[str]],
            ahead: int = 2) -> Iterator[tuple[T, np.ndarray, np.ndarray]]:
        """``(item, tokens, lengths)`` for each item, in order; ``ahead`` batches per worker in flight.

        Items are read only as results are taken, so memory stays at ``workers * ahead`` batches.
        """
        pending: deque = deque()
        items = iter(items)

        def fill() -> None:
            while len(pending) < self.workers * ahead and (item := next(items, None)) is not None:
                pending.append((item, self._pool.submit(_encode_in_worker, texts(item))))

        fill()
        while pending:
            item, future = pending.popleft()
            tokens, lens = future.result()
            fill()  # keep the workers busy while the caller writes this batch
            yield item, tokens, lens

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
