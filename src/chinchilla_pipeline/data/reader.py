"""Read a prepared dataset: the manifest plus memory-mapped, zero-copy shards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .manifest import FORMAT_VERSION, MANIFEST_NAME, SPLITS
from .shards import Shard, check_shard, open_shard


@dataclass
class PreparedDataset:
    """A finished dataset directory. ``shards(split)`` checks (``check_shard``) and memory-maps on first use."""

    path: Path
    manifest: dict[str, Any]
    _open: dict[str, list[Shard]] = field(default_factory=dict, repr=False)

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


def open_prepared(path: str | Path) -> PreparedDataset:
    """Open ``path`` (a dataset directory); a missing or unfinished one is a ``UserError``."""
    path = Path(path)
    mpath = path / MANIFEST_NAME
    if not mpath.is_file():
        raise UserError("no manifest.json: the dataset is not prepared (or not finished)", path=path)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"malformed manifest: {err.msg}", path=mpath) from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"expected format_version {FORMAT_VERSION}", path=mpath, field="format_version")
    return PreparedDataset(path, manifest)
