"""Stream documents from a dataset config, through Hugging Face ``datasets`` only.

Hub datasets and local files/directories go through the same
``datasets.load_dataset(..., streaming=True)`` call, so nothing is downloaded
whole and the code tested on local files is the code that reads the Hub.

The stream is: units (files; parquet files split into their row groups) ->
rows -> text (field or template) -> consecutive rows joined into documents ->
this rank's documents and the sample (``sample_rate``) -> character filters ->
this rank's units -> seeded shuffle of the units and of the documents in a
buffer (``seed``, default 42). Its order is a pure function of the config, the
source and the rank layout; each document records the file it came from.

Rows travel as Arrow tables (no per-row Python dict). Bad records never stop a
run: a missing, null or non-string text field gives an empty document; invalid
UTF-8 is replaced by U+FFFD; empty documents and those outside
``min_chars``/``max_chars`` are dropped. Each is counted (``COUNTERS``), and the
counts travel with the documents kept, so that a run stopped by a cap counts
exactly the rows it read, whatever was read ahead.
"""

from __future__ import annotations

import json
import logging
import os
import string
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError
from . import hub
from .config import DatasetConfig, HubSource
from .files import resolve_data_files
from .records import (
    check_local_files,
    decoding_failure,
    guard_stream,
    one_line_per_message,
    skip_undecodable,
    undecodable,
)
from .sampling import owned_and_sampled

DOC_COLUMN, FILE_COLUMN = "__document__", "__file__"
# Which documents a config yields, and in what order. Part of a prepared dataset's fingerprint, so that a
# restart never resumes another version's stream. 2: Arrow shuffle buffer, empty documents dropped.
# 3: parquet read by row groups, all units shuffled across files, ranks by units or by hash, sample_rate.
STREAM_VERSION = 3
# What the source held besides documents kept; the manifest's ``input`` section.
COUNTERS = (
    "rows_read",
    "rows_without_text",
    "not_sampled",
    "dropped_empty",
    "dropped_too_short",
    "dropped_too_long",
    "documents_with_replacement_char",
)
log = logging.getLogger(__name__)


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _load_rows(cfg: DatasetConfig, config_path: str | Path):
    """The source's rows as a streaming ``datasets.IterableDataset`` (one shard per file), and its files in
    shard order (paths, or ``hf://`` addresses for the Hub); ``load_dataset(..., streaming=True)`` as two calls:
    ``load_dataset_builder`` then ``as_streaming_dataset``, the builder telling the files it resolved."""
    import datasets

    datasets.disable_progress_bars()
    one_line_per_message()
    _without_torch(datasets)
    src = cfg.source
    try:
        if isinstance(src, HubSource):  # a mirror directory or the Hub, at the resolved commit (data/hub.py)
            res = hub.resolve(src, config_path, cfg.name)
            builder = datasets.load_dataset_builder(
                res.path, src.name, revision=res.revision, data_files=src.data_files
            )
        else:
            # text and csv files are decoded by Python: invalid UTF-8 becomes U+FFFD there.
            kwargs = {"encoding_errors": "replace"} if src.format in ("text", "csv") else {}
            if src.format == "text":
                kwargs["sample_by"] = src.sample_by
            files = resolve_data_files(cfg, config_path)
            files = check_local_files(src.format, files, config_path)[0]  # bad records skipped, counted (records.py)
            if not files:
                return datasets.IterableDataset.from_generator(_no_rows), []
            if src.format == "csv":
                kwargs["on_bad_lines"] = "skip"
            if src.format == "parquet":  # batches of the config's size (a cleaned copy's emptied row groups: none)
                kwargs["batch_size"] = cfg.batch_docs
            builder = datasets.load_dataset_builder(src.format, data_files=files, **kwargs)
        split = src.split if isinstance(src, HubSource) else "train"
        files = [str(f) for f in builder.config.data_files.get(split, [])]
        if isinstance(src, HubSource):
            files = [_in_repository(f, res.path) for f in files]
        return builder.as_streaming_dataset(split=split), files
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - Hub failures become one line (hub.hub_error)
        if isinstance(src, HubSource) and (line := hub.hub_error(err, cfg.name, config_path)) is not err:
            raise line from None
        if not isinstance(err, (FileNotFoundError, ValueError, ConnectionError)):
            raise
        field = "source.path" if isinstance(src, HubSource) else "source.data_files"
        raise UserError(
            f"cannot open the source ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
            path=config_path,
            field=field,
        ) from None


def _without_torch(datasets) -> None:
    """Keep ``datasets`` from importing torch in a process that has not: every ``IterableDataset`` it builds
    (~5 per file, 481 for 96 files) puts its epoch in a shared-memory torch tensor for DataLoader workers,
    which these streams never go through. torch's import is ~1.7 CPU-s (3.9 s wall on the 2-core VM), as much
    as reading 44.6 MB of gzipped JSON; the stream is the same (epoch 0 either way)."""
    if "torch" not in sys.modules:
        datasets.config.TORCH_AVAILABLE = False


