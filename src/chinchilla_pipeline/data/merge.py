"""Merge the parts that ``--rank/--world_size`` runs wrote into one manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..atomic import write_bytes, write_json
from ..errors import UserError
from ..schema import read_json
from .hygiene import HYGIENE_COUNTERS
from .layout import MANIFEST_NAME, TOKEN_BYTES_NAME, dataset_dir, part_dir
from .manifest import SPLITS, TOKEN_BYTES_FIELD, build_manifest, target_fields


def _without_caps(config: dict[str, Any]) -> dict[str, Any]:
    """A config without the caps ``prepare`` may override on its command line."""
    return {k: v for k, v in config.items() if k not in ("max_samples", "max_tokens")}


def merge_parts(
    out_dir: str | Path,
    name: str,
    world_size: int,
    config: dict[str, Any] | None = None,
    config_path: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/<name>/manifest.json`` listing every part's shards (paths into the parts).

    ``config`` (the dataset config as loaded, by alias) must be the one every part ran with.
    """
    if world_size < 2:
        raise UserError(f"expected the number of parts (at least 2), got {world_size}", field="--world_size")
    base = dataset_dir(out_dir, name)
    parts = []
    for rank in range(world_size):
        mpath = part_dir(out_dir, name, rank, world_size) / MANIFEST_NAME
        if not mpath.is_file():
            raise UserError(f"part {rank} of {world_size} is not finished (no {mpath})", path=base)
        part = read_json(mpath)
        if "hygiene" not in part:
            raise UserError(
                f"part {rank} was prepared before validation deduplication; prepare it again with --overwrite",
                path=mpath,
            )
        if TOKEN_BYTES_FIELD not in part:
            raise UserError(
                f"part {rank} has no {TOKEN_BYTES_NAME} (prepared before it existed); re-run its `chinchilla "
                "prepare` with the same config and --rank/--world_size (it adds the table without tokenizing again)",
                path=mpath,
                field=TOKEN_BYTES_FIELD,
            )
        parts.append((mpath.parent.name, part))
    first = parts[0][1]
    if config is not None and _without_caps(first["config"]) != _without_caps(config):
        raise UserError(f"part {parts[0][0]} was prepared with another config", path=config_path)
    for sub, m in parts[1:]:
        # source: the Hub commit read
        for key in ("tokenizer_sha256", "vocab_size", "eot_id", "config", "source", TOKEN_BYTES_FIELD):
            if m.get(key) != first.get(key):
                raise UserError(f"part {sub} differs from part 0 in {key!r}", path=base)
    splits = {
        s: [dict(e, path=f"{sub}/{e['path']}") for sub, m in parts for e in m["splits"][s]["shards"]] for s in SPLITS
    }
    reasons = sorted({m["stop_reason"] for _, m in parts})
    num_train = sum(m["splits"]["train"]["num_tokens"] for _, m in parts)
    fp = hashlib.sha256("".join(m["fingerprint"] for _, m in parts).encode()).hexdigest()
    # The parts' table (equal in all: one tokenizer) beside the merged manifest, so the dataset reads as one.
    write_bytes(base / TOKEN_BYTES_NAME, (base / parts[0][0] / TOKEN_BYTES_NAME).read_bytes())
    manifest = build_manifest(
        name=first["name"],
        vocab_size=first["vocab_size"],
        eot_id=first["eot_id"],
        tokenizer_sha256=first["tokenizer_sha256"],
        splits=splits,
        token_bytes_sha256=first[TOKEN_BYTES_FIELD],
        config=first["config"],
        config_path=first["config_path"],
        fingerprint=fp,
        rank=None,
        world_size=world_size,
        stop_reason=reasons[0] if len(reasons) == 1 else "+".join(reasons),
        caps={
            k: (sum(m["caps"][k] for _, m in parts) if first["caps"][k] is not None else None) for k in first["caps"]
        },
        num_docs_read=sum(m["num_docs_read"] for _, m in parts),
        input={k: sum(m["input"][k] for _, m in parts) for k in first["input"]},
        files=[
            {"file": f["file"], **{s: sum(m["files"][i][s] for _, m in parts) for s in ("validation", "train")}}
            for i, f in enumerate(first["files"])
        ],
        # JSON/CSV: every part scans the same source files; parquet: a part whose stream met an undecodable row
        # group decoded them all, the others none.
        bad_records=max((m.get("bad_records") for _, m in parts), key=lambda b: (b or {}).get("skipped", 0)),
        hygiene={
            "validation": "each part's own validation split (its stream's first unique documents)",
            "train": "each part's documents after them, less exact duplicates of that part's validation",
            **{k: sum(m["hygiene"][k] for _, m in parts) for k in HYGIENE_COUNTERS},
        },
        parts=[
            {
                "path": sub,
                "stop_reason": m["stop_reason"],
                "fingerprint": m["fingerprint"],
                "validation_sha256": m["hygiene"]["validation_sha256"],
            }
            for sub, m in parts
        ],
        **target_fields(first["config"].get("_target_tokens"), num_train),
        **({"source": first["source"]} if first.get("source") else {}),
    )
    write_json(base / MANIFEST_NAME, manifest)
    return manifest
