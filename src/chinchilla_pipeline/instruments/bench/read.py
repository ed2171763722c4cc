"""``chinchilla bench-read``: how fast a config's stream is read, with nothing tokenized.

Prints rows, documents kept, seconds, rows/s and MB/s of the source files (compressed, and uncompressed for
gzip), for the config as it is and, when it samples (``sample_rate`` < 1), with the whole source kept: the
cost of reading a source through (docs/real-data.md). Run it on local copies through ``CHINCHILLA_HUB_MIRROR``:

    CHINCHILLA_HUB_MIRROR=/tmp/hub HF_HUB_OFFLINE=1 chinchilla bench-read \\
        --config_path config/datasets/phase_b_forums_500m.json
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from ...data.config import DatasetConfig
from ...data.sources import iter_batches


def _read(cfg: DatasetConfig, config_path: str | Path) -> tuple[int, int, float, list[str]]:
    """Rows, documents and seconds of one pass over ``cfg``'s stream, and the files it named."""
    start = time.perf_counter()
    stream = iter_batches(cfg, config_path)
    rows = docs = 0
    for batch in stream:
        docs += len(batch.texts)
        rows += int(batch.counts[:, 0].sum() + batch.tail[0])
    return rows, docs, time.perf_counter() - start, stream.files


def _uncompressed(path: Path) -> int:
    """Bytes of ``path`` once decompressed (gzip read through in 16 MB blocks: a 7 GB Reddit year never in memory)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    total = 0
    with gzip.open(path) as f:
        while block := f.read(16 << 20):
            total += len(block)
    return total


def bench_read(cfg: DatasetConfig, config_path: str | Path, root: Path | None) -> int:
    variants = [("as configured", cfg)]
    if cfg.sample_rate < 1:
        variants.append(("whole source", cfg.model_copy(update={"sample_rate": 1.0, "shuffle_buffer": 10_000})))
    for label, variant in variants:
        rows, docs, seconds, files = _read(variant, config_path)
        paths = [Path(root or ".") / f for f in files]
        size = sum(p.stat().st_size for p in paths if p.is_file())
        raw = sum(_uncompressed(p) for p in paths if p.is_file())
        print(
            f"{cfg.name} ({label}): {rows:,} rows, {docs:,} documents kept in {seconds:.1f} s: {rows / seconds:,.0f} "
            f"rows/s, {size / seconds / 1e6:.1f} MB/s of files ({size / 1e6:,.0f} MB), {raw / seconds / 1e6:.1f} MB/s "
            f"uncompressed ({raw / 1e6:,.0f} MB)"
        )
    return 0
