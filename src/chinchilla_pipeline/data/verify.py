"""Re-read a prepared dataset and check it against its manifest (and the tokenizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import sha256_file
from ..errors import UserError
from ..schema import read_json
from .layout import INDEX_SUFFIX, SHARD_SUFFIX, TOKEN_BYTES_NAME, index_path
from .manifest import SPLITS
from .reader import open_prepared
from .shards import digest_shard, open_shard


def verify_dataset(path: str | Path, tokenizer_dir: str | Path | None = None) -> list[str]:
    """Every problem found (empty when the dataset is intact): sizes, checksums, headers,
    token ids below the vocabulary size, documents starting with end-of-text, totals,
    validation documents unique and absent from train, the bytes-per-token table, and the
    tokenizer's sha256 (and the table recomputed from it) when ``tokenizer_dir`` is given."""
    ds = open_prepared(path)
    m = ds.manifest
    problems: list[str] = []
    for split in SPLITS:
        info = m["splits"][split]
        tot_tokens = tot_docs = 0
        for entry in info["shards"]:
            bin_path = ds.path / entry["path"]
            where = f"{split}/{entry['path']}"
            if not bin_path.is_file() or not index_path(bin_path).is_file():
                problems.append(f"{where}: missing {SHARD_SUFFIX} or {INDEX_SUFFIX} file")
                continue
            sha, top = digest_shard(bin_path)  # sha256 and largest id in one read
            if sha != entry["sha256"]:
                problems.append(f"{where}: sha256 differs from the manifest")
            if sha256_file(index_path(bin_path)) != entry["index_sha256"]:
                problems.append(f"{where}: index sha256 differs from the manifest")
            try:
                shard = open_shard(bin_path)
            except UserError as err:
                problems.append(f"{where}: {err}")
                continue
            if (shard.num_tokens, shard.num_docs) != (entry["num_tokens"], entry["num_docs"]):
                problems.append(
                    f"{where}: header has {shard.num_tokens} tokens / {shard.num_docs} documents, "
                    f"manifest {entry['num_tokens']} / {entry['num_docs']}"
                )
            if (shard.vocab_size, shard.eot_id) != (ds.vocab_size, ds.eot_id):
                problems.append(f"{where}: vocabulary or end-of-text id differs from the manifest")
            if top >= ds.vocab_size:
                problems.append(f"{where}: token id {top} >= vocabulary size {ds.vocab_size}")
            if entry.get("max_token_id") not in (None, top):
                problems.append(f"{where}: largest token id is {top}, manifest says {entry['max_token_id']}")
            if shard.num_docs and not np.all(shard.tokens[shard.doc_starts[:-1]] == ds.eot_id):
                problems.append(f"{where}: a document does not start with end-of-text")
            tot_tokens += entry["num_tokens"]
            tot_docs += entry["num_docs"]
        if (tot_tokens, tot_docs) != (info["num_tokens"], info["num_docs"]):
            problems.append(
                f"{split}: shards sum to {tot_tokens} tokens / {tot_docs} documents, "
                f"manifest says {info['num_tokens']} / {info['num_docs']}"
            )
    if not problems:  # each part was deduplicated against its own validation split
        parts = [open_prepared(ds.path / p["path"]) for p in m["parts"]] if m.get("parts") else [ds]
        problems += [f"{p.path.name}/{line}" if p is not ds else line for p in parts for line in _validation_overlap(p)]
    table = _token_bytes(ds, problems)
    if tokenizer_dir is not None:
        from ..tokenizer.load import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        if tok.sha256 != ds.tokenizer_sha256:
            problems.append(
                f"tokenizer {tok.path} (sha256 {tok.sha256[:12]}) is not the one the shards "
                f"were made with ({ds.tokenizer_sha256[:12]})"
            )
        problems += _tokenizer_held_out(tok.path.parent, m)
        if table is not None:
            from ..tokenizer.token_bytes import token_byte_lengths

            if not np.array_equal(table, token_byte_lengths(tok)):
                problems.append(f"{TOKEN_BYTES_NAME}: differs from the bytes per token of {tok.path}")
    return problems


def _token_bytes(ds, problems: list[str]) -> np.ndarray | None:
    """The dataset's bytes-per-token table (``PreparedDataset.token_bytes``: present, its sha256, one entry per
    id), with end-of-text at 0 bytes; None, and the problem appended, when it is missing or wrong."""
    try:
        table = ds.token_bytes()
    except UserError as err:
        problems.append(str(err))
        return None
    if table[ds.eot_id] != 0 or table.min() < 0:
        problems.append(f"{TOKEN_BYTES_NAME}: end-of-text must count 0 bytes and no id fewer")
        return None
    return table


