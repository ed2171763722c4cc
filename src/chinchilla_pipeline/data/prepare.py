"""Prepare one dataset: stream documents, tokenize batches in worker processes, write shards.

Guarantees (tested):
- exact size: ``max_samples`` training documents after filtering, and never
  more than ``max_tokens`` training tokens (short by less than one document);
  the first cap hit stops the run and the manifest says which;
- byte-identical output for the same config, seed and tokenizer, whatever the
  number of tokenizer workers, and after any number of ``kill -9`` + restart:
  progress is committed only after a shard is complete, and a restart skips the
  documents those shards hold;
- flat memory: a few batches of documents per worker plus one shard's document lengths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from ..atomic import remove_stale_temporaries, write_json
from ..errors import UserError
from ..tokenizer.load import LoadedTokenizer, load_tokenizer
from . import hub
from .config import DatasetConfig, HubSource
from .encode import EncoderPool, default_workers
from .manifest import FORMAT_VERSION, MANIFEST_NAME, build_manifest, shard_entry, shard_name, target_fields
from .records import source_bad_records
from .shards import ShardWriter, token_dtype
from .files import resolve_data_files
from .sources import COUNTERS, STREAM_VERSION, DocumentBatch, iter_batches

STATE_NAME = ".progress.json"
log = logging.getLogger(__name__)


def rank_share(total: int | None, rank: int, world_size: int) -> int | None:
    """This rank's part of a global count: ``total // W`` plus one for the first ``total % W`` ranks."""
    if total is None:
        return None
    return total // world_size + (1 if rank < total % world_size else 0)


def resolve_rank(rank: int | None, world_size: int | None, env: dict[str, str]) -> tuple[int, int]:
    """Flags first, then torchrun (RANK/WORLD_SIZE), then a Slurm array, then a Slurm job step."""
    pairs = [("RANK", "WORLD_SIZE"), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
             ("SLURM_PROCID", "SLURM_NTASKS")]
    found = next(((r, w) for r, w in pairs if r in env and w in env), None)
    env_rank, env_world = 0, 1
    if found is not None:
        try:
            env_rank, env_world = int(env[found[0]]), int(env[found[1]])
        except ValueError:
            raise UserError(f"expected integers, got {found[0]}={env[found[0]]!r} {found[1]}={env[found[1]]!r}",
                            field=f"${found[0]}/${found[1]}") from None
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is outside 0..{world_size - 1}", field="--rank/--world_size")
    return rank, world_size


def part_dir(out_dir: str | Path, name: str, rank: int, world_size: int) -> Path:
    base = Path(out_dir) / name
    return base if world_size == 1 else base / f"part_{rank:05d}_of_{world_size:05d}"


