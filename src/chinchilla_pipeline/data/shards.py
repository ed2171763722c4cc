"""Token shard format (a contract with the training side; documented in docs/data.md).

A shard is two files (``layout.shard_name``, ``layout.index_path``):

``<split>_<NNNNN>.bin``
    a 256-byte header of 32 little-endian int64 values, then the tokens as
    little-endian uint16 (vocabulary <= 65,536) or uint32. Header slots:
    ``[0] magic 20261126, [1] version 1, [2] bytes per token (2 or 4),
    [3] number of tokens, [4] number of documents, [5] vocabulary size,
    [6] end-of-text token id``; the rest are zero.

``<split>_<NNNNN>.idx``
    a 256-byte header ``[0] magic 20261127, [1] version 1, [2] 8, [3] number
    of documents``, then ``num_docs + 1`` little-endian int64 offsets: the
    start of each document in the shard's token array, and finally the token
    count. Every document begins with the end-of-text token (as llm.c does), so
    documents can be concatenated freely and a window that starts on a document
    boundary starts on end-of-text.

uint16 halves the size of the data (1.5B tokens = 3.0 GB instead of 6.0 GB);
GPT-2's 50,257-token vocabulary fits.

Integrity: the manifest records each shard's sha256 and largest token id
(``digest_shard``, one read at write time); ``check_shard`` re-reads a shard
before it is used and refuses one whose bytes or ids do not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_open, fsync_dir, sha256_file
from ..errors import UserError
from .layout import INDEX_SUFFIX, index_path

TOKENS_MAGIC = 20261126
INDEX_MAGIC = 20261127
VERSION = 1
HEADER_INT64 = 32  # 32 x int64 = 256 bytes, keeps the token array 256-byte aligned
HEADER_BYTES = HEADER_INT64 * 8


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def _header(values: list[int]) -> bytes:
    h = np.zeros(HEADER_INT64, dtype="<i8")
    h[: len(values)] = values
    return h.tobytes()


class ShardWriter:
    """Append documents' tokens to one shard; ``close()`` makes it visible atomically.

    Tokens go to a temporary file as they come (memory holds one batch and the
    per-document lengths, ~8 bytes per document), the header is patched at the
    end, then the ``.bin`` and ``.idx`` are fsynced and renamed into place.
    """

    def __init__(self, bin_path: str | Path, vocab_size: int, eot_id: int):
        self.bin_path = Path(bin_path)
        self.vocab_size = vocab_size
        self.eot_id = eot_id
        self.dtype = token_dtype(vocab_size)
        self.num_tokens = 0
        self._doc_lens: list[np.ndarray] = []
        self._ctx = atomic_open(self.bin_path, "wb")
        self._f = self._ctx.__enter__()
        self._f.write(bytes(HEADER_BYTES))

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray) -> None:
        """Append whole documents: ``tokens`` concatenated, ``doc_lens`` their lengths."""
        self._f.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.num_tokens += int(tokens.size)
        self._doc_lens.append(np.asarray(doc_lens, dtype=np.int64))

    @property
    def num_docs(self) -> int:
        return sum(a.size for a in self._doc_lens)

    def close(self) -> None:
        lens = np.concatenate(self._doc_lens) if self._doc_lens else np.zeros(0, np.int64)
        assert int(lens.sum()) == self.num_tokens, "document lengths must cover the tokens"
        self._f.seek(0)
        self._f.write(
            _header(
                [TOKENS_MAGIC, VERSION, self.dtype.itemsize, self.num_tokens, lens.size, self.vocab_size, self.eot_id]
            )
        )
        offsets = np.zeros(lens.size + 1, dtype="<i8")
        np.cumsum(lens, out=offsets[1:])
        # The index goes first: a .bin under its final name always has its .idx.
        with atomic_open(index_path(self.bin_path), "wb") as f:
            f.write(_header([INDEX_MAGIC, VERSION, 8, lens.size]))
            f.write(offsets.tobytes())
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


@dataclass(frozen=True)
class Shard:
    """A memory-mapped shard: ``tokens`` (zero-copy view) and ``doc_starts`` (num_docs + 1)."""

    path: Path
    tokens: np.ndarray
    doc_starts: np.ndarray
    vocab_size: int
    eot_id: int

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.size)

    @property
    def num_docs(self) -> int:
        return int(self.doc_starts.size - 1)


def read_header(path: Path, magic: int) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise UserError("shard file not found", path=path) from None
    if len(raw) < HEADER_BYTES:
        raise UserError(f"truncated header ({len(raw)} of {HEADER_BYTES} bytes)", path=path)
    h = np.frombuffer(raw, dtype="<i8")
    if h[0] != magic:
        raise UserError(f"bad magic {h[0]} (expected {magic}); not a shard of this format", path=path)
    if h[1] != VERSION:
        raise UserError(f"unsupported version {h[1]} (expected {VERSION})", path=path)
    return h


def open_shard(bin_path: str | Path) -> Shard:
    """Memory-map a shard and its index; checks magic, version and sizes."""
    bin_path = Path(bin_path)
    h = read_header(bin_path, TOKENS_MAGIC)
    itemsize, num_tokens, num_docs, vocab_size, eot_id = (int(x) for x in h[2:7])
    if itemsize not in (2, 4):
        raise UserError(f"bad bytes per token {itemsize} (expected 2 or 4)", path=bin_path)
    expected = HEADER_BYTES + num_tokens * itemsize
    actual = os.path.getsize(bin_path)
    if actual != expected:
        raise UserError(f"size {actual} bytes, header says {expected}", path=bin_path)
    dtype = np.dtype("<u2") if itemsize == 2 else np.dtype("<u4")
    tokens = (
        np.memmap(bin_path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(num_tokens,))
        if num_tokens
        else np.zeros(0, dtype)
    )
    idx_path = index_path(bin_path)
    hi = read_header(idx_path, INDEX_MAGIC)
    if int(hi[3]) != num_docs:
        raise UserError(f"index has {int(hi[3])} documents, shard header says {num_docs}", path=idx_path)
    if os.path.getsize(idx_path) != HEADER_BYTES + (num_docs + 1) * 8:
        raise UserError("index size does not match its document count", path=idx_path)
    doc_starts = np.memmap(idx_path, dtype="<i8", mode="r", offset=HEADER_BYTES, shape=(num_docs + 1,))
    if doc_starts[-1] != num_tokens:
        raise UserError(f"index ends at {int(doc_starts[-1])}, shard has {num_tokens} tokens", path=idx_path)
    return Shard(bin_path, tokens, doc_starts, vocab_size, eot_id)


def remove_shard(bin_path: str | Path) -> None:
    for p in (Path(bin_path), index_path(bin_path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    fsync_dir(Path(bin_path).parent)


def digest_shard(bin_path: str | Path, chunk_bytes: int = 1 << 22) -> tuple[str, int]:
    """(sha256 of the ``.bin`` file, its largest token id or -1 when empty), in one read of 4 MiB chunks."""
    h = hashlib.sha256()
    top = -1
    with open(bin_path, "rb") as f:
        header = f.read(HEADER_BYTES)
        h.update(header)
        itemsize = int(np.frombuffer(header, dtype="<i8")[2]) if len(header) == HEADER_BYTES else 2
        dtype = np.dtype("<u2") if itemsize == 2 else np.dtype("<u4")
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
            usable = len(chunk) - len(chunk) % dtype.itemsize
            if usable:
                top = max(top, int(np.frombuffer(chunk, dtype=dtype, count=usable // dtype.itemsize).max()))
    return h.hexdigest(), top


def check_shard(bin_path: str | Path, entry: dict, vocab_size: int) -> None:
    """Refuse a shard whose largest id reaches ``vocab_size`` or whose bytes differ from its manifest
    ``entry`` (sha256 of ``.bin`` and ``.idx``): one ``UserError`` naming the shard.

    Costs one read of the shard and its sha256 (measured 0.34 GB/s on a loaded 2-core CPU: 6 GB, the
    3B-token curriculum, in ~18 s; see docs/reliability.md).
    """
    bin_path = Path(bin_path)
    recorded = entry.get("max_token_id")
    if recorded is not None and recorded >= vocab_size:
        raise UserError(
            f"holds token id {recorded} (manifest max_token_id), outside the vocabulary of "
            f"{vocab_size}: it was tokenized with another tokenizer; prepare it again",
            path=bin_path,
        )
    if not bin_path.is_file() or not index_path(bin_path).is_file():
        raise UserError(f"shard file or its {INDEX_SUFFIX} not found (the dataset is incomplete)", path=bin_path)
    # With the id recorded, the sha256 vouches for it; an older manifest without it: find it in the same read.
    sha, top = (sha256_file(bin_path), recorded) if recorded is not None else digest_shard(bin_path)
    if sha != entry.get("sha256"):
        raise UserError(
            "is corrupt: its sha256 differs from the manifest's (changed since `prepare` wrote it); "
            "prepare the dataset again or restore the shard",
            path=bin_path,
        )
    if sha256_file(index_path(bin_path)) != entry.get("index_sha256"):
        raise UserError(
            "is corrupt: its sha256 differs from the manifest's (changed since `prepare` wrote it); "
            "prepare the dataset again or restore it",
            path=index_path(bin_path),
        )
    if top is not None and top >= vocab_size:
        raise UserError(
            f"holds token id {top}, outside the vocabulary of {vocab_size}: it was tokenized with "
            "another tokenizer; prepare it again",
            path=bin_path,
        )
