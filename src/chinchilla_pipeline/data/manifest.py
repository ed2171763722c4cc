"""``manifest.json``: what a prepared dataset holds (a contract with the training side).

The files beside it and their names: ``layout.py``. The manifest is written last, atomically: a directory
without ``manifest.json`` is not finished. Every count in it is measured from the shards written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_open, sha256_file, write_json
from .layout import MANIFEST_NAME, TOKEN_BYTES_NAME, dataset_dir, index_path, shard_name
from .shards import ShardWriter, digest_shard, token_dtype

FORMAT_VERSION = 1
SPLITS = ("train", "validation")
TOKEN_BYTES_FIELD = "token_bytes_sha256"


def write_token_bytes(directory: str | Path, table: np.ndarray) -> str:
    """Write ``token_bytes.npy`` (int32, vocab_size entries: the UTF-8 bytes each id decodes to, 0 for
    special tokens; 4 bytes x 50,257 = 201 KB for GPT-2's vocabulary) atomically; returns its sha256."""
    path = Path(directory) / TOKEN_BYTES_NAME
    with atomic_open(path) as f:
        np.save(f, np.ascontiguousarray(table, dtype=np.int32))
    return sha256_file(path)


def shard_entry(bin_path: Path, num_tokens: int, num_docs: int) -> dict[str, Any]:
    """One shard's manifest row; ``path`` is relative to the manifest's directory.

    ``max_token_id`` (-1 for an empty shard) comes from the same read as the sha256: readers
    refuse a shard whose ids reach the vocabulary size before a model ever sees them.
    """
    sha, top = digest_shard(bin_path)
    return {
        "path": bin_path.name,
        "num_tokens": num_tokens,
        "num_docs": num_docs,
        "max_token_id": top,
        "sha256": sha,
        "index_sha256": sha256_file(index_path(bin_path)),
    }


def split_summary(shards: list[dict[str, Any]]) -> dict[str, Any]:
    num_tokens = sum(s["num_tokens"] for s in shards)
    num_docs = sum(s["num_docs"] for s in shards)
    return {
        "num_tokens": num_tokens,
        "num_docs": num_docs,
        "tokens_per_doc": round(num_tokens / num_docs, 3) if num_docs else 0.0,
        "shards": shards,
    }


def target_fields(target: int | None, num_tokens: int, world_size: int = 1) -> dict[str, Any]:
    """The seed's informational target and how far the measured tokens are from it (per part)."""
    if target is None:
        return {"target_tokens": None}
    share = target / world_size
    return {
        "target_tokens": target,
        "target_delta_tokens": int(num_tokens - round(share)),
        "target_delta_fraction": round(num_tokens / share - 1, 6),
    }


@dataclass(frozen=True)
class SplitSummary:
    """One split's totals, as the manifest records them."""

    num_tokens: int
    num_docs: int
    tokens_per_doc: float


@dataclass(frozen=True)
class ManifestSummary:
    """The manifest fields that callers read, typed (``of`` a manifest dict)."""

    name: str
    train: SplitSummary
    validation: SplitSummary
    stop_reason: str
    target_tokens: int | None
    target_delta_fraction: float | None
    input: dict[str, int]

    @classmethod
    def of(cls, m: dict[str, Any]) -> "ManifestSummary":
        def split(s: str) -> SplitSummary:
            info = m["splits"][s]
            return SplitSummary(int(info["num_tokens"]), int(info["num_docs"]), float(info["tokens_per_doc"]))

        return cls(
            m["name"],
            split("train"),
            split("validation"),
            m["stop_reason"],
            m.get("target_tokens"),
            m.get("target_delta_fraction"),
            m["input"],
        )

    def describe(self) -> str:
        """One line: documents and tokens per split, why it stopped, the distance from the target."""
        tr, va = self.train, self.validation
        return (
            f"{tr.num_docs:,} documents, {tr.num_tokens:,} training tokens ({tr.tokens_per_doc:,.1f}/document), "
            f"{va.num_docs:,} validation documents ({va.num_tokens:,} tokens); stopped by {self.stop_reason}"
            + (
                f"; target {self.target_tokens:,} ({100 * self.target_delta_fraction:+.2f}%)"
                if self.target_tokens
                else ""
            )
        )


def file_counts(files: list[str], per_file: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The manifest's ``files``: each source file with the documents each split took from it."""
    return [
        {"file": f, "validation": int(per_file["validation"][i]), "train": int(per_file["train"][i])}
        for i, f in enumerate(files)
    ]


def input_summary(counts: dict[str, int]) -> str | None:
    """One line on what the source held besides the documents kept; None when nothing was dropped."""
    if not any(v for k, v in counts.items() if k != "rows_read"):
        return None
    return (
        f"{counts['rows_read']:,} rows read, {counts['rows_without_text']:,} without text"
        + (f", {counts['not_sampled']:,} outside the sample" if counts.get("not_sampled") else "")
        + "; dropped "
        f"{counts['dropped_empty']:,} empty, {counts['dropped_too_short']:,} too short, "
        f"{counts['dropped_too_long']:,} too long; {counts['documents_with_replacement_char']:,} documents "
        "with U+FFFD (invalid UTF-8 replaced)"
    )


def hygiene_summary(manifest: dict[str, Any]) -> str:
    """One line on the exact duplicates ``prepare`` dropped (data/hygiene.py)."""
    h = manifest.get("hygiene")
    if h is None:
        return "no hygiene section: not written by a prepare that deduplicates validation documents"
    return (
        f"prepare dropped {h['dropped_duplicate_of_validation']:,} training documents equal to a validation "
        f"document and {h['dropped_duplicate_in_validation']:,} repeated validation documents (exact "
        "duplicates; near-duplicates are not looked for)"
    )


def build_manifest(
    *,
    name: str,
    vocab_size: int,
    eot_id: int,
    tokenizer_sha256: str,
    splits: dict[str, list[dict[str, Any]]],
    token_bytes_sha256: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """The manifest dict; ``extra`` carries the config as run, caps, target and source counts.
    ``token_bytes_sha256`` (``write_token_bytes``) None: a dataset without the table (tests only)."""
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        "dtype": token_dtype(vocab_size).name,
        "tokenizer_sha256": tokenizer_sha256,
        **({TOKEN_BYTES_FIELD: token_bytes_sha256} if token_bytes_sha256 is not None else {}),
        "splits": {s: split_summary(splits.get(s, [])) for s in SPLITS},
        **extra,
    }


def write_token_dataset(
    out_dir: str | Path,
    name: str,
    docs: dict[str, list[np.ndarray]],
    *,
    vocab_size: int,
    eot_id: int,
    tokenizer_sha256: str = "none",
    token_bytes: np.ndarray | None = None,
    **extra: Any,
) -> Path:
    """Write already-tokenized documents (each starting with ``eot_id``) as one shard per split, and
    ``token_bytes`` (bytes per id, ``write_token_bytes``) when given: training needs it.

    For small datasets built in memory (tests, tools); ``prepare`` streams instead.
    """
    out = dataset_dir(out_dir, name)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in SPLITS:
        split_docs = docs.get(split, [])
        writer = ShardWriter(out / shard_name(split, 0), vocab_size, eot_id)
        if split_docs:
            writer.add(np.concatenate(split_docs), np.array([d.size for d in split_docs]))
        writer.close()
        splits[split] = [shard_entry(writer.bin_path, writer.num_tokens, writer.num_docs)]
    manifest = build_manifest(
        name=name,
        vocab_size=vocab_size,
        eot_id=eot_id,
        tokenizer_sha256=tokenizer_sha256,
        splits=splits,
        token_bytes_sha256=None if token_bytes is None else write_token_bytes(out, token_bytes),
        **extra,
    )
    write_json(out / MANIFEST_NAME, manifest)
    return out
