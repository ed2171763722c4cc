"""Prepare one dataset: stream documents, tokenize batches in worker processes, write shards.

The chain, in the order it runs (``chain.run_chain``): read -> hold out -> skip what complete shards
hold -> encode -> cap and write.

Guarantees (tested):
- exact size: ``max_samples`` training documents after filtering, and never
  more than ``max_tokens`` training tokens (short by less than one document);
  the first cap hit stops the run and the manifest says which;
- byte-identical output for the same config, seed and tokenizer, whatever the
  number of tokenizer workers, and after any number of ``kill -9`` + restart:
  progress is committed only after a shard is complete, and a restart skips the
  documents those shards hold;
- held out means held out (``hygiene.py``): the validation documents are unique, and a
  training document equal to one of them is dropped and counted in the manifest's ``hygiene``;
  a tokenizer that read this dataset but did not hold out this part's validation split is
  refused (``held_out_validation``, ``check_validation``), without a pass of its own over the source;
- the same bytes whichever encoder (``--encoder gigatoken|hf``): with gigatoken, a sample of every run is
  encoded with HF tokenizers too, and a difference stops the run before any of its ids are written
  (``id_check.py``);
- flat memory: a few batches of documents per worker plus one shard's document lengths
  (and a set of the validation documents' sha256s, ~100 bytes each).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..atomic import remove_stale_temporaries, write_json
from ..errors import UserError
from ..lock import output_lock
from ..schema import read_json
from ..tokenizer.encoders import resolve_encoder
from ..tokenizer.load import LoadedTokenizer, load_tokenizer
from ..tokenizer.report import REPORT_FILE
from ..tokenizer.token_bytes import token_byte_lengths
from . import chain, hub
from .caps import SOURCE_EXHAUSTED, Caps
from .config import DatasetConfig, HubSource
from .encode import EncoderPool, default_workers
from .files import resolve_data_files
from .hygiene import HYGIENE_COUNTERS, HYGIENE_VERSION, ValidationFilter
from .id_check import IdMismatch
from .layout import MANIFEST_NAME, PROGRESS_NAME, TOKEN_BYTES_NAME, part_dir
from .manifest import FORMAT_VERSION, TOKEN_BYTES_FIELD, build_manifest, file_counts, target_fields, write_token_bytes
from .records import source_bad_records
from .shards import token_dtype
from .sources import COUNTERS, STREAM_VERSION, DocumentStream, iter_batches
from .split_writer import SplitWriter, load_progress

COUNTS = COUNTERS + HYGIENE_COUNTERS  # what was read: the manifest's ``input``, then its ``hygiene`` counts
log = logging.getLogger(__name__)


def resolve_rank(rank: int | None, world_size: int | None, env: dict[str, str]) -> tuple[int, int]:
    """Flags first, then torchrun (RANK/WORLD_SIZE), then a Slurm array, then a Slurm job step."""
    pairs = [
        ("RANK", "WORLD_SIZE"),
        ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
    ]
    found = next(((r, w) for r, w in pairs if r in env and w in env), None)
    env_rank, env_world = 0, 1
    if found is not None:
        try:
            env_rank, env_world = int(env[found[0]]), int(env[found[1]])
        except ValueError:
            raise UserError(
                f"expected integers, got {found[0]}={env[found[0]]!r} {found[1]}={env[found[1]]!r}",
                field=f"${found[0]}/${found[1]}",
            ) from None
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is outside 0..{world_size - 1}", field="--rank/--world_size")
    return rank, world_size


def held_out_validation(
    tokenizer_dir: str | Path, cfg: DatasetConfig, config_path: str | Path, rank: int, world_size: int
) -> str | None:
    """The sha256 of the validation split that the tokenizer held out of this part, which the split
    ``prepare`` writes must have (``check_validation`` compares them, before the split is committed); None when
    the tokenizer's mix did not read this dataset. Refuses at once a tokenizer that held out the splits of
    another number of parts (a tokenizer always holds out the one-part split, and the ``world_size``-part
    splits only when trained with ``tokenizer-train --world_size W``; a report without
    ``held_out_world_size``: 1)."""
    rpath = Path(tokenizer_dir) / REPORT_FILE
    report = read_json(rpath) if rpath.is_file() else {}
    src = report.get("sources", {}).get(cfg.name)
    if src is None or not Caps.for_rank(cfg, rank, world_size).validation_docs:  # nothing held out to protect
        return None
    held = report.get("held_out_world_size", 1)
    if world_size != 1 and held != world_size:
        layouts = "1" if held == 1 else f"1 and {held}"
        raise UserError(
            f"the tokenizer held out the validation split of {cfg.name} for --world_size {layouts}, not for this "
            f"prepare's --world_size {world_size}: it may have trained on those parts' validation text; retrain "
            f"it with `chinchilla tokenizer-train --world_size {world_size} --overwrite` (or into another --out_dir)",
            path=tokenizer_dir,
        )
    parts = src.get("part_validation_sha256") or []
    return src.get("validation_sha256") if world_size == 1 else parts[rank] if rank < len(parts) else None


def check_validation(expected: str | None, actual: str, name: str, tokenizer_dir: str | Path) -> None:
    """Refuse a validation split other than the one the tokenizer held out: the source changed since the
    tokenizer was trained (a file added to a glob, another Hub commit, another config under the same name)."""
    if expected is not None and actual != expected:
        raise UserError(
            f"the tokenizer held out another validation split of {name} than this prepare writes (sha256 "
            f"{expected[:12]} vs {actual[:12]}): the source or its config changed since the tokenizer was trained, "
            "so it may have trained on this validation text; retrain it (`chinchilla tokenizer-train --overwrite`) "
            "or prepare into a dataset of another name",
            path=tokenizer_dir,
        )


def fingerprint(
    cfg: DatasetConfig,
    tokenizer_sha256: str,
    rank: int,
    world_size: int,
    files: list[tuple[str, int]] | None = None,
    source: dict[str, Any] | None = None,
) -> str:
    """Identity of a run's output: config as run, tokenizer, rank layout, shard format, stream and hygiene
    versions, for local sources the files the globs matched with their sizes (a new file changes the stream),
    and for Hub sources the commit read and the ``datasets`` version (``hub.pin``)."""
    blob = json.dumps(
        {
            "config": cfg.model_dump(by_alias=True),
            "tokenizer": tokenizer_sha256,
            "rank": rank,
            "world_size": world_size,
            "format": FORMAT_VERSION,
            "stream": STREAM_VERSION,
            "hygiene": HYGIENE_VERSION,
            "files": files,
            **({"source": source} if source else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare_dataset(
    cfg: DatasetConfig,
    config_path: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    rank: int = 0,
    world_size: int = 1,
    workers: int | None = None,
    progress: bool = True,
    encoder: str | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/<name>/`` (or this rank's part of it) and return its manifest.

    ``workers`` tokenizer processes (default: one per core) encode with ``encoder`` (``ENCODERS``; default
    gigatoken when installed) while this process reads the source and writes shards.
    """
    encoder = resolve_encoder(encoder)
    tok = load_tokenizer(tokenizer_dir)
    files, source = None, None
    if not isinstance(cfg.source, HubSource):  # a missing file fails before anything is written
        files = [(f, os.path.getsize(f)) for f in resolve_data_files(cfg, config_path)]
    else:  # the commit read and the datasets version: a resume must read the same stream
        source = hub.pin(cfg.source, config_path, cfg.name)
    out = part_dir(out_dir, cfg.name, rank, world_size)
    with output_lock(out, "prepare"):  # one writer per part: a second run into it exits at once
        fp = fingerprint(cfg, tok.sha256, rank, world_size, files, source)
        if source is not None and not overwrite:
            hub.check_resume(out, source, config_path)
        done = _finished(out, fp, overwrite, config_path, tok)
        if done is not None:
            return done
        held_out = held_out_validation(tokenizer_dir, cfg, config_path, rank, world_size)  # before any shard
        # Workers start first: they load the tokenizer while this process opens the source.
        with EncoderPool(
            tok.path.read_text(encoding="utf-8"),
            tok.eot_id,
            token_dtype(tok.vocab_size),
            workers or default_workers(),
            encoder,
        ) as pool:
            documents = iter_batches(cfg, config_path, rank, world_size)  # opens the source before writing anything
            if source is not None:  # what this directory's shards are read from, checked by any resume
                hub.save_source(out, source)
            try:
                return _write(
                    cfg,
                    config_path,
                    tok,
                    out,
                    fp,
                    source,
                    documents,
                    pool,
                    rank,
                    world_size,
                    progress,
                    held_out,
                    tokenizer_dir,
                )
            except IdMismatch as err:  # the unfinished shard is gone, progress is at the last complete one
                raise UserError(f"{cfg.name}: {err}", path=config_path) from None


