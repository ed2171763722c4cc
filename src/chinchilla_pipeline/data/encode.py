"""Tokenize batches of documents in worker processes, results in submission order.

Each worker runs the tokenizer single-threaded and turns its ids into numpy
there, so everything per batch (encoding, the Python id lists, the conversion)
runs in parallel; with the tokenizer's own thread pool, only the encoding
would, and the rest would stay serial on the main thread. The output depends
only on the documents and the tokenizer, never on the number of workers or the
encoder (``tokenizer/encoders.py``): with gigatoken, the workers also encode a sample
with HF tokenizers and compare the ids (``id_check.py``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, TypeVar

import numpy as np

from ..tokenizer.encoders import BatchEncoder, open_encoder
from .id_check import CheckSampler, Difference, IdMismatch, first_difference

T = TypeVar("T")
# Characters per worker task (~0.3M tokens, ~0.3 s of one core): fine enough to spread a batch of whole
# books over all workers, coarse enough that sending it costs little; bounds a worker's transient memory.
CHUNK_CHARS = 1 << 20
_worker: dict = {}  # the tokenizer of this worker process


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encode_texts(encode: BatchEncoder, eot_id: int, texts: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of ``texts`` concatenated, each document preceded by ``eot_id``; and the documents' lengths."""
    return _with_eot(*encode(texts), eot_id, dtype)


def _with_eot(ids: np.ndarray, lens: np.ndarray, eot_id: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    starts = np.cumsum(lens) - lens  # where each document's ids begin in ``ids``
    return np.insert(ids, starts, eot_id).astype(dtype, copy=False), lens + 1


def _chunks(texts: list[str], max_chars: int) -> Iterator[list[str]]:
    """Consecutive runs of ``texts`` of at most ``max_chars`` characters (a longer text alone)."""
    start, size = 0, 0
    for i, text in enumerate(texts):
        if size and size + len(text) > max_chars:
            yield texts[start:i]
            start, size = i, 0
        size += len(text)
    if start < len(texts):
        yield texts[start:]


def _exit_with_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """End this worker once its parent is gone (a ``kill -9`` of ``prepare`` leaves no orphans)."""
    while os.getppid() == parent_pid:
        time.sleep(every_s)
    os._exit(1)


def _init_worker(tokenizer_json: str, eot_id: int, dtype: str, parent_pid: int, encoder: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    # One thread per worker: the workers are the parallelism.
    _worker.update(encode=open_encoder(encoder, tokenizer_json, parallel=False), eot_id=eot_id, dtype=np.dtype(dtype))
    if encoder != "hf":  # the reference the sample is checked against
        _worker["reference"] = open_encoder("hf", tokenizer_json, parallel=False)


def _encode_in_worker(texts: list[str], check: list[int]) -> tuple[np.ndarray, np.ndarray, Difference | None]:
    """The chunk's tokens and lengths, and the first difference from HF among documents ``check``."""
    ids, lens = _worker["encode"](texts)
    diff = None
    if check and "reference" in _worker:
        diff = first_difference(ids, lens, check, *_worker["reference"]([texts[i] for i in check]))
    return (*_with_eot(ids, lens, _worker["eot_id"], _worker["dtype"]), diff)


class EncoderPool:
    """``workers`` processes holding the tokenizer of ``tokenizer_json`` (its file's text) as ``encoder``."""

    def __init__(self, tokenizer_json: str, eot_id: int, dtype: np.dtype, workers: int, encoder: str = "hf"):
        import multiprocessing

        self.workers, self.dtype, self.encoder = workers, np.dtype(dtype), encoder
        # spawn: the parent holds threads (the reader's, Arrow's), which fork would copy half-way.
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(tokenizer_json, eot_id, np.dtype(dtype).str, os.getpid(), encoder),
        )
        for _ in range(workers):  # start the workers now: they load while the caller opens its source
            self._pool.submit(os.getpid)

    def map(
        self,
        items: Iterator[T],
        texts: Callable[[T], list[str]],
        ahead: int = 2,
        chunk_chars: int = CHUNK_CHARS,
        first_position: int = 0,
    ) -> Iterator[tuple[T, np.ndarray, np.ndarray]]:
        """``(item, tokens, lengths)`` for each item, in order.

        An item's texts go to the workers in chunks of about ``chunk_chars``, at most ``ahead``
        chunks per worker in flight beyond the item being submitted; items are read only as
        results are taken, so memory stays flat. The first document is at ``first_position`` of
        the stream (what a resume skipped); a sampled document whose ids differ from HF's raises
        ``IdMismatch`` before its item is yielded.
        """
        pending: deque = deque()  # (item, [(stream position of the chunk's first document, future)])
        in_flight = 0
        items = iter(items)
        sampler = CheckSampler(first_position)

        def fill() -> None:
            nonlocal in_flight
            while in_flight < self.workers * ahead and (item := next(items, None)) is not None:
                futures = []
                for chunk in _chunks(texts(item), chunk_chars):
                    position, check = sampler.take(chunk)
                    futures.append((position, self._pool.submit(_encode_in_worker, chunk, check)))
                pending.append((item, futures))
                in_flight += len(futures)

        fill()
        while pending:
            item, futures = pending.popleft()
            parts = [(position, f.result()) for position, f in futures]
            for position, (_, _, diff) in parts:
                if diff is not None:
                    raise IdMismatch(position + diff.doc, diff, self.encoder)
            in_flight -= len(futures)
            fill()  # keep the workers busy while the caller writes this item
            if not parts:
                yield item, np.zeros(0, dtype=self.dtype), np.zeros(0, dtype=np.int64)
            else:
                yield item, np.concatenate([p[1][0] for p in parts]), np.concatenate([p[1][1] for p in parts])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