def _doc_keys(shard) -> np.ndarray:
    """A cheap int64 per document that equal documents share: its length, first text token and last token
    mixed (distinct documents may share one: it only picks which documents to compare)."""
    starts, ends = shard.doc_starts[:-1].astype(np.int64), shard.doc_starts[1:].astype(np.int64)
    first = shard.tokens[np.minimum(starts + 1, ends - 1)].astype(np.int64)
    last = shard.tokens[ends - 1].astype(np.int64)
    return ((ends - starts) << 40) ^ (first << 20) ^ last


def _unchecked(ds, split: str) -> list:
    """``ds``'s shards of ``split``, opened without ``PreparedDataset.shards``' integrity check: ``verify_dataset``
    has just read and checked every one (its hashes, ids and headers), once."""
    return [open_shard(ds.path / e["path"]) for e in ds.manifest["splits"][split]["shards"]]


def _validation_overlap(ds) -> list[str]:
    """Re-check on the tokens what ``prepare`` guarantees on the text: no validation document twice, none in
    train. Equal texts give equal tokens (and byte-level BPE decodes tokens back to the text), so comparing
    token sequences is exact; a key of length and two tokens picks the few training documents to compare."""
    val: set[bytes] = set()
    repeated = 0
    for shard in _unchecked(ds, "validation"):
        for a, b in zip(shard.doc_starts[:-1], shard.doc_starts[1:]):
            doc = shard.tokens[a:b].tobytes()
            repeated += doc in val
            val.add(doc)
    problems = [f"validation: {repeated} documents appear more than once"] if repeated else []
    if not val:
        return problems
    keys = np.concatenate([_doc_keys(s) for s in _unchecked(ds, "validation")])
    in_train = 0
    for shard in _unchecked(ds, "train"):
        for i in np.flatnonzero(np.isin(_doc_keys(shard), keys)):
            in_train += shard.tokens[shard.doc_starts[i] : shard.doc_starts[i + 1]].tobytes() in val
    if in_train:
        problems.append(f"train: {in_train} documents equal a validation document")
    return problems


def _tokenizer_held_out(tokenizer_dir: Path, m: dict) -> list[str]:
    """When the tokenizer's mix read this dataset, it must have held out this very validation split:
    tokenizer_report.json and the manifest name the same ``validation_sha256``; for a dataset in W parts
    (merged, or one part), the report's ``part_validation_sha256`` of ``tokenizer-train --world_size W``
    names each part's."""
    from ..tokenizer.report import REPORT_FILE

    rpath = tokenizer_dir / REPORT_FILE
    report = read_json(rpath) if rpath.is_file() else {}
    src = report.get("sources", {}).get(m["name"], {})
    if "validation_sha256" not in src:  # the tokenizer did not read this dataset (or predates the hygiene)
        return []
    world_size = m.get("world_size") or 1
    if world_size == 1:
        ours = m.get("hygiene", {}).get("validation_sha256")
        if ours is not None and src["validation_sha256"] != ours:
            return [
                f"the tokenizer held out another validation split of {m['name']} than this dataset's (sha256 "
                f"{src['validation_sha256'][:12]} vs {ours[:12]}): it may have trained on this validation text"
            ]
        return []
    if m.get("parts"):  # merged: each part's validation split, in rank order
        parts = [(rank, p["path"], p.get("validation_sha256")) for rank, p in enumerate(m["parts"])]
    else:  # one part of W
        parts = [(m.get("rank"), "", m.get("hygiene", {}).get("validation_sha256"))]
    held = report.get("held_out_world_size", 1)
    theirs = src.get("part_validation_sha256")
    if held != world_size or theirs is None or len(theirs) != world_size:
        return [
            f"the tokenizer held out the validation split of {m['name']} for --world_size "
            f"{'1' if held == 1 else f'1 and {held}'}, not for this dataset's {world_size} parts: it may have "
            f"trained on their validation text (tokenizer-train --world_size {world_size})"
        ]
    return [
        f"{where + '/' if where else ''}the tokenizer held out another validation split of part {rank} of "
        f"{m['name']} than this part's (sha256 {theirs[rank][:12]} vs {ours[:12]}): it may have trained on this "
        "validation text"
        for rank, where, ours in parts
        if ours is not None and rank is not None and theirs[rank] != ours
    ]
