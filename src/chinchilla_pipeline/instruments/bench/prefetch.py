"""``chinchilla bench-prefetch``: the trainer's data path with ``speed.prefetch`` off and on, shards not cached.

Writes two sources of random uint16 tokens (``gb`` GB in all, 1 GiB shards) under ``work_dir``, which must be
on a disk, not tmpfs. Rounds alternate (off, on, off, on, ...). Before each one every shard leaves the page
cache (``posix_fadvise(DONTNEED)`` on the closed file; no memory map of it is alive) and is memory-mapped
again, so its reads come from the disk. A step is what ``Run.step`` (train/pretrain.py) does with data: the sampler's
picks (``take``), their batch (read now; or read during the step before by ``BatchPrefetcher``, then
``peek`` and ``ahead`` for the next), and a stand-in for ``compute_ms`` of forward and backward passes
(float32 matmuls on the CPU, or a sleep: a host free while a GPU computes). Prints ms per step of both loops
(best round), their ratio, the read alone (cold and cached: cold much slower shows the cache was dropped)
and the sampler's bookkeeping per step; both loops must read the same batches (a crc32 per batch, in the
step's time: ~1 ms per 0.5 MB).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from ...data.layout import shard_name
from ...data.shards import ShardWriter, open_shard
from ...train.prefetch import BatchPrefetcher
from ...train.sampler import TokenStream, WeightedMultiDatasetSampler

SHARD_TOKENS = 1 << 29  # 512 Mi uint16 tokens = 1 GiB per shard file
CHUNK_TOKENS = 1 << 25  # written 64 MiB at a time
VOCAB = 50_257  # GPT-2's: uint16 shards


def write_sources(root: Path, gb: float, seed: int) -> list[list[Path]]:
    """Two sources of ``gb`` GB of random tokens in all: their shards' paths (fsynced, so clean pages)."""
    rng = np.random.default_rng(seed)
    per_source = int(gb * 1e9 / 2 / 2)  # tokens; 2 bytes each
    sources = []
    for s in range(2):
        paths = []
        for first in range(0, per_source, SHARD_TOKENS):
            paths.append(root / f"source{s}" / shard_name("train", len(paths)))
            paths[-1].parent.mkdir(parents=True, exist_ok=True)
            writer, end = ShardWriter(paths[-1], VOCAB, eot_id=0), min(first + SHARD_TOKENS, per_source)
            for lo in range(first, end, CHUNK_TOKENS):
                n = min(CHUNK_TOKENS, end - lo)
                writer.add(rng.integers(0, VOCAB, n, dtype=np.uint16), np.array([n]))
            writer.close()
        sources.append(paths)
    return sources


def drop_from_cache(paths: list[Path]) -> None:
    """Evict the files' pages (clean ones; mapped pages stay, so call it with no memory map open)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def stand_in_compute(compute_ms: float, kind: str):
    """A function that stands for ``compute_ms`` of forward and backward passes. "matmul": float32 512 x 512
    matmuls (0.27 GFLOP each) on the CPU's cores, as CPU training; "sleep": the host idle while a GPU
    computes (the launches of a step are asynchronous)."""
    if kind == "sleep":
        return lambda: time.sleep(compute_ms / 1e3)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    trials = []
    for _ in range(5):  # the fastest of 5 trials: the machine least disturbed by other jobs
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        trials.append((time.perf_counter() - t0) * 1e3 / 5)
    reps = max(1, round(compute_ms / min(trials)))

    def compute() -> None:
        for _ in range(reps):
            a @ b

    return compute


def timed_round(sources, *, prefetch: bool, steps: int, n: int, context: int, compute, cold: bool = True):
    """ms per step of one round over freshly mapped shards; the batches' crc32s."""
    gc.collect()  # the last round's memory maps closed, so that its pages can leave the cache
    if cold:
        drop_from_cache([p for paths in sources for p in paths])
    streams = [TokenStream([open_shard(p) for p in paths]) for paths in sources]
    sampler = WeightedMultiDatasetSampler(["a", "b"], streams, [2, 1], context=context, seed=1337)
    batches = BatchPrefetcher(torch.device("cpu"))
    crcs = []
    t0 = time.perf_counter()
    for k in range(steps):
        picks = sampler.take(n)
        batch = batches.get(sampler, picks)
        if prefetch and k + 1 < steps:
            batches.ahead(sampler, sampler.peek(n))
        compute()
        crcs.append(zlib.crc32(batch.numpy()))
    ms = (time.perf_counter() - t0) * 1e3 / steps
    batches.close()
    return ms, crcs


