"""Where ``prepare``'s CPU goes, stage by stage, on one dataset config: each stage run alone, in this process.

Prints CPU seconds (``getrusage``: this process and its threads; the least of ``--rounds`` runs, as other jobs
only ever add to a round; the stream's first opening, once, as a prepare process pays it) and wall seconds for:
decompressing the files, pyarrow's JSON parser on them, the bad-record scan (``records.py``: both again, before
the stream opens), opening the stream, the reader without and with the shuffle buffer (``sources.iter_batches``),
pickling the texts to the workers, one worker's start-up (a fresh process: imports, both tokenizers, the first
batch) and writing as many tokens as a shard with its sha256.
CPU seconds, not wall time, are the measure on a shared machine.

    python -m chinchilla_pipeline.instruments.bench.stages --config_path CONFIG --tokenizer TOKENIZER_DIR
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

# One worker's start-up in a fresh interpreter, as ``encode._init_worker`` does it; prints its CPU seconds.
WORKER_START = """
import resource, sys
from chinchilla_pipeline.tokenizer.encoders import open_encoder
text = open(sys.argv[1], encoding="utf-8").read()
encode = open_encoder("gigatoken", text, parallel=False)
open_encoder("hf", text, parallel=False)
encode(["a first batch"])
u = resource.getrusage(resource.RUSAGE_SELF)
print(u.ru_utime + u.ru_stime)
"""


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def stage(name: str, fn: Callable[[], object], rounds: int) -> object:
    """Run ``fn`` ``rounds`` times; print the least CPU seconds and that round's wall seconds."""
    best, out = None, None
    for _ in range(rounds):
        c, t = _cpu(), time.perf_counter()
        out = fn()
        c, t = _cpu() - c, time.perf_counter() - t
        best = (c, t) if best is None or c < best[0] else best
    print(f"  {name:<58} {best[0]:6.2f} CPU-s {best[1]:6.2f} s", flush=True)
    return out


def bench_stages(config_path: Path, tokenizer_dir: Path, rounds: int) -> int:
    import pyarrow.json as paj

    from ...atomic import sha256_file
    from ...data import records, sources
    from ...data.config import DatasetConfig
    from ...data.encode import CHUNK_CHARS, _chunks
    from ...data.files import resolve_data_files
    from ...data.layout import shard_name
    from ...data.shards import ShardWriter, token_dtype
    from ...schema import load_config
    from ...tokenizer.load import load_tokenizer

    cfg = load_config(DatasetConfig, config_path)
    files = resolve_data_files(cfg, config_path)
    distinct = sorted(set(files))
    c0 = _cpu()
    import datasets  # noqa: F401 - timed: the reader's library, once per process

    print(f"{config_path}: {len(files)} files ({len(distinct)} distinct); import datasets {_cpu() - c0:.2f} CPU-s")
    text: dict[str, bytes] = {}
    stage("decompress (gzip, distinct files)", lambda: text.update((f, gzip.open(f).read()) for f in distinct), rounds)
    num_mb = sum(len(text[f]) for f in files) / 1e6
    stage(
        "pyarrow JSON parser (distinct files, 10 MB blocks)",
        lambda: [
            paj.read_json(io.BytesIO(text[f]), read_options=paj.ReadOptions(block_size=10 << 20)) for f in distinct
        ],
        rounds,
    )
    text.clear()

    def scan() -> None:
        records._CACHE.clear()
        records.check_local_files("json", files, config_path)

    stage("bad-record scan (records.py: decompress + parse again)", scan, rounds)
    # Once: what a prepare process pays (a second opening finds the modules datasets imports loaded).
    stage(
        "open the stream, first time (sources.document_dataset)", lambda: sources.document_dataset(cfg, config_path), 1
    )
    unshuffled = cfg.model_copy(update={"shuffle_buffer": 0})
    stage(
        "reader, no shuffle buffer",
        lambda: sum(len(b.texts) for b in sources.iter_batches(unshuffled, config_path)),
        rounds,
    )
    texts: list[str] = []

    def read() -> None:
        texts.clear()
        for batch in sources.iter_batches(cfg, config_path):
            texts.extend(batch.texts)

    stage(f"reader, shuffle buffer {cfg.shuffle_buffer:,} documents (as prepare)", read, rounds)
    stage(
        "pickle the texts in 1M-character chunks (to the workers)",
        lambda: [pickle.dumps(c) for c in _chunks(texts, CHUNK_CHARS)],
        rounds,
    )
    tok = load_tokenizer(tokenizer_dir)
    worker = []
    for _ in range(rounds):
        run = subprocess.run(
            [sys.executable, "-c", WORKER_START, str(tok.path)], capture_output=True, text=True, check=True
        )
        worker.append(float(run.stdout.split()[-1]))
    print(f"  {'one worker start-up (fresh process: imports, tokenizers, awkward)':<58} {min(worker):6.2f} CPU-s")
    num_docs = int(num_mb * 1e6 / 4.4) // 128  # ~4.4 bytes of text per token (the test corpus: 44.6 MB, 10.05M tokens)
    lens = np.full(num_docs, 128, dtype=np.int64)
    tokens = np.random.default_rng(0).integers(0, tok.vocab_size, num_docs * 128).astype(token_dtype(tok.vocab_size))

    def write() -> None:
        with tempfile.TemporaryDirectory() as d:
            w = ShardWriter(Path(d) / shard_name("train", 0), tok.vocab_size, tok.eot_id)
            for i in range(0, lens.size, 8_192):  # batches of ~1M tokens, as the pool yields them
                w.add(tokens[i * 128 : (i + 8_192) * 128], lens[i : i + 8_192])
            w.close()
            sha256_file(w.bin_path)

    stage(f"write {lens.sum() / 1e6:.1f}M tokens as a shard, then its sha256", write, rounds)
    print(f"  ({num_mb:.1f} MB of text, {len(texts):,} documents)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench-stages", description=__doc__.splitlines()[0])
    p.add_argument("--config_path", type=Path, required=True, help="a dataset config (local JSON-lines files)")
    p.add_argument("--tokenizer", type=Path, required=True, help="a tokenizer directory")
    p.add_argument("--rounds", type=int, default=2, help="runs of each stage; the least CPU counts")
    a = p.parse_args(argv)
    from ...errors import EXIT_USER_ERROR, UserError

    try:
        return bench_stages(a.config_path, a.tokenizer, a.rounds)
    except UserError as err:  # a config or tokenizer that does not load: one line, as the CLI prints it
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
