"""Shared fixtures: the real test corpus, a tokenizer trained on it, dataset configs in tmp dirs, corrupt parquet."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "pydoc_topics.jsonl.gz"  # 789 real documents
TOKENIZER_SOURCE = "tokenizer_text"  # the dataset the session tokenizer (``tokenizer_dir``) read
CLI_MODULE = ["-m", "chinchilla_pipeline.cli"]  # what python (or torchrun) runs as the `chinchilla` command
CLI = [sys.executable, *CLI_MODULE]  # the `chinchilla` command, in a fresh process
CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}  # one torch thread per process
# This process too (and what it starts), set before any test module imports torch: on 2 cores shared with other
# jobs, torch's 2 OpenMP threads wait on each other at every op of the tiny models (tests/test_train.py: 40 s
# under load with 2 threads, 1 s with one).
os.environ["OMP_NUM_THREADS"] = "1"
if "torch" in sys.modules:  # imported already (a plugin): the variable came too late for it
    sys.modules["torch"].set_num_threads(1)


def prepare_args(cfg: Path, tok: Path, out: Path, *extra: str) -> list[str]:
    """``chinchilla prepare`` arguments, quiet: ``cfg`` tokenized with ``tok`` into ``out``."""
    return ["prepare", "--quiet", "--config_path", str(cfg), "--tokenizer", str(tok), "--out_dir", str(out), *extra]


def write_dataset_config(directory: Path, name: str = "topics", **fields) -> Path:
    """A dataset config over the test corpus, with ``fields`` overriding the defaults."""
    cfg = {
        "name": name,
        "source": {"type": "local", "format": "json", "data_files": [str(CORPUS)]},
        "text_template": "{title}\n\n{text}",
        "validation_docs": 20,
        "shuffle_buffer": 200,
        "shard_tokens": 10_000,
    }
    cfg.update(fields)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def corrupt_row_group(path: Path, group: int, column: str = "text") -> None:
    """Flip up to 2 KB of the compressed pages of ``column`` in row group ``group``: snappy cannot decode them."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(group).column(meta.schema.to_arrow_schema().get_field_index(column))
    first = chunk.dictionary_page_offset or chunk.data_page_offset  # a dictionary page (the texts) comes first
    start, end = first + 64, min(first + 64 + 2048, first + chunk.total_compressed_size - 16)
    data = bytearray(path.read_bytes())
    data[start:end] = bytes(b ^ 0xFF for b in data[start:end])
    path.write_bytes(bytes(data))


@pytest.fixture
def short_parquet_shutdown(monkeypatch):
    """datasets sleeps 5 s when a parquet stream closes (apache/arrow#45214); 0.1 s is enough for tiny files."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.1)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A 1,024-token byte-level BPE trained on the test corpus (session-wide, ~3 s)."""
    from chinchilla_pipeline.tokenizer.train import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    # its own dataset name: the tests prepare "topics" with other configs, which prepare refuses for a
    # tokenizer that read "topics" (another validation split: check_tokenizer_held_out)
    ds_cfg = write_dataset_config(d, TOKENIZER_SOURCE, validation_docs=20)
    mix = d / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 1024, "max_samples": 600, "report_docs": 20, "sources": [{"config": str(ds_cfg)}]})
    )
    train_tokenizer(mix, d / "tokenizer")
    return d / "tokenizer"
