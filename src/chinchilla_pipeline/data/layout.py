"""Where each file of a prepared dataset lives: every name, in one place (paths only, no I/O).

One dataset directory (``prepare``; ``manifest.write_token_dataset`` for small ones)::

    <out_dir>/<name>/                 dataset_dir
        manifest.json                 MANIFEST_NAME, written last: without it the dataset is not finished
        token_bytes.npy               TOKEN_BYTES_NAME: UTF-8 bytes per token id (validation bits per byte)
        train_00000.bin  .idx  ...    shard_name, index_path: tokens, document offsets (format: shards.py)
        validation_00000.bin  .idx
        .progress.json                PROGRESS_NAME: the complete shards of an unfinished run (split_writer.py)
        .source.json                  SOURCE_NAME: the Hub commit a Hub source's run reads (hub.py)

A dataset prepared in W parts (``--rank R --world_size W``) holds one such directory per part,
``<out_dir>/<name>/part_0000R_of_0000W/`` (``part_dir``), and after ``merge`` a ``manifest.json``
(shard paths into the parts) and ``token_bytes.npy`` beside them.

Two names come from the modules that own them for every output, not only datasets: the writer's lock
``.<name>.lock`` beside the directory (``lock.lock_path``) and ``.<file>.tmp.<pid>`` for a write under way
(``atomic.atomic_open``). The names are a contract with datasets already on disk: renaming one makes
them unreadable (``tests/test_layout.py`` pins them).
"""

from __future__ import annotations

from pathlib import Path

MANIFEST_NAME = "manifest.json"
TOKEN_BYTES_NAME = "token_bytes.npy"
PROGRESS_NAME = ".progress.json"
SOURCE_NAME = ".source.json"
SHARD_SUFFIX = ".bin"  # a shard's tokens
INDEX_SUFFIX = ".idx"  # its documents' offsets, same stem


def dataset_dir(out_dir: str | Path, name: str) -> Path:
    """The directory of dataset ``name`` (whole, or the parent of its parts)."""
    return Path(out_dir) / name


def part_dir(out_dir: str | Path, name: str, rank: int, world_size: int) -> Path:
    """Where part ``rank`` of ``world_size`` is written: the dataset's own directory when there is one part."""
    base = dataset_dir(out_dir, name)
    return base if world_size == 1 else base / f"part_{rank:05d}_of_{world_size:05d}"


def shard_name(split: str, index: int) -> str:
    """The ``index``-th (from 0) shard of ``split``: ``train_00000.bin``."""
    return f"{split}_{index:05d}{SHARD_SUFFIX}"


def index_path(bin_path: str | Path) -> Path:
    """The index file of shard ``bin_path``."""
    return Path(bin_path).with_suffix(INDEX_SUFFIX)
