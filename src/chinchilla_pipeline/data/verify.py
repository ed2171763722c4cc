"""Re-read a prepared dataset and check it against its manifest (and the tokenizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import sha256_file
from ..errors import UserError
from .manifest import SPLITS
from .reader import open_prepared
from .shards import index_path, open_shard

SCAN_TOKENS = 1 << 24  # tokens per chunk when scanning ids (32 MB of uint16)


def verify_dataset(path: str | Path, tokenizer_dir: str | Path | None = None) -> list[str]:
    """Every problem found (empty when the dataset is intact): sizes, checksums, headers,
    token ids below the vocabulary size, documents starting with end-of-text, totals,
    and the tokenizer's sha256 when ``tokenizer_dir`` is given."""
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
                problems.append(f"{where}: missing .bin or .idx file")
                continue
            if sha256_file(bin_path) != entry["sha256"]:
                problems.append(f"{where}: sha256 differs from the manifest")
            if sha256_file(index_path(bin_path)) != entry["index_sha256"]:
                problems.append(f"{where}: index sha256 differs from the manifest")
            try:
                shard = open_shard(bin_path)
            except UserError as err:
                problems.append(f"{where}: {err}")
                continue
            if (shard.num_tokens, shard.num_docs) != (entry["num_tokens"], entry["num_docs"]):
                problems.append(f"{where}: header has {shard.num_tokens} tokens / {shard.num_docs} documents, "
                                f"manifest {entry['num_tokens']} / {entry['num_docs']}")
            if (shard.vocab_size, shard.eot_id) != (ds.vocab_size, ds.eot_id):
                problems.append(f"{where}: vocabulary or end-of-text id differs from the manifest")
            for lo in range(0, shard.num_tokens, SCAN_TOKENS):
                top = int(shard.tokens[lo:lo + SCAN_TOKENS].max())
                if top >= ds.vocab_size:
                    problems.append(f"{where}: token id {top} >= vocabulary size {ds.vocab_size}")
                    break
            if shard.num_docs and not np.all(shard.tokens[shard.doc_starts[:-1]] == ds.eot_id):
                problems.append(f"{where}: a document does not start with end-of-text")
            tot_tokens += entry["num_tokens"]
            tot_docs += entry["num_docs"]
        if (tot_tokens, tot_docs) != (info["num_tokens"], info["num_docs"]):
            problems.append(f"{split}: shards sum to {tot_tokens} tokens / {tot_docs} documents, "
                            f"manifest says {info['num_tokens']} / {info['num_docs']}")
    if tokenizer_dir is not None:
        from ..tokenizer.load import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        if tok.sha256 != ds.tokenizer_sha256:
            problems.append(f"tokenizer {tok.path} (sha256 {tok.sha256[:12]}) is not the one the shards "
                            f"were made with ({ds.tokenizer_sha256[:12]})")
    return problems