def bookkeeping_us(sources, *, n: int, context: int, steps: int = 20) -> tuple[float, float]:
    """Microseconds per step of ``take`` and of ``peek`` (the main thread's share of the data path)."""
    streams = [TokenStream([open_shard(p) for p in paths]) for paths in sources]
    sampler = WeightedMultiDatasetSampler(["a", "b"], streams, [2, 1], context=context, seed=1337)
    sampler.take(n)  # the first call draws each source's permutation (~1 s per 100M windows)
    t0 = time.perf_counter()
    for _ in range(steps):
        sampler.peek(n)
    t1 = time.perf_counter()
    for _ in range(steps):
        sampler.take(n)
    return (time.perf_counter() - t1) * 1e6 / steps, (t1 - t0) * 1e6 / steps


def bench_prefetch(
    work_dir: str | Path | None = None,
    *,
    gb: float = 4.0,
    sequences: int = 64,
    context: int = 1024,
    steps: int = 16,
    rounds: int = 3,
    compute_ms: float = 200.0,
    stand_in: str = "matmul",
    cached: bool = False,
) -> dict[str, float]:
    """Best-of-``rounds`` ms per step without and with the background reader, and with / without.
    ``cached``: the rounds read pages left in the cache (the overhead of the thread where reads are cheap)."""
    compute = stand_in_compute(compute_ms, stand_in)
    off, on = [], []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        t0 = time.perf_counter()
        sources = write_sources(Path(tmp), gb, seed=0)
        write_s = time.perf_counter() - t0
        kw = {"steps": steps, "n": sequences, "context": context}
        t1 = time.perf_counter()
        for _ in range(steps):
            compute()
        compute_alone = (time.perf_counter() - t1) * 1e3 / steps
        read_cold, _ = timed_round(sources, prefetch=False, compute=lambda: None, **kw)
        read_cached, _ = timed_round(sources, prefetch=False, compute=lambda: None, cold=False, **kw)
        digests = set()
        for _ in range(rounds):
            for prefetch, times in ((False, off), (True, on)):
                ms, crcs = timed_round(sources, prefetch=prefetch, compute=compute, cold=not cached, **kw)
                times.append(ms)
                digests.add(tuple(crcs))
        take_us, peek_us = bookkeeping_us(sources, n=sequences, context=context)
    assert len(digests) == 1, "the two loops read different batches"
    out = {"off_ms": min(off), "on_ms": min(on), "read_cold_ms": read_cold, "read_cached_ms": read_cached}
    out["compute_ms"] = compute_alone
    out["ratio"] = out["on_ms"] / out["off_ms"]
    print(
        f"{gb:g} GB of shards in 2 sources (written in {write_s:.0f} s); {sequences} sequences x {context + 1} "
        f"tokens per step; stand-in compute {compute_ms:g} ms ({stand_in}, {torch.get_num_threads()} torch threads); "
        f"best of {rounds} rounds of {steps} steps, page cache {'kept' if cached else 'dropped before each'}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"compute alone:      {compute_alone:8.1f} ms/step")
    print(f"read alone:         {read_cold:8.1f} ms/step cold, {read_cached:.1f} ms/step cached")
    print(f"prefetch off:       {out['off_ms']:8.1f} ms/step (rounds: {', '.join(f'{v:.1f}' for v in off)})")
    print(f"prefetch on:        {out['on_ms']:8.1f} ms/step (rounds: {', '.join(f'{v:.1f}' for v in on)})")
    print(f"on / off:           {out['ratio']:8.3f} (the same {steps} batches in every round)")
    print(f"sampler per step:   take {take_us:,.0f} us, peek {peek_us:,.0f} us (main thread)")
    return out