def _write(
    cfg: DatasetConfig,
    config_path: str | Path,
    tok: LoadedTokenizer,
    out: Path,
    fp: str,
    source: dict[str, Any] | None,
    documents: DocumentStream,
    pool: EncoderPool,
    rank: int,
    world_size: int,
    progress: bool,
    held_out: str | None,
    tokenizer_dir: str | Path,
) -> dict[str, Any]:
    """Tokenize ``documents`` and write shards, resuming from ``.progress.json``; return the manifest. The
    validation split is checked against ``held_out`` (``check_validation``) before it is committed."""
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    caps = Caps.for_rank(cfg, rank, world_size)
    saved = load_progress(out, fp, len(COUNTS), len(documents.files))
    splits = SplitWriter(out, saved, tok.vocab_size, tok.eot_id, cfg.shard_tokens)
    # Re-reads the stream from its start on a resume too: the validation hashes are rebuilt, not saved.
    hygiene = ValidationFilter(caps.validation_docs)
    bar = tqdm(
        total=caps.max_tokens,
        initial=splits.num_tokens,
        unit="tok",
        unit_scale=True,
        disable=not progress,
        desc=cfg.name,
        mininterval=2,
    )
    with bar:
        check = lambda: check_validation(held_out, hygiene.validation_sha256, cfg.name, tokenizer_dir)  # noqa: E731
        stop_reason, tail = chain.run_chain(documents, hygiene, pool, splits, caps, check, bar)
    if stop_reason == SOURCE_EXHAUSTED and caps.max_samples is not None:
        log.warning(
            "%s: the source has only %d training documents after filtering (max_samples %d)%s",
            cfg.name,
            splits.num_train,
            caps.max_samples,
            f"; a sample_rate of {_rate_for(cfg.sample_rate, caps, splits):.4g} would reach the caps"
            if cfg.sample_rate < 1
            else "",
        )
    counts = (splits.read + tail).tolist()
    manifest = build_manifest(
        name=cfg.name,
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        tokenizer_sha256=tok.sha256,
        splits=splits.progress.shards,
        token_bytes_sha256=write_token_bytes(out, token_byte_lengths(tok)),
        config=cfg.model_dump(by_alias=True),
        config_path=str(config_path),
        fingerprint=fp,
        rank=rank,
        world_size=world_size,
        stop_reason=stop_reason,
        caps=caps.as_dict(),
        num_docs_read=splits.consumed + sum(counts[len(COUNTERS) :]),  # written + dropped as duplicates
        input=dict(zip(COUNTERS, counts[: len(COUNTERS)])),
        files=file_counts(documents.files, splits.per_file),
        bad_records=source_bad_records(cfg, config_path),
        hygiene={
            "validation": f"the first {splits.num_val:,} unique documents of the stream of rank {rank} of {world_size}",
            "train": "the documents after them, less exact duplicates of a validation document",
            "validation_sha256": hygiene.validation_sha256,
            **dict(zip(HYGIENE_COUNTERS, counts[len(COUNTERS) :])),
        },
        **target_fields(cfg.target_tokens, splits.num_tokens, world_size),
        **({"source": source} if source is not None else {}),  # the Hub commit read (hub.pin)
    )
    write_json(out / MANIFEST_NAME, manifest)
    (out / PROGRESS_NAME).unlink(missing_ok=True)
    return manifest


