"""Shared fixtures: the real test corpus, a tokenizer trained on it, dataset configs in tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "pydoc_topics.jsonl.gz"  # 789 real documents


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


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A 1,024-token byte-level BPE trained on the test corpus (session-wide, ~3 s)."""
    from chinchilla_pipeline.tokenizer.train import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    ds_cfg = write_dataset_config(d, validation_docs=20)
    mix = d / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 1024, "max_samples": 600, "report_docs": 20, "sources": [{"config": str(ds_cfg)}]})
    )
    train_tokenizer(mix, d / "tokenizer")
    return d / "tokenizer"
