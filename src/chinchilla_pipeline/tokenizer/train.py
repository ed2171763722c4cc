"""Train a byte-level BPE (Hugging Face ``tokenizers``) on a weighted mix of sources.

Each source of ``tokenizer_mix.json`` points at a dataset config and is read
through the same stream as ``prepare`` (shuffle with the dataset's seed). Per
source, the first ``report_docs`` documents of the stream are held out for the
report; they are the first documents of the dataset's own validation split
whenever ``report_docs <= validation_docs`` (200 <= 1,000 by default). The
tokenizer then trains on the documents that follow, which include the rest of
that validation split (documents 200 to 999 of the shipped configs): the model
is measured partly on text whose merges the tokenizer learnt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from ..atomic import fsync_dir, write_json
from ..data import hub
from ..data.config import DatasetConfig, HubSource, TokenizerMixConfig
from ..data.sources import iter_documents, open_sources
from ..errors import UserError
from ..schema import load_config
from .load import load_tokenizer
from .report import REPORT_FILE, tokenizer_report

# What a tokenizer directory holds: transformers' save_pretrained files and the report.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", REPORT_FILE}

log = logging.getLogger(__name__)


def load_mix(mix_path: str | Path, max_samples: int | None = None) -> tuple[TokenizerMixConfig, list[DatasetConfig]]:
    """The mix config and each source's dataset config (a missing one names the mix's field)."""
    mix = load_config(TokenizerMixConfig, mix_path, {"max_samples": max_samples})
    configs = []
    for i, src in enumerate(mix.sources):
        if not Path(src.config).is_file():
            raise UserError(f"dataset config {src.config!r} not found", path=mix_path, field=f"sources.{i}.config")
        configs.append(load_config(DatasetConfig, src.config))
    return mix, configs


def _split_stream(cfg: DatasetConfig, path: str, num_held: int, num_train: int,
                  max_chars: int) -> tuple[list[str], Iterator[str]]:
    """(held-out documents, iterator over the next ``num_train`` documents, truncated)."""
    held: list[str] = []

    def train_docs() -> Iterator[str]:
        seen = 0
        for batch in iter_documents(cfg, path):
            for doc in batch:
                if len(held) < num_held:
                    held.append(doc)
                    continue
                if seen == num_train:
                    return
                seen += 1
                yield doc[:max_chars]

    return held, train_docs()


def train_tokenizer(mix_path: str | Path, out_dir: str | Path, *, max_samples: int | None = None,
                    overwrite: bool = False) -> dict:
    """Train, save (``tokenizer.json`` + transformers files) atomically, return the report."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    if (out_dir / REPORT_FILE).is_file() and not overwrite:
        log.info("tokenizer already trained at %s (use --overwrite to retrain)", out_dir)
        return tokenizer_report_cached(out_dir)
    # The finished tokenizer replaces the whole directory: refuse one holding anything else.
    others = sorted(set(os.listdir(out_dir)) - TOKENIZER_FILES) if out_dir.is_dir() else []
    if others:
        raise UserError(f"{out_dir} holds other files ({', '.join(others[:3])}); the tokenizer replaces the "
                        "whole directory: choose an empty or tokenizer directory", field="--out_dir")
    mix, configs = load_mix(mix_path, max_samples)
    open_sources([(cfg, src.config) for src, cfg in zip(mix.sources, configs)])  # a broken source fails now
    pins = {cfg.name: pin for src, cfg in zip(mix.sources, configs)  # Hub commits read, datasets version
            if isinstance(cfg.source, HubSource) and (pin := hub.pin(cfg.source, src.config, cfg.name))}
    counts = mix.samples_per_source()
    held_out: dict[str, list[str]] = {}
    trained: dict[str, int] = {}

    def corpus() -> Iterator[str]:
        for src, cfg, n in zip(mix.sources, configs, counts):
            held, docs = _split_stream(cfg, src.config, mix.report_docs, n, mix.max_chars_per_doc)
            got = 0
            for doc in docs:
                got += 1
                yield doc
            held_out[cfg.name], trained[cfg.name] = held, got
            if got < n:
                log.warning("%s: only %d documents for the tokenizer (asked %d)", cfg.name, got, n)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=mix.vocab_size, min_frequency=mix.min_frequency,
                                  special_tokens=[mix.eot_token], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bar = tqdm(corpus(), total=sum(counts), unit="doc", desc="tokenizer", mininterval=2)
    tok.train_from_iterator(bar, trainer=trainer, length=sum(counts))
    bar.close()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp.", dir=out_dir.parent))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=mix.eot_token, eos_token=mix.eot_token,
                                   unk_token=mix.eot_token)
    fast.save_pretrained(str(tmp))
    loaded = load_tokenizer(tmp, mix.eot_token)
    report = tokenizer_report(loaded, held_out, trained, mix_config=mix.model_dump(by_alias=True),
                              mix_path=str(mix_path))
    report["hub_sources"] = pins
    write_json(tmp / REPORT_FILE, report)  # written last: its presence marks a finished tokenizer
    for name in os.listdir(tmp):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    fsync_dir(out_dir.parent)
    report["sha256"] = load_tokenizer(out_dir, mix.eot_token).sha256
    return report


def _remove_stale_tmp_dirs(out_dir: Path) -> None:
    """Delete the ``.<name>.tmp.*`` directories that killed trainings of ``out_dir`` left beside it."""
    for p in out_dir.parent.glob(f".{out_dir.name}.tmp.*"):
        shutil.rmtree(p, ignore_errors=True)


def tokenizer_report_cached(out_dir: Path) -> dict:
    """The report of a tokenizer trained earlier (its presence marks the tokenizer finished)."""
    return json.loads((out_dir / REPORT_FILE).read_text())
