"""A tiny real-text run for the export and generation tests.

The test corpus (CPython's help topics) tokenized with the session's real
1,024-token BPE (conftest ``tokenizer_dir``) into two domains, then a 2-layer
GPT trained on them for a few steps by the real trainer. The model pads its
vocabulary (1,024 -> 1,056 rows) so that exports must slice it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from chinchilla_pipeline.data.manifest import write_token_dataset
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from chinchilla_pipeline.tokenizer.token_bytes import token_byte_lengths
from chinchilla_pipeline.train.pretrain import run_pretrain
from conftest import CORPUS
from trainkit import write_curriculum, write_model

PAD_MULTIPLE = 96  # 1,024 -> 1,056 embedding rows: 32 padding rows that an export must drop


def corpus_texts() -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return [f"{d['title']}\n\n{d['text']}" for d in map(json.loads, f)]


def make_text_run(
    root: Path,
    tokenizer_dir: Path,
    *,
    steps: int = 16,
    phases: tuple[str, ...] = ("all",),
    model_fields: dict[str, Any] | None = None,
    **options,
) -> dict[str, Path]:
    """Train a two-phase run (``wiki`` then ``forums``) under ``root``; returns its paths.

    ``model``: the model config it was trained with, written in ``root`` (``model_fields`` override
    trainkit's tiny GPT, e.g. ``{"architecture": "nanochat"}``). ``phases``: one ``run_pretrain`` call
    per entry ("all", or a phase name); ``options`` go to each call.
    """
    tok = load_tokenizer(tokenizer_dir)
    texts = corpus_texts()
    data = root / "data"
    for k, name in enumerate(("wiki", "forums")):
        docs = [
            np.array([tok.eot_id] + e.ids, dtype=np.int64)
            for e in tok.tokenizer.encode_batch(texts[k::2][:120], add_special_tokens=False)
        ]
        write_token_dataset(
            data,
            name,
            {"train": docs[4:], "validation": docs[:4]},
            vocab_size=tok.vocab_size,
            eot_id=tok.eot_id,
            tokenizer_sha256=tok.sha256,
            token_bytes=token_byte_lengths(tok),
        )
    model = write_model(root, vocab_size=tok.vocab_size, pad_vocab_multiple=PAD_MULTIPLE, **(model_fields or {}))
    cfg = write_curriculum(
        root,
        [("a", {"wiki": 1}), ("b", {"forums": 1})],
        steps=steps,
        name="text",
        eval={"interval_steps": 8, "tokens_per_source": 128},
    )
    for phase in phases:
        assert (
            run_pretrain(cfg, out_dir=root / "runs", device="cpu", phase=None if phase == "all" else phase, **options)
            == 0
        )
    return {"run_dir": root / "runs" / "text", "model": model, "tokenizer": tokenizer_dir, "config": cfg}
