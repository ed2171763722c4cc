"""Train a byte-level BPE (Hugging Face ``tokenizers``) on a weighted mix of sources.

Each source of ``tokenizer_mix.json`` points at a dataset config and is read
through the same stream as ``prepare`` (one part, shuffle with the dataset's
seed), through the same ``data.hygiene.ValidationFilter``. The tokenizer never
sees validation text: it skips the stream's first ``validation_docs`` unique
documents (the dataset's validation split) and trains on the training documents
that follow, exact duplicates of a validation document dropped, at most the
dataset's ``max_samples``. The report measures the validation split itself (its
first ``report_docs`` documents), so its held-out bytes per token are measured
on text the tokenizer never saw.

``world_size`` W > 1 says the datasets will be prepared in W parts (``prepare
--world_size W``), each part holding out its own validation split: the first
documents of its own stream, generally not the one-part stream's. The trainer
then first reads each part's validation split as ``prepare`` picks it
(``data.hygiene.validation_split``), and also drops every training document of
the one-part stream that is in one of them: the tokenizer then holds out the
validation splits of both layouts, 1 part and W parts. The report measures the
parts' validation documents (part 0 first) and records each part's
``validation_sha256``; W == 1 reads and trains exactly as before.

The directory records the fingerprint of its mix (the mix's fields and each
source's dataset config); a finished tokenizer is reused only for the same mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from ..atomic import fsync_dir, write_json
from ..data import hub
from ..data.config import DatasetConfig, HubSource, TokenizerMixConfig
from ..data.hygiene import HYGIENE_VERSION, ValidationFilter, validation_split
from ..data.sources import STREAM_VERSION, iter_batches, open_sources
from ..errors import UserError
from ..lock import output_lock
from ..schema import load_config, read_json
from .load import load_tokenizer
from .report import REPORT_FILE, tokenizer_report
from .trainers import train_gigatoken, train_hf, trainer_missing

# What a tokenizer directory holds: transformers' save_pretrained files and the report.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", REPORT_FILE}

# The trainers tokenizer-train offers: the same merges, so the same tokenizer.json, from the same documents
# (bench-tokenizer-train; BENCHMARKS.md, *BPE trainers on the demo mix*). gigatoken is ~7x faster.
TRAINERS = ("gigatoken", "tokenizers")
log = logging.getLogger(__name__)


def resolve_trainer(name: str | None) -> str:
    """``name``, or by default gigatoken when it is installed, else tokenizers (the same tokenizer, slower)."""
    if name is None:
        return "gigatoken" if trainer_missing("gigatoken") is None else "tokenizers"
    if name not in TRAINERS:
        raise UserError(f"expected one of {', '.join(TRAINERS)}, got {name!r}", field="--trainer")
    if missing := trainer_missing(name):
        raise UserError(f"{missing}, or use --trainer tokenizers", field="--trainer")
    return name


def load_mix(
    mix_path: str | Path, max_samples: int | None = None, vocab_size: int | None = None
) -> tuple[TokenizerMixConfig, list[DatasetConfig]]:
    """The mix config (``max_samples`` and ``vocab_size`` override its fields) and each source's dataset
    config (a missing one names the mix's field)."""
    mix = load_config(TokenizerMixConfig, mix_path, {"max_samples": max_samples, "vocab_size": vocab_size})
    configs = []
    for i, src in enumerate(mix.sources):
        if not Path(src.config).is_file():
            raise UserError(f"dataset config {src.config!r} not found", path=mix_path, field=f"sources.{i}.config")
        configs.append(load_config(DatasetConfig, src.config))
    return mix, configs


def mix_fingerprint(mix: TokenizerMixConfig, configs: list[DatasetConfig], world_size: int = 1) -> str:
    """Identity of the training text: the mix's fields, each source's dataset config, the hygiene version,
    and the parts held out when more than one (a one-part fingerprint is the one it always was)."""
    blob = json.dumps(
        {
            "mix": mix.model_dump(by_alias=True),
            "sources": [c.model_dump(by_alias=True) for c in configs],
            "hygiene": HYGIENE_VERSION,
            **({"world_size": world_size} if world_size > 1 else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class _SourceText:
    """What the tokenizer read of one source."""

    held: list[str] = field(default_factory=list)  # the first report_docs validation documents
    trained: int = 0
    chars: int = 0  # characters of the training documents, after the cut to max_chars_per_doc
    hygiene: ValidationFilter | None = None
    parts: list[ValidationFilter] = field(default_factory=list)  # each part's validation split (W > 1 only)
    skipped: int = 0  # training documents of the one-part stream in a part's validation split

    def info(self, cfg: DatasetConfig) -> dict:
        h = self.hygiene
        if not self.parts:
            return {
                "heldout": f"the first {len(self.held):,} of the {h.num_validation:,} validation documents of "
                f"{cfg.name} (prepare's validation split with one part)",
                "train": f"the {self.trained:,} training documents after them, less exact duplicates of a "
                "validation document",
                "validation_docs": h.num_validation,
                "validation_sha256": h.validation_sha256,
            }
        w = len(self.parts)
        return {
            "heldout": f"the first {len(self.held):,} of the {sum(p.num_validation for p in self.parts):,} "
            f"validation documents of the {w} parts of {cfg.name} (prepare's validation splits with --world_size "
            f"{w}, part 0 first)",
            "train": f"the {self.trained:,} training documents after the one-part validation split, less exact "
            f"duplicates of a validation document and the {self.skipped:,} documents of the {w} parts' "
            "validation splits",
            "validation_docs": h.num_validation,
            "validation_sha256": h.validation_sha256,
            "part_validation_docs": [p.num_validation for p in self.parts],
            "part_validation_sha256": [p.validation_sha256 for p in self.parts],
            "skipped_part_validation_docs": self.skipped,
        }


def _hold_out_parts(cfg: DatasetConfig, path: str, world_size: int, report_docs: int, seen: _SourceText) -> None:
    """Read the validation split of each of ``world_size`` parts, as ``prepare --rank R --world_size W``
    picks it (part 0's first documents first in ``seen.held``)."""
    log.info("%s: reading the validation splits of its %d parts", cfg.name, world_size)
    for rank in range(world_size):
        part, docs = validation_split(cfg, path, rank, world_size, keep=report_docs - len(seen.held))
        seen.parts.append(part)
        seen.held += docs


def documents_per_source(mix: TokenizerMixConfig, configs: list[DatasetConfig]) -> list[int]:
    """Documents the tokenizer reads from each source: the mix's share, at most the training documents
    ``prepare`` keeps (the source's ``max_samples``)."""
    return [min(n, cfg.max_samples or n) for n, cfg in zip(mix.samples_per_source(), configs)]


def _train_documents(
    cfg: DatasetConfig, path: str, num_train: int, max_chars: int, report_docs: int, seen: _SourceText
) -> Iterator[str]:
    """The first ``num_train`` documents ``prepare`` puts in train (truncated to ``max_chars``);
    the validation documents before them are skipped, the first ``report_docs`` kept in ``seen.held``.
    With ``seen.parts`` (the parts' validation splits), their documents are skipped too, and ``seen.held``
    already holds the parts' first documents."""
    seen.hygiene = ValidationFilter(cfg.validation_docs)
    position = 0  # documents of the filtered stream: the first validation_docs are the validation split
    for batch in seen.hygiene.split(iter_batches(cfg, path)):
        for doc in batch.texts:
            position += 1
            if position <= cfg.validation_docs:
                if len(seen.held) < report_docs and not seen.parts:
                    seen.held.append(doc)
                continue
            if seen.trained == num_train:
                return
            if seen.parts and any(part.holds(doc) for part in seen.parts):
                seen.skipped += 1
                continue
            seen.trained += 1
            seen.chars += min(len(doc), max_chars)
            yield doc[:max_chars]


def _read(seen: dict[str, _SourceText]) -> str:
    """What each source gave the trainer: ``name: N documents, C characters``."""
    return "; ".join(f"{name}: {s.trained:,} documents, {s.chars:,} characters" for name, s in seen.items())


def _refuse_empty_source(cfg: DatasetConfig, path: str, asked: int, vocab_size: int, seen: _SourceText) -> None:
    """A source that gives the trainer no document stops the run before the other sources are read."""
    num_validation = seen.hygiene.num_validation if seen.hygiene else 0
    raise UserError(
        f"{cfg.name}: no training document for the tokenizer (asked {asked:,}; its validation split, "
        f"validation_docs {cfg.validation_docs:,}, took {num_validation:,} documents and none came after them), so "
        f"the mix's {vocab_size:,}-entry vocabulary would not see this source: check its source, min_chars and "
        "validation_docs, or leave it out of the mix",
        path=path,
    )


def train_tokenizer(
    mix_path: str | Path,
    out_dir: str | Path,
    *,
    max_samples: int | None = None,
    vocab_size: int | None = None,
    overwrite: bool = False,
    world_size: int = 1,
    trainer: str | None = None,
) -> dict:
    """Train, save (``tokenizer.json`` + transformers files) atomically, return the report.

    ``world_size`` > 1: the datasets will be prepared in that many parts; each part's validation split is
    held out too (read first, from W more streams per source). ``vocab_size`` overrides the mix's.
    ``trainer`` (``TRAINERS``, default: ``resolve_trainer``) trains; both write the same ``tokenizer.json``.
    A source that gives no training document, or a mix whose text trains fewer than ``vocab_size``
    entries, is a ``UserError`` and nothing is written."""
    from transformers import PreTrainedTokenizerFast

    trainer = resolve_trainer(trainer)  # the one asked; after training, the one that trained
    if world_size < 1:
        raise UserError(f"expected a positive number of parts, got {world_size}", field="--world_size")
    out_dir = Path(out_dir)
    with output_lock(out_dir, "tokenizer-train"):  # one writer per output directory
        mix, configs = load_mix(mix_path, max_samples, vocab_size)
        fp = mix_fingerprint(mix, configs, world_size)
        if (out_dir / REPORT_FILE).is_file() and not overwrite:
            report = tokenizer_report_cached(out_dir)
            held = report.get("held_out_world_size", 1)
            if held != world_size and report.get("mix_fingerprint") == mix_fingerprint(mix, configs, held):
                raise UserError(
                    f"the tokenizer in {out_dir} was trained on this mix with --world_size {held}, not "
                    f"{world_size}; pass --overwrite or another --out_dir",
                    field="--world_size",
                )
            if report.get("mix_fingerprint") != fp:
                raise UserError(
                    f"the tokenizer in {out_dir} was trained on a different mix; pass --overwrite or another --out_dir",
                    path=mix_path,
                )
            if report.get("stream_version", STREAM_VERSION) != STREAM_VERSION:  # recorded since stream v3
                raise UserError(
                    f"the tokenizer in {out_dir} read its sources as stream version {report['stream_version']}, "
                    f"this pipeline reads version {STREAM_VERSION} (other documents, another validation split); "
                    "pass --overwrite or another --out_dir",
                    path=mix_path,
                )
            log.info("tokenizer already trained at %s on this mix (use --overwrite to retrain)", out_dir)
            return report
        if out_dir.exists() and not out_dir.is_dir():  # refused now, not after the whole training
            raise UserError("exists and is not a directory: choose another --out_dir", path=out_dir)
        # The finished tokenizer replaces the whole directory: refuse one holding anything else.
        others = sorted(set(os.listdir(out_dir)) - TOKENIZER_FILES) if out_dir.is_dir() else []
        if others:
            raise UserError(
                f"{out_dir} holds other files ({', '.join(others[:3])}); the tokenizer replaces the "
                "whole directory: choose an empty or tokenizer directory",
                field="--out_dir",
            )
        open_sources([(cfg, src.config) for src, cfg in zip(mix.sources, configs)])  # a broken source fails now
        pins = {
            cfg.name: pin
            for src, cfg in zip(mix.sources, configs)  # Hub commits read, datasets version
            if isinstance(cfg.source, HubSource) and (pin := hub.pin(cfg.source, src.config, cfg.name))
        }
        counts = documents_per_source(mix, configs)
        seen = {cfg.name: _SourceText() for cfg in configs}

        def corpus() -> Iterator[str]:
            for src, cfg, n in zip(mix.sources, configs, counts):
                if world_size > 1:
                    _hold_out_parts(cfg, src.config, world_size, mix.report_docs, seen[cfg.name])
                yield from _train_documents(cfg, src.config, n, mix.max_chars_per_doc, mix.report_docs, seen[cfg.name])
                if seen[cfg.name].trained == 0 < n:
                    _refuse_empty_source(cfg, src.config, n, mix.vocab_size, seen[cfg.name])
                if seen[cfg.name].trained < n:
                    log.warning(
                        "%s: only %d documents for the tokenizer (asked %d)", cfg.name, seen[cfg.name].trained, n
                    )
                if not seen[cfg.name].held:
                    log.warning("%s: no validation documents: nothing held out to report", cfg.name)

        bar = tqdm(corpus(), total=sum(counts), unit="doc", desc="tokenizer", mininterval=2)
        if trainer == "tokenizers":  # streams the documents
            tok = train_hf(bar, sum(counts), mix.vocab_size, mix.min_frequency, mix.eot_token)
        else:  # gigatoken holds the whole text: 76-94 MiB above a 12.3 MB sample (BENCHMARKS.md, demo mix)
            tok, trainer = train_gigatoken(list(bar), mix.vocab_size, mix.min_frequency, mix.eot_token)
        bar.close()
        if tok.get_vocab_size() < mix.vocab_size:  # BPE ran out of pairs seen min_frequency times
            raise UserError(
                f"the mix's text trains {tok.get_vocab_size():,} of the {mix.vocab_size:,} vocabulary entries asked "
                f"(256 bytes + {mix.eot_token} + {tok.get_vocab_size() - 257:,} merges; min_frequency "
                f"{mix.min_frequency}) from {_read(seen)}: give it more text (max_samples, --max_samples) or ask "
                "fewer entries (vocab_size, --vocab_size); nothing was written",
                path=mix_path,
            )

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp_dirs(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp.", dir=out_dir.parent))
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=mix.eot_token, eos_token=mix.eot_token, unk_token=mix.eot_token
        )
        fast.save_pretrained(str(tmp))
        loaded = load_tokenizer(tmp, mix.eot_token)
        report = tokenizer_report(
            loaded,
            {name: s.held for name, s in seen.items()},
            {name: s.trained for name, s in seen.items()},
            {cfg.name: seen[cfg.name].info(cfg) for cfg in configs},
            mix_config=mix.model_dump(by_alias=True),
            mix_path=str(mix_path),
            mix_fingerprint=fp,
            held_out_world_size=world_size,
            trainer=trainer,
        )
        report["hub_sources"] = pins
        report["stream_version"] = STREAM_VERSION  # the documents it read (data/sources.py)
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
    return read_json(out_dir / REPORT_FILE)
