"""Stream documents from a dataset config, through Hugging Face ``datasets`` only.

Hub datasets and local files/directories go through the same
``datasets.load_dataset(..., streaming=True)`` call, so nothing is downloaded
whole and the code tested on local files is the code that reads the Hub.

The stream is: rows -> text (field or template) -> consecutive rows joined
into documents -> character filters -> seeded buffer shuffle (``seed``, default
42; the shuffle also permutes the source's files) -> this rank's part. Its
order is a pure function of the config, the source and the rank layout.
"""

from __future__ import annotations

import glob
import logging
import string
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from .config import DatasetConfig, HubSource

DOC_COLUMN = "__document__"
log = logging.getLogger(__name__)


def resolve_data_files(cfg: DatasetConfig, config_path: str | Path) -> list[str]:
    """Expand the local source's globs (sorted); a pattern matching nothing is a ``UserError``."""
    files: list[str] = []
    for i, pattern in enumerate(cfg.source.data_files):
        matched = sorted(glob.glob(pattern, recursive=True))
        if not matched:
            raise UserError(f"no file matches {pattern!r} (expected existing {cfg.source.format} files)",
                            path=config_path, field=f"source.data_files.{i}")
        files.extend(matched)
    return files


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _load_rows(cfg: DatasetConfig, config_path: str | Path):
    import datasets

    datasets.disable_progress_bars()
    src = cfg.source
    try:
        if isinstance(src, HubSource):
            return datasets.load_dataset(src.path, src.name, split=src.split, revision=src.revision,
                                         data_files=src.data_files, streaming=True)
        kwargs = {"sample_by": src.sample_by} if src.format == "text" else {}
        return datasets.load_dataset(src.format, data_files=resolve_data_files(cfg, config_path),
                                     split="train", streaming=True, **kwargs)
    except UserError:
        raise
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        field = "source.path" if isinstance(src, HubSource) else "source.data_files"
        raise UserError(f"cannot open the source ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
                        path=config_path, field=field) from None


def _check_columns(cfg: DatasetConfig, columns: list[str], config_path) -> None:
    """Refuse a text field or template field the source does not have."""
    if not columns:  # an empty source: nothing to check, nothing will be written
        return
    if cfg.text_template is not None:
        missing = [f for f in _template_fields(cfg.text_template) if f not in columns]
        if missing:
            raise UserError(f"fields {missing} not in the source's columns {columns}",
                            path=config_path, field="text_template")
    elif cfg.text_field not in columns:
        raise UserError(f"{cfg.text_field!r} is not a column of the source (columns: {columns})",
                        path=config_path, field="text_field")


def document_dataset(cfg: DatasetConfig, config_path: str | Path, rank: int = 0, world_size: int = 1):
    """The ``datasets.IterableDataset`` of this rank's documents, one column ``__document__``."""
    from datasets.distributed import split_dataset_by_node

    ds = _load_rows(cfg, config_path)
    # Some builders (text, some Hub sets) resolve their columns only when read: peek one row.
    columns = ds.column_names or list(next(iter(ds.take(1)), {}).keys())
    _check_columns(cfg, columns, config_path)
    template, field, sep = cfg.text_template, cfg.text_field, cfg.join_separator
    fields = _template_fields(template) if template is not None else [field]
    lo, hi = cfg.min_chars, cfg.max_chars

    def to_documents(batch: dict[str, list]) -> dict[str, list[str]]:
        if template is None:
            texts = [t if isinstance(t, str) else "" for t in batch[field]]
        else:
            texts = [template.format_map({f: "" if v is None else v for f, v in zip(fields, row)})
                     for row in zip(*(batch[f] for f in fields))]
        if cfg.join_rows > 1:
            texts = [sep.join(t for t in texts[i:i + cfg.join_rows] if t)
                     for i in range(0, len(texts), cfg.join_rows)]
        return {DOC_COLUMN: [t for t in texts if lo <= len(t) and (hi is None or len(t) <= hi)]}

    # join_rows rows per map batch: a document never spans two source files.
    batch = cfg.join_rows * max(1, 1000 // cfg.join_rows)
    if cfg.join_rows == 1 and cfg.shuffle_buffer > 0:
        # Rows are documents: shuffle the rows (Arrow-backed, ~5x faster than shuffling mapped rows).
        ds = ds.shuffle(seed=cfg.seed, buffer_size=cfg.shuffle_buffer)
    ds = ds.map(to_documents, batched=True, batch_size=batch, remove_columns=columns)
    if cfg.join_rows > 1 and cfg.shuffle_buffer > 0:
        # Rows are pieces of documents (sentences): join consecutive rows first, then shuffle documents.
        ds = ds.shuffle(seed=cfg.seed, buffer_size=cfg.shuffle_buffer)
    if world_size > 1:
        ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
    return ds


def iter_documents(cfg: DatasetConfig, config_path: str | Path, rank: int = 0, world_size: int = 1,
                   batch_docs: int | None = None) -> Iterator[list[str]]:
    """This rank's documents in batches of ``batch_docs`` (default: the config's).

    The source is opened now (a missing file or an unreachable Hub fails here);
    rows are read as the iterator is consumed.
    """
    ds = document_dataset(cfg, config_path, rank, world_size)
    return (batch[DOC_COLUMN] for batch in ds.iter(batch_size=batch_docs or cfg.batch_docs))
