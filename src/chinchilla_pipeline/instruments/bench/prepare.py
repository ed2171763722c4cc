"""``chinchilla bench-prepare``: `prepare` against the tokenizer's raw `encode_batch` on the same corpus.

For each encoder (``--encoders gigatoken hf``), prints: raw tokens/s on all cores (texts already in memory), the
pipeline's end-to-end tokens/s (stream, shuffle, tokenize, write shards, checksums), their ratio (target >= 0.85),
and the peak RSS of `prepare` (its process and its tokenizer workers together) for two corpus sizes 4x apart (flat
memory means about the same figure); with both encoders, prepare with gigatoken against raw HF (target >= 3x).
Raw and pipeline alternate for --rounds rounds; the best of each counts, as other jobs on the machine only ever
slow a round down. ``--validation_docs N`` holds out the first N documents (prepare then hashes every document and
drops training copies of them; raw encodes the same training documents): the cost of data/hygiene.py. For
gigatoken, also prepare with the id check off (``id_check.py``: the first 4 MB and 1 document in 1,000 encoded
again with HF) and the CPU seconds of its parts: HF on the first 4 MB, the Unicode-gap scan of every document.

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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now, from /proc."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        pids.append(p)
    return pids


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid``, from /proc (0 once gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (0 once gone)."""
    return sum(rss_bytes(p) for p in process_tree(pid))


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def rss_samples_mb(cfg: Path, tok: Path, out: Path, workers: int | None, encoder: str) -> list[float]:
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
        "--encoder",
        encoder,
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
    vocab_size: int = 6_701,  # every merge the test corpus yields at min_frequency 2 (tokenizer-train refuses more)
    rounds: int = 3,
    workers: int | None = None,
    validation_docs: int = 0,
    encoders: tuple[str, ...] = ("gigatoken", "hf"),
) -> int:
    """``chinchilla bench-prepare``: print prepare's throughput against raw ``encode_batch`` and peak RSS."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # the raw baseline on all cores, whatever the shell set

    from ...data import id_check
    from ...data.config import DatasetConfig
    from ...data.hygiene import ValidationFilter, document_hash
    from ...data.manifest import ManifestSummary
    from ...data.prepare import prepare_dataset
    from ...data.sources import iter_batches
    from ...schema import load_config
    from ...tokenizer.encoders import open_encoder, resolve_encoder
    from ...tokenizer.load import load_tokenizer
    from ...tokenizer.train import train_tokenizer
    from ...tokenizer.unicode_gap import gap_documents

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
        json_text = tok.path.read_text(encoding="utf-8")

        def measure(encoder: str, check: bool = True) -> dict:
            """Best of ``rounds`` alternating raw/prepare rounds: seconds, CPU seconds, tokens."""
            encode = open_encoder(encoder, json_text, parallel=True)
            r = {"raw": [], "pipe": [], "raw_cpu": {}, "pipe_cpu": {}}  # cpu: round's seconds -> CPU seconds
            saved = id_check.CHECK_FIRST_CHARS, id_check.CHECK_EVERY
            if not check:  # only document 0 is checked
                id_check.CHECK_FIRST_CHARS, id_check.CHECK_EVERY = 0, 1 << 62
            try:
                for _ in range(rounds):
                    t0, c0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
                    raw_tokens = sum(
                        int(encode(texts[i : i + cfg.batch_docs])[1].sum())
                        for i in range(0, len(texts), cfg.batch_docs)
                    )
                    r["raw"].append(time.perf_counter() - t0)
                    r["raw_cpu"][r["raw"][-1]] = cpu_s(resource.RUSAGE_SELF) - c0
                    t0, c0, w0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
                    m = prepare_dataset(
                        cfg,
                        cfg_path,
                        d / "tok",
                        d / "out",
                        overwrite=True,
                        workers=workers,
                        progress=False,
                        encoder=encoder,
                    )
                    r["pipe"].append(time.perf_counter() - t0)
                    r["pipe_cpu"][r["pipe"][-1]] = (
                        cpu_s(resource.RUSAGE_SELF) - c0,
                        cpu_s(resource.RUSAGE_CHILDREN) - w0,
                    )
                    train = ManifestSummary.of(m).train
                    assert train.num_tokens - train.num_docs == raw_tokens, (train.num_tokens, raw_tokens)  # no eot
            finally:
                id_check.CHECK_FIRST_CHARS, id_check.CHECK_EVERY = saved
            return {**r, "raw_tokens": raw_tokens, "manifest": m, "sha256": m["splits"]["train"]["shards"]}

        encoders = tuple(resolve_encoder(e) for e in encoders)
        results = {e: measure(e) for e in encoders}
        if "gigatoken" in encoders:
            results["gigatoken, id check off"] = measure("gigatoken", check=False)
            hf = open_encoder("hf", json_text, parallel=False)
            first, num_chars = [], 0
            for t in texts:  # what the workers encode again with HF before the first shard
                if num_chars >= id_check.CHECK_FIRST_CHARS:
                    break
                first.append(t)
                num_chars += len(t)
            c0 = cpu_s(resource.RUSAGE_SELF)
            hf(first)
            first_cpu = cpu_s(resource.RUSAGE_SELF) - c0
            c0 = cpu_s(resource.RUSAGE_SELF)
            num_gap = len(gap_documents(texts))
            gap_cpu = cpu_s(resource.RUSAGE_SELF) - c0
        shards = [r["sha256"] for r in results.values()]
        assert all(x == shards[0] for x in shards), "the encoders wrote different shards"
        m, raw_tokens = results[encoders[0]]["manifest"], results[encoders[0]]["raw_tokens"]

        quarter = max(1, repeat // 4)
        small = rss_samples_mb(write_config(d, "rss1", corpus, quarter), d / "tok", d / "o1", workers, encoders[0])
        large = rss_samples_mb(write_config(d, "rss4", corpus, 4 * quarter), d / "tok", d / "o4", workers, encoders[0])
        half = len(large) // 2

    print(
        f"corpus: {corpus} x{repeat}, {num_bytes / 1e6:.1f} MB of text, {raw_tokens:,} tokens, "
        f"vocabulary {tok.vocab_size:,}, {os.cpu_count()} cores; validation_docs {validation_docs:,} "
        f"({m['hygiene']['dropped_duplicate_of_validation']:,} training documents dropped as their duplicates)"
    )

    def rounds(seconds: list[float]) -> str:
        return ", ".join(f"{raw_tokens / s / 1e6:.3f}" for s in seconds)

    for name, r in results.items():
        raw_s, pipe_s = min(r["raw"]), min(r["pipe"])
        main_cpu, workers_cpu = r["pipe_cpu"][pipe_s]
        print(f"{name}:")
        raw = f"{raw_tokens / raw_s / 1e6:.3f} M tokens/s (rounds: {rounds(r['raw'])})"
        print(f"  raw (all cores, texts in memory): {raw}")
        print(
            f"  prepare end to end (stream, tokenize, write, sha256): {raw_tokens / pipe_s / 1e6:.3f} M tokens/s "
            f"(rounds: {rounds(r['pipe'])}); ratio pipeline / raw {raw_s / pipe_s:.3f}"
        )
        print(
            f"  CPU seconds of the best rounds: raw {r['raw_cpu'][raw_s]:.2f} in {raw_s:.2f} s; prepare "
            f"{main_cpu:.2f} main process + {workers_cpu:.2f} workers in {pipe_s:.2f} s"
        )
    if "gigatoken" in results and "hf" in results:  # the target: prepare at least 3x the raw HF encoder
        fast, hf_raw = min(results["gigatoken"]["pipe"]), min(results["hf"]["raw"])
        print(
            f"prepare with gigatoken against raw HF encode_batch_fast (all cores): {hf_raw / fast:.2f}x in wall time "
            f"(best rounds), {results['hf']['raw_cpu'][hf_raw] / sum(results['gigatoken']['pipe_cpu'][fast]):.2f}x "
            "in CPU seconds"
        )
    if "gigatoken" in results:
        on, off = min(results["gigatoken"]["pipe"]), min(results["gigatoken, id check off"]["pipe"])
        print(
            f"id check: prepare {on:.2f} s with it, {off:.2f} s without ({(on / off - 1) * 100:+.1f}%); HF on the "
            f"first {id_check.CHECK_FIRST_CHARS / 1e6:.0f} MB of text {first_cpu:.2f} CPU-s, 1 document in "
            f"{id_check.CHECK_EVERY:,} after it; Unicode-gap scan of every document {gap_cpu:.2f} CPU-s "
            f"({num_gap:,} documents in the gap, encoded by HF)"
        )
    print(
        f"the reader alone {reader_cpu:.2f} CPU-s ({num_bytes / 1e6 / reader_cpu:.0f} MB of text per CPU-second); "
        f"sha256 of every document (data/hygiene.py) {min(hash_cpu):.3f} CPU-s; the same shards with every encoder"
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