def _per_file(ds) -> list:
    """``ds`` as one dataset per shard (file), in order: halved recursively, O(n log n) for n files, where
    ``ds.shard(n, i)`` for every ``i`` copies the whole shard list n times (1,024 C4 files: 0.8 s against 4.2 s)."""
    if ds.num_shards <= 1:
        return [ds]
    return [p for k in range(2) for p in _per_file(ds.shard(num_shards=2, index=k, contiguous=True))]


def _in_repository(file: str, root: str) -> str:
    """A Hub source's file as its path in the repository: ``hf://datasets/o/n@commit/a/b`` or ``<mirror>/a/b``."""
    if file.startswith("hf://") and "@" in file:
        return file.split("@", 1)[1].split("/", 1)[1]
    return os.path.relpath(file, root) if Path(root).is_dir() else file


def _no_rows():
    """A source whose files are all empty: zero rows."""
    yield from ()


def _check_columns(cfg: DatasetConfig, columns: list[str], config_path) -> None:
    """Refuse a text field or template field the source does not have."""
    if not columns:  # an empty source: nothing to check, nothing will be written
        return
    if cfg.text_template is not None:
        missing = [f for f in _template_fields(cfg.text_template) if f not in columns]
        if missing:
            raise UserError(
                f"fields {missing} not in the source's columns {columns}", path=config_path, field="text_template"
            )
    elif cfg.text_field not in columns:
        raise UserError(
            f"{cfg.text_field!r} is not a column of the source (columns: {columns})",
            path=config_path,
            field="text_field",
        )


def _values(column) -> list:
    """Python values of an Arrow column: JSON-typed ones decoded, invalid UTF-8 replaced by U+FFFD.

    ``datasets`` stores a JSON column whose rows mix types (text and numbers, lists) JSON-encoded;
    pyarrow's JSON reader keeps invalid UTF-8 bytes in string columns (parquet can too).
    """
    import pyarrow as pa

    if column.type == pa.json_():
        return [None if v is None else json.loads(v) for v in column.to_pylist()]
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        return [None if b is None else b.decode("utf-8", "replace") for b in column.cast(pa.large_binary()).to_pylist()]


