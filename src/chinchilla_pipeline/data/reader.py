"""Read a prepared dataset: the manifest plus memory-mapped, zero-copy shards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import sha256_file
from ..errors import UserError
from .layout import MANIFEST_NAME, TOKEN_BYTES_NAME
from .manifest import FORMAT_VERSION, SPLITS, TOKEN_BYTES_FIELD
from .shards import Shard, check_shard, open_shard


@dataclass
class PreparedDataset:
    """A finished dataset directory. ``shards(split)`` checks (``check_shard``) and memory-maps on first use."""

    path: Path
    manifest: dict[str, Any]
    _open: dict[str, list[Shard]] = field(default_factory=dict, repr=False)
    _token_bytes: np.ndarray | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def eot_id(self) -> int:
        return int(self.manifest["eot_id"])

    @property
    def tokenizer_sha256(self) -> str:
        return self.manifest["tokenizer_sha256"]

    def num_tokens(self, split: str = "train") -> int:
        return int(self.manifest["splits"][split]["num_tokens"])

    def num_docs(self, split: str = "train") -> int:
        return int(self.manifest["splits"][split]["num_docs"])

    def shards(self, split: str = "train") -> list[Shard]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._open:
            entries = self.manifest["splits"][split]["shards"]
            for s in entries:  # ids within the vocabulary and bytes as prepared, before any is used
                check_shard(self.path / s["path"], s, self.vocab_size)
            self._open[split] = [open_shard(self.path / s["path"]) for s in entries]
        return self._open[split]

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes per token id (int32, ``vocab_size`` entries; 0 for special tokens), checked against the
        manifest's sha256 on first use. A dataset prepared before the table existed is a ``UserError``."""
        if self._token_bytes is None:
            mpath, path = self.path / MANIFEST_NAME, self.path / TOKEN_BYTES_NAME
            if TOKEN_BYTES_FIELD not in self.manifest or not path.is_file():
                raise UserError(
                    f"no {TOKEN_BYTES_NAME} (the UTF-8 bytes per token id that validation bits per byte divide "
                    "by): prepared before it existed; re-run `chinchilla prepare` with the same config (it adds "
                    "the table without tokenizing again; a dataset in parts: each part, then `chinchilla merge`)",
                    path=mpath,
                    field=TOKEN_BYTES_FIELD,
                )
            if sha256_file(path) != self.manifest[TOKEN_BYTES_FIELD]:
                raise UserError(f"{TOKEN_BYTES_NAME} differs from the manifest's sha256", path=path)
            table = np.load(path)
            if table.shape != (self.vocab_size,):
                raise UserError(f"has shape {table.shape}, expected ({self.vocab_size},): one entry per id", path=path)
            self._token_bytes = table
        return self._token_bytes


def open_prepared(path: str | Path) -> PreparedDataset:
    """Open ``path`` (a dataset directory); a missing or unfinished one is a ``UserError``."""
    path = Path(path)
    mpath = path / MANIFEST_NAME
    if not mpath.is_file():
        raise UserError(f"no {MANIFEST_NAME}: the dataset is not prepared (or not finished)", path=path)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"malformed manifest: {err.msg}", path=mpath) from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"expected format_version {FORMAT_VERSION}", path=mpath, field="format_version")
    return PreparedDataset(path, manifest)