def fingerprint(cfg: DatasetConfig, tokenizer_sha256: str, rank: int, world_size: int,
                files: list[tuple[str, int]] | None = None, source: dict[str, Any] | None = None) -> str:
    """Identity of a run's output: config as run, tokenizer, rank layout, shard format and stream versions,
    for local sources the files the globs matched with their sizes (a new file changes the stream), and for
    Hub sources the commit read and the ``datasets`` version (``hub.pin``)."""
    blob = json.dumps({"config": cfg.model_dump(by_alias=True), "tokenizer": tokenizer_sha256,
                       "rank": rank, "world_size": world_size, "format": FORMAT_VERSION,
                       "stream": STREAM_VERSION, "files": files, **({"source": source} if source else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class _Progress:
    """What complete shards hold: the only state a restart needs."""

    fingerprint: str
    docs_consumed: int = 0  # documents of the stream (validation + training) in complete shards
    shards: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"train": [], "validation": []})
    counts: list[int] = field(default_factory=lambda: [0] * len(COUNTERS))  # COUNTERS up to docs_consumed

    @property
    def num_train_tokens(self) -> int:
        return sum(s["num_tokens"] for s in self.shards["train"])

    @property
    def num_train_docs(self) -> int:
        return sum(s["num_docs"] for s in self.shards["train"])

    @property
    def num_val_docs(self) -> int:
        return sum(s["num_docs"] for s in self.shards["validation"])


def _skip(batches: Iterator[DocumentBatch], num_docs: int) -> Iterator[DocumentBatch]:
    """Drop the first ``num_docs`` documents (already in complete shards) without tokenizing them."""
    for batch in batches:
        if num_docs:
            drop = min(num_docs, len(batch.texts))
            num_docs -= drop
            batch = DocumentBatch(batch.texts[drop:], batch.counts[drop:], batch.tail)
        yield batch


def prepare_dataset(cfg: DatasetConfig, config_path: str | Path, tokenizer_dir: str | Path,
                    out_dir: str | Path, *, overwrite: bool = False, rank: int = 0, world_size: int = 1,
                    workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write ``out_dir/<name>/`` (or this rank's part of it) and return its manifest.

    ``workers`` tokenizer processes (default: one per core) encode while this process reads
    the source and writes shards.
    """
    tok = load_tokenizer(tokenizer_dir)
    files, source = None, None
    if not isinstance(cfg.source, HubSource):  # a missing file fails before anything is written
        files = [(f, os.path.getsize(f)) for f in resolve_data_files(cfg, config_path)]
    else:  # the commit read and the datasets version: a resume must read the same stream
        source = hub.pin(cfg.source, config_path, cfg.name)
    out = part_dir(out_dir, cfg.name, rank, world_size)
    fp = fingerprint(cfg, tok.sha256, rank, world_size, files, source)
    if source is not None and not overwrite:
        hub.check_resume(out, source, config_path)
    done = _finished(out, fp, overwrite, config_path)
    if done is not None:
        return hub.record_source(out / MANIFEST_NAME, done, source)
    # Workers start first: they load the tokenizer while this process opens the source.
    with EncoderPool(tok.path.read_text(encoding="utf-8"), tok.eot_id, token_dtype(tok.vocab_size),
                     workers or default_workers()) as pool:
        documents = iter_batches(cfg, config_path, rank, world_size)  # opens the source before writing anything
        if source is not None:  # what this directory's shards are read from, checked by any resume
            hub.save_source(out, source)
        manifest = _write(cfg, config_path, tok, out, fp, documents, pool, rank, world_size, progress)
    return hub.record_source(out / MANIFEST_NAME, manifest, source)


def _write(cfg: DatasetConfig, config_path: str | Path, tok: LoadedTokenizer, out: Path, fp: str,
           documents: Iterator[DocumentBatch], pool: EncoderPool, rank: int, world_size: int,
           progress: bool) -> dict[str, Any]:
    """Tokenize ``documents`` and write shards, resuming from ``.progress.json``; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    state = _load_state(out, fp)

    max_samples = rank_share(cfg.max_samples, rank, world_size)
    max_tokens = rank_share(cfg.max_tokens, rank, world_size)
    val_docs = rank_share(cfg.validation_docs, rank, world_size)
    stop_reason = "source_exhausted"
    n_val, n_train, n_tokens = state.num_val_docs, state.num_train_docs, state.num_train_tokens
    consumed = state.docs_consumed
    read = np.array(state.counts, dtype=np.int64)  # COUNTERS of the documents consumed
    tail = np.zeros_like(read)
    writer: ShardWriter | None = None
    bar = tqdm(total=max_tokens, initial=n_tokens, unit="tok", unit_scale=True, disable=not progress,
               desc=cfg.name, mininterval=2)

    def open_writer(split: str) -> ShardWriter:
        return ShardWriter(out / shard_name(split, len(state.shards[split])), tok.vocab_size, tok.eot_id)

    def commit(w: ShardWriter, split: str, docs_consumed: int) -> None:
        w.close()
        state.shards[split].append(shard_entry(w.bin_path, w.num_tokens, w.num_docs))
        state.docs_consumed, state.counts = docs_consumed, read.tolist()
        write_json(out / STATE_NAME, {"fingerprint": state.fingerprint, "docs_consumed": state.docs_consumed,
                                      "counts": state.counts, "shards": state.shards})

    try:
        for batch, tokens, lens in pool.map(_skip(documents, consumed), lambda b: b.texts):
            offsets = np.concatenate(([0], np.cumsum(lens)))
            i, n = 0, len(lens)
            if n_val < val_docs:  # the stream's first documents are the validation split
                take = min(val_docs - n_val, n)
                writer = writer or open_writer("validation")
                writer.add(tokens[:offsets[take]], lens[:take])
                n_val, consumed, i = n_val + take, consumed + take, take
                read += batch.counts[:take].sum(axis=0)
                if n_val == val_docs:
                    commit(writer, "validation", consumed)
                    writer = None
            while i < n:
                # Whole documents that fit under both caps, then the ones that fit this shard.
                start, cum = i, np.cumsum(lens[i:])
                by_samples = n - i if max_samples is None else min(n - i, max_samples - n_train)
                by_tokens = n - i if max_tokens is None else int(np.searchsorted(cum, max_tokens - n_tokens, "right"))
                fit = min(by_samples, by_tokens)
                if fit > 0:
                    writer = writer or open_writer("train")
                    take = min(fit, int(np.searchsorted(cum, cfg.shard_tokens - writer.num_tokens, "left")) + 1)
                    writer.add(tokens[offsets[i]:offsets[i + take]], lens[i:i + take])
                    added = int(cum[take - 1])
                    read += batch.counts[i:i + take].sum(axis=0)
                    n_train, n_tokens, consumed, i = n_train + take, n_tokens + added, consumed + take, i + take
                    bar.update(added)
                    if writer.num_tokens >= cfg.shard_tokens:
                        commit(writer, "train", consumed)
                        writer = None
                if i - start == fit and i < n:  # the next document is over a cap
                    stop_reason = "max_samples" if by_samples <= by_tokens else "max_tokens"
                    break
            if stop_reason != "source_exhausted":
                break
        if stop_reason == "source_exhausted":  # a source that ended exactly at a cap: the cap stopped it
            if max_samples is not None and n_train == max_samples:
                stop_reason = "max_samples"
            elif max_tokens is not None and n_tokens == max_tokens:
                stop_reason = "max_tokens"
            else:
                tail = batch.tail  # rows after the last document (never in the saved progress)
        for split in ("validation", "train"):
            if writer is not None and writer.bin_path.name.startswith(split):
                commit(writer, split, consumed)
                writer = None
            elif not state.shards[split]:  # keep one (possibly empty) shard per split
                commit(open_writer(split), split, consumed)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()

    if stop_reason == "source_exhausted" and max_samples is not None:
        log.warning("%s: the source has only %d training documents after filtering (max_samples %d)",
                    cfg.name, n_train, max_samples)
    manifest = build_manifest(
        name=cfg.name, vocab_size=tok.vocab_size, eot_id=tok.eot_id, tokenizer_sha256=tok.sha256,
        splits=state.shards, config=cfg.model_dump(by_alias=True), config_path=str(config_path),
        fingerprint=fp, rank=rank, world_size=world_size, stop_reason=stop_reason,
        caps={"max_samples": max_samples, "max_tokens": max_tokens, "validation_docs": val_docs},
        num_docs_read=consumed, input=dict(zip(COUNTERS, (read + tail).tolist())),
        bad_records=source_bad_records(cfg, config_path),
        **target_fields(cfg.target_tokens, n_tokens, world_size))
    write_json(out / MANIFEST_NAME, manifest)
    (out / STATE_NAME).unlink(missing_ok=True)
    return manifest


def _finished(out: Path, fp: str, overwrite: bool, config_path) -> dict[str, Any] | None:
    """The existing manifest if this exact run is done; clears the directory for ``overwrite``."""
    mpath = out / MANIFEST_NAME
    if overwrite and out.exists():
        shutil.rmtree(out)
        return None
    if not mpath.is_file():
        return None
    manifest = json.loads(mpath.read_text())
    if manifest.get("fingerprint") != fp:
        raise UserError(f"{out} holds a dataset prepared with another config, tokenizer or pipeline version; "
                        "pass --overwrite to replace it", path=config_path)
    log.info("%s is already prepared (use --overwrite to redo it)", out)
    return manifest


def _load_state(out: Path, fp: str) -> _Progress:
    """Resume from ``.progress.json``; another run's progress is refused, never silently discarded."""
    spath = out / STATE_NAME
    if spath.is_file():
        saved = json.loads(spath.read_text())
        if saved.get("fingerprint") != fp:
            raise UserError(f"{out} holds a half-prepared dataset of another config, tokenizer or stream "
                            f"version ({saved.get('docs_consumed', 0):,} documents); pass --overwrite to discard "
                            "it", path=spath)
        log.info("resuming %s after %d documents", out, saved["docs_consumed"])
        return _Progress(fp, saved["docs_consumed"], saved["shards"], saved["counts"])
    for p in list(out.glob("*.bin")) + list(out.glob("*.idx")):  # a first shard renamed before any progress
        p.unlink()
    return _Progress(fp)