def document_dataset(cfg: DatasetConfig, config_path: str | Path, rank: int = 0, world_size: int = 1):
    """This rank's candidate documents as a ``datasets.IterableDataset`` in Arrow format, and the source's files.

    Columns: ``__document__`` (the text; null for a row that only carries counts), one int32 column per
    ``COUNTERS`` entry (what that row adds to each count) and ``__file__`` (the index of its file). The
    candidates a batch of rows drops travel as one null row, so that the shuffle buffer holds documents.

    Units: every file, and every row group of a parquet file (``IterableDataset.reshard``). The seeded shuffle
    permutes all units of all files, then mixes documents in its buffer: a prefix of the stream is a sample of
    row groups drawn from every part of every file, in proportion to size. Ranks take every ``W``-th unit
    when there are at least ``W`` and the source is not sampled; otherwise each rank reads every file and
    keeps the documents it owns by hash (``sampling.py``), which is also how ``sample_rate`` thins a source.
    """
    import datasets
    import pyarrow as pa

    rows, files = _load_rows(cfg, config_path)
    # Some builders (text, some Hub sets) resolve their columns only when read: peek one row.
    try:
        columns = rows.column_names or list(next(iter(rows.take(1)), {}).keys())
    except Exception as err:
        if not decoding_failure(err):
            raise
        raise undecodable(err, config_path, isinstance(cfg.source, HubSource)) from None
    _check_columns(cfg, columns, config_path)
    parts = [p.reshard() for p in _per_file(rows)]
    by_units = world_size == 1 or (cfg.sample_rate == 1 and sum(p.num_shards for p in parts) >= world_size)
    hashed = not by_units or cfg.sample_rate < 1
    template, field, sep, join = cfg.text_template, cfg.text_field, cfg.join_separator, cfg.join_rows
    fields = _template_fields(template) if template is not None else [field]
    lo, hi, rate = max(cfg.min_chars, 1), cfg.max_chars, cfg.sample_rate

    def to_documents(batch, file: int):  # a pyarrow.Table of source rows -> one of candidate documents
        values = [_values(batch.column(f)) for f in fields]
        if template is None:
            texts = [t if isinstance(t, str) else None for t in values[0]]
        else:  # missing fields render as ""; a row is without text when every field is missing
            texts = [
                None
                if all(v is None for v in row)
                else template.format_map({f: "" if v is None else v for f, v in zip(fields, row)})
                for row in zip(*values)
            ]
        no_text = np.array([t is None for t in texts], dtype=np.int64)
        rows_in = np.ones(len(texts), dtype=np.int64)
        if join > 1:
            texts = [sep.join(t for t in texts[i : i + join] if t) for i in range(0, len(texts), join)]
            rows_in = np.add.reduceat(rows_in, np.arange(0, rows_in.size, join)) if rows_in.size else rows_in
            no_text = np.add.reduceat(no_text, np.arange(0, no_text.size, join)) if no_text.size else no_text
        mine = sampled = np.ones(len(texts), dtype=bool)
        if hashed:
            mine, sampled = owned_and_sampled(texts, cfg.seed, rank, world_size, rate)
            sampled = mine & sampled
        lens = np.fromiter((len(t) if t else 0 for t in texts), dtype=np.int64, count=len(texts))
        empty, short = sampled & (lens == 0), sampled & (lens > 0) & (lens < lo)
        long = sampled & (lens > hi) if hi is not None else np.zeros(lens.shape, dtype=bool)
        keep = sampled & ~(empty | short | long)
        counts = np.stack(
            [
                rows_in * mine,
                no_text * mine,
                mine & ~sampled,
                empty,
                short,
                long,
                np.array([bool(k) and t is not None and "\ufffd" in t for k, t in zip(sampled, texts)], dtype=bool),
            ],
            axis=1,
        ).astype(np.int64)
        # Each document carries the counts of the dropped candidates before it; those after the batch's last
        # document ride on one null row after it.
        kept = np.flatnonzero(keep)
        out = [texts[i] for i in kept]
        cum = np.cumsum(counts, axis=0)
        upto = cum[kept]
        rows_out = [np.diff(upto, axis=0, prepend=np.zeros((1, counts.shape[1]), dtype=np.int64))]
        rest = cum[-1] - (upto[-1] if kept.size else 0) if len(texts) else np.zeros(counts.shape[1], np.int64)
        if rest.any():
            out.append(None)
            rows_out.append(rest[None, :])
        table = np.concatenate(rows_out).astype(np.int32)
        return pa.table(
            {
                DOC_COLUMN: pa.array(out, type=pa.large_string()),
                **{name: pa.array(table[:, j]) for j, name in enumerate(COUNTERS)},
                FILE_COLUMN: pa.array(np.full(len(out), file, dtype=np.int32)),
            }
        )

    # A multiple of join_rows rows per map batch: each document is join_rows consecutive rows.
    batch = join * max(1, 1000 // join)
    # Declared, so that concatenating the units does not read each one's first rows to infer them.
    features = datasets.Features(
        {
            DOC_COLUMN: datasets.Value("large_string"),
            **{name: datasets.Value("int32") for name in COUNTERS},
            FILE_COLUMN: datasets.Value("int32"),
        }
    )
    units = [
        p.with_format("arrow").map(
            to_documents,
            batched=True,
            batch_size=batch,
            remove_columns=columns,
            fn_kwargs={"file": i},
            features=features,
        )
        for i, p in enumerate(parts)
    ]
    ds = units[0] if len(units) == 1 else datasets.concatenate_datasets(units)
    if not by_units or world_size > 1:
        log.info(
            "%s: rank %d of %d %s",
            cfg.name,
            rank,
            world_size,
            f"reads every {world_size}th of {ds.num_shards} units (files, parquet row groups)"
            if by_units
            else f"reads all {len(files)} files and keeps the documents it owns by hash",
        )
    if by_units and world_size > 1:
        ds = ds.shard(num_shards=world_size, index=rank, contiguous=False)
    if cfg.shuffle_buffer > 0:
        ds = ds.shuffle(seed=cfg.seed, buffer_size=cfg.shuffle_buffer)
    return ds, files


@dataclass
class DocumentBatch:
    """Documents kept, in stream order, and what the source held around them.

    ``counts[i]`` (int64, one column per ``COUNTERS`` entry) covers the candidates after
    document ``i - 1`` up to and including document ``i``; ``tail`` covers those after the
    stream's last document (nonzero only on the last batch). ``files[i]`` is the index of
    document ``i``'s file in ``DocumentStream.files``.
    """

    texts: list[str]
    counts: np.ndarray
    tail: np.ndarray
    files: np.ndarray


class DocumentStream:
    """An iterator of ``DocumentBatch`` that also names the source's files (``files``, in index order)."""

    def __init__(self, batches: Iterator[DocumentBatch], files: list[str]):
        self._batches, self.files = batches, files

    def __iter__(self) -> "DocumentStream":
        return self

    def __next__(self) -> DocumentBatch:
        return next(self._batches)

    def close(self) -> None:
        self._batches.close()


def iter_batches(
    cfg: DatasetConfig, config_path: str | Path, rank: int = 0, world_size: int = 1, batch_docs: int | None = None
) -> DocumentStream:
    """This rank's documents, from batches of ``batch_docs`` candidates (default: the config's).

    The source is opened now (a missing file or an unreachable Hub fails here);
    rows are read as the iterator is consumed.
    """
    size = batch_docs or cfg.batch_docs
    opened = hub.opening(cfg, config_path, partial(document_dataset, cfg, config_path, rank, world_size))  # retried
    files = opened[1]

    def open_tables():
        return document_dataset(cfg, config_path, rank, world_size)[0].iter(batch_size=size)

    tables = opened[0].iter(batch_size=size)
    if isinstance(cfg.source, HubSource):  # a dropped connection re-opens the stream where it was
        tables = hub.retrying(open_tables, cfg.name, config_path, first=tables)
    elif cfg.source.format == "parquet":  # re-opened where it was, without the row groups it could not decode
        tables = hub.reopening(open_tables, _skipping(cfg, config_path), first=tables)

    def batches() -> Iterator[DocumentBatch]:
        carry = np.zeros(len(COUNTERS), dtype=np.int64)  # candidates since the last document kept
        for table in guard_stream(tables, config_path, isinstance(cfg.source, HubSource)):
            docs = table.column(DOC_COLUMN)
            kept = np.flatnonzero(docs.is_valid().to_numpy(zero_copy_only=False))
            cum = (
                np.cumsum(np.stack([table.column(c).to_numpy() for c in COUNTERS], axis=1), axis=0, dtype=np.int64)
                + carry
            )
            upto = cum[kept]
            counts = np.diff(upto, axis=0, prepend=np.zeros((1, len(COUNTERS)), dtype=np.int64))
            if len(table):
                carry = cum[-1] - upto[-1] if kept.size else cum[-1]
            if kept.size:
                origin = table.column(FILE_COLUMN).to_numpy()[kept].astype(np.int64)
                yield DocumentBatch(docs.drop_null().to_pylist(), counts, np.zeros_like(carry), origin)
        yield DocumentBatch([], np.zeros((0, len(COUNTERS)), dtype=np.int64), carry, np.zeros(0, dtype=np.int64))

    return DocumentStream(batches(), files)


def _skipping(cfg: DatasetConfig, config_path: str | Path):
    """``hub.reopening``'s ``recover`` for a local parquet source: leave undecodable row groups out."""

    def recover(err: Exception, delivered: int) -> None:
        skip_undecodable(err, cfg, config_path)  # raises unless the copies without them are written
        log.info("%s: stream re-opened without the undecodable row groups, after %d batches", cfg.name, delivered)

    return recover


def _first_row(cfg: DatasetConfig, config_path: str | Path, ds):
    """``ds``'s first row, skipping the undecodable row groups of a local parquet source as ``iter_batches`` does."""
    if isinstance(cfg.source, HubSource):  # read again after a transient failure
        return hub.retrying(lambda: ds.take(1), cfg.name, config_path)
    if cfg.source.format != "parquet":
        return ds.take(1)
    return hub.reopening(lambda: _load_rows(cfg, config_path)[0].take(1), _skipping(cfg, config_path), first=ds.take(1))


def open_sources(configs: list[tuple[DatasetConfig, str | Path]]) -> None:
    """Open every source and read its first row, before any long work: a broken source fails in seconds.

    Checks what the first row can tell: the repository/files open, and the text field or template fields
    are columns. Commands reading several sources (tokenizer-train, estimate, prepare) call it first.
    """
    for cfg, path in configs:
        ds = hub.opening(cfg, path, partial(_load_rows, cfg, path))[0]
        try:
            first = next(iter(_first_row(cfg, path, ds)), {})
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - a failure on the first row is a source failure
            line = hub.hub_error(err, cfg.name, path) if isinstance(cfg.source, HubSource) else err
            if line is err and not (
                decoding_failure(err) or isinstance(err, (ValueError, FileNotFoundError, ConnectionError))
            ):
                raise
            raise (
                line
                if line is not err
                else UserError(
                    f"cannot read the source's first row ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
                    path=path,
                    field="source",
                )
            ) from None
        _check_columns(cfg, ds.column_names or list(first.keys()), path)
        log.info("%s: source opened, first row read", cfg.name)


def iter_documents(
    cfg: DatasetConfig, config_path: str | Path, rank: int = 0, world_size: int = 1, batch_docs: int | None = None
) -> Iterator[list[str]]:
    """The texts of ``iter_batches`` (for readers that need no counts)."""
    return (b.texts for b in iter_batches(cfg, config_path, rank, world_size, batch_docs) if b.texts)
