"""``chinchilla bench-prepare``: `prepare` against the tokenizer's raw `encode_batch` on the same corpus.

Prints: raw encode_batch_fast tokens/s on all cores (texts already in memory), the
pipeline's end-to-end tokens/s (stream, shuffle, tokenize, write shards, checksums),
their ratio (target >= 0.85), and the peak RSS of `prepare` (its process and its
tokenizer workers together) for two corpus sizes 4x apart (flat memory means about
the same figure). Raw and pipeline alternate for --rounds rounds; the best of each
counts, as other jobs on the machine only ever slow a round down. ``--validation_docs N``
holds out the first N documents (prepare then hashes every document and drops training copies
of them; raw encodes the same training documents): the cost of data/hygiene.py.

    make bench-prepare
    chinchilla bench-prepare --corpus data/demo_corpus/books.jsonl.gz --repeat 8
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_config(d: Path, name: str, corpus: str, repeat: int, validation_docs: int = 0) -> Path:
    cfg = {
        "name": name,
        "source": {"type": "local", "format": "json", "data_files": [corpus] * repeat},
        "validation_docs": validation_docs,
        "shuffle_buffer": 10_000,
        "shard_tokens": 50_000_000,
    }
    path = d / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc (0 once gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def rss_samples_mb(cfg: Path, tok: Path, out: Path, workers: int | None) -> list[float]:
    """Run `prepare` in a fresh process; its and its workers' summed RSS every 20 ms (MB)."""
    cmd = [
        sys.executable,
        "-m",
        "chinchilla_pipeline.cli",
        "prepare",
        "--quiet",
        "--config_path",
        str(cfg),
        "--tokenizer",
        str(tok),
        "--out_dir",
        str(out),
    ] + (["--workers", str(workers)] if workers else [])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples = []
    while p.poll() is None:
        samples.append(tree_rss_bytes(p.pid) / 1e6)
        time.sleep(0.02)
    assert p.returncode == 0, "prepare failed"
    return samples