def _rate_for(rate: float, caps: Caps, splits: SplitWriter) -> float:
    """The ``sample_rate`` whose sample would have held ``caps`` (1.05x what this one yielded, at most 1)."""
    need = [c / max(n, 1) for c, n in ((caps.max_samples, splits.num_train), (caps.max_tokens, splits.num_tokens)) if c]
    return min(1.0, rate * 1.05 * min(need)) if need else rate


def _finished(out: Path, fp: str, overwrite: bool, config_path, tok: LoadedTokenizer) -> dict[str, Any] | None:
    """The existing manifest if this exact run is done; clears the directory for ``overwrite``. A dataset
    finished before ``token_bytes.npy`` existed gets it now (it depends on the tokenizer alone)."""
    mpath = out / MANIFEST_NAME
    if overwrite and out.exists():
        shutil.rmtree(out)
        return None
    if not mpath.is_file():
        return None
    manifest = json.loads(mpath.read_text())
    if manifest.get("fingerprint") != fp:
        raise UserError(
            f"{out} holds a dataset prepared with another config, tokenizer or pipeline version; "
            "pass --overwrite to replace it",
            path=config_path,
        )
    if TOKEN_BYTES_FIELD not in manifest:
        manifest[TOKEN_BYTES_FIELD] = write_token_bytes(out, token_byte_lengths(tok))
        write_json(mpath, manifest)
        log.info("%s: added %s (bytes per token id, for validation bits per byte)", out, TOKEN_BYTES_NAME)
    log.info("%s is already prepared (use --overwrite to redo it)", out)
    return manifest
