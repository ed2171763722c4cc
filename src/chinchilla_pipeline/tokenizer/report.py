"""Tokenizer report: compression (UTF-8 bytes per token) per source and the exact round trip."""

from __future__ import annotations

from typing import Any

from .load import LoadedTokenizer

REPORT_FILE = "tokenizer_report.json"


def tokenizer_report(
    tok: LoadedTokenizer,
    held_out: dict[str, list[str]],
    trained: dict[str, int],
    documents: dict[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Measure each source's held-out documents: bytes/token and decode(encode(text)) == text.

    ``documents`` (per source) says which documents were held out and trained on."""
    sources = {}
    for name, docs in held_out.items():
        encs = tok.tokenizer.encode_batch(docs, add_special_tokens=False)
        num_tokens = sum(len(e.ids) for e in encs)
        num_bytes = sum(len(d.encode("utf-8")) for d in docs)
        decoded = tok.tokenizer.decode_batch([e.ids for e in encs], skip_special_tokens=False)
        failures = sum(a != b for a, b in zip(docs, decoded))
        sources[name] = {
            "num_train_docs": trained.get(name, 0),
            "num_heldout_docs": len(docs),
            "num_heldout_bytes": num_bytes,
            "num_heldout_tokens": num_tokens,
            "bytes_per_token": round(num_bytes / num_tokens, 4) if num_tokens else 0.0,
            "round_trip_failures": failures,
            **(documents or {}).get(name, {}),
        }
    return {
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "sources": sources,
        "round_trip_ok": all(s["round_trip_failures"] == 0 for s in sources.values()),
        **extra,
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"vocabulary {report['vocab_size']:,}, end-of-text id {report['eot_id']}",
        f"{'source':<28}{'train docs':>12}{'held-out':>10}{'bytes/token':>13}{'round trip':>12}",
    ]
    for name, s in report["sources"].items():
        ok = "ok" if s["round_trip_failures"] == 0 else f"{s['round_trip_failures']} FAIL"
        lines.append(
            f"{name:<28}{s['num_train_docs']:>12,}{s['num_heldout_docs']:>10,}{s['bytes_per_token']:>13.3f}{ok:>12}"
        )
    if (world_size := report.get("held_out_world_size", 1)) > 1:
        skipped = sum(s.get("skipped_part_validation_docs", 0) for s in report["sources"].values())
        lines.append(
            f"held out: the validation splits of 1 part and of {world_size} parts ({skipped:,} documents of the "
            "parts' splits left out of training)"
        )
    return "\n".join(lines)