def bench_prepare(
    corpus: str | Path,
    *,
    repeat: int = 96,
    vocab_size: int = 8192,
    rounds: int = 3,
    workers: int | None = None,
    validation_docs: int = 0,
) -> int:
    """``chinchilla bench-prepare``: print prepare's throughput against raw ``encode_batch`` and peak RSS."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # the raw baseline on all cores, whatever the shell set

    from ..schema import load_config
    from ..tokenizer.load import load_tokenizer
    from ..tokenizer.train import train_tokenizer
    from .config import DatasetConfig
    from .hygiene import ValidationFilter, document_hash
    from .manifest import ManifestSummary
    from .prepare import prepare_dataset
    from .sources import iter_batches

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        base = write_config(d, "bench", corpus, 1)
        mix = d / "mix.json"
        mix.write_text(
            json.dumps(
                {"vocab_size": vocab_size, "max_samples": 100_000, "report_docs": 1, "sources": [{"config": str(base)}]}
            )
        )
        train_tokenizer(mix, d / "tok")
        tok = load_tokenizer(d / "tok")

        cfg_path = write_config(d, "pipeline", corpus, repeat, validation_docs)
        cfg = load_config(DatasetConfig, cfg_path)
        hygiene = ValidationFilter(cfg.validation_docs)  # raw encodes the training documents prepare writes
        texts = [t for batch in hygiene.split(iter_batches(cfg, cfg_path)) for t in batch.texts]
        texts = texts[hygiene.num_validation :]
        num_bytes = sum(len(t.encode()) for t in texts)
        c0 = cpu_s(resource.RUSAGE_SELF)
        for _ in iter_batches(cfg, cfg_path):  # the reader alone, warm (the pass above loaded the modules)
            pass
        reader_cpu = cpu_s(resource.RUSAGE_SELF) - c0
        hash_cpu = []  # what the validation filter adds to the main process once validation_docs > 0
        for _ in range(3):
            c0 = cpu_s(resource.RUSAGE_SELF)
            for t in texts:
                document_hash(t)
            hash_cpu.append(cpu_s(resource.RUSAGE_SELF) - c0)
        raw_rounds, pipe_rounds, raw_cpu, pipe_cpu = [], [], {}, {}  # cpu: round's seconds -> CPU seconds
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
            raw_tokens = 0
            for i in range(0, len(texts), cfg.batch_docs):
                raw_tokens += sum(
                    len(e.ids)
                    for e in tok.tokenizer.encode_batch_fast(texts[i : i + cfg.batch_docs], add_special_tokens=False)
                )
            raw_rounds.append(time.perf_counter() - t0)
            raw_cpu[raw_rounds[-1]] = cpu_s(resource.RUSAGE_SELF) - c0

            t0, c0, w0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
            m = prepare_dataset(cfg, cfg_path, d / "tok", d / "out", overwrite=True, workers=workers, progress=False)
            pipe_rounds.append(time.perf_counter() - t0)
            pipe_cpu[pipe_rounds[-1]] = (cpu_s(resource.RUSAGE_SELF) - c0, cpu_s(resource.RUSAGE_CHILDREN) - w0)
            train = ManifestSummary.of(m).train
            pipe_tokens = train.num_tokens - train.num_docs  # no end-of-text
            assert pipe_tokens == raw_tokens, (pipe_tokens, raw_tokens)
        del texts
        raw_s, pipe_s = min(raw_rounds), min(pipe_rounds)

        quarter = max(1, repeat // 4)
        small = rss_samples_mb(write_config(d, "rss1", corpus, quarter), d / "tok", d / "o1", workers)
        large = rss_samples_mb(write_config(d, "rss4", corpus, 4 * quarter), d / "tok", d / "o4", workers)
        half = len(large) // 2

    print(
        f"corpus: {corpus} x{repeat}, {num_bytes / 1e6:.1f} MB of text, {raw_tokens:,} tokens, "
        f"vocabulary {tok.vocab_size:,}, {os.cpu_count()} cores; validation_docs {validation_docs:,} "
        f"({m['hygiene']['dropped_duplicate_of_validation']:,} training documents dropped as their duplicates)"
    )

    def rounds(seconds: list[float]) -> str:
        return ", ".join(f"{raw_tokens / s / 1e6:.3f}" for s in seconds)

    print(
        f"raw encode_batch_fast (all cores, texts in memory): {raw_tokens / raw_s / 1e6:.3f} M tokens/s "
        f"(rounds: {rounds(raw_rounds)})"
    )
    print(
        f"prepare end to end (stream, tokenize, write, sha256):  {pipe_tokens / pipe_s / 1e6:.3f} M tokens/s "
        f"(rounds: {rounds(pipe_rounds)})"
    )
    print(f"ratio pipeline / raw: {raw_s / pipe_s:.3f} (target >= 0.85)")
    main_cpu, workers_cpu = pipe_cpu[pipe_s]
    print(
        f"CPU seconds of the best rounds: raw {raw_cpu[raw_s]:.2f} (tokenizer threads) in {raw_s:.2f} s; prepare "
        f"{main_cpu:.2f} main process + {workers_cpu:.2f} workers in {pipe_s:.2f} s; the reader alone "
        f"{reader_cpu:.2f} ({num_bytes / 1e6 / reader_cpu:.0f} MB of text per CPU-second); sha256 of every "
        f"document (data/hygiene.py) {min(hash_cpu):.3f}"
    )
    print(
        f"peak RSS of prepare and its workers: {max(small):.0f} MB at x{quarter}, {max(large):.0f} MB at "
        f"x{4 * quarter} (4x the data): ratio {max(large) / max(small):.2f}"
    )
    print(
        f"  at x{4 * quarter}: peak {max(large[:half]):.0f} MB in the run's first half, "
        f"{max(large[half:]):.0f} MB in its second half"
    )
    return 0
