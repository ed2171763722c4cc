"""Benchmark the BPE trainers (``trainers.py``) on one sample of a tokenizer mix: time, memory, compression.

The sample is what ``tokenizer-train`` reads: each source's training documents after its validation split
(``train._train_documents``), the mix's counts, cut to ``max_chars_per_doc``; the held-out text is each source's
first ``report_docs`` validation documents, as in the tokenizer report. Every trainer gets the same documents,
the same vocabulary size and GPT-2's split pattern, in a fresh process of its own (spawned), so that its peak
RSS is its own: the sample loaded, then the training. Rounds alternate the trainers (the order rotates), so a
machine busy with other jobs slows each alike; the table shows the best round and the ratio to tokenizers'.

Each trainer's merges become a ``tokenizer.json`` (``trainers.from_merges``), measured like the report
(UTF-8 bytes per token on each source's held-out text), then checked: its merges against tokenizers', the file
against tokenizers' own, gigatoken's ids of the file against HF's on the held-out text, and for rustbpe its own
(tiktoken-style) encoder against HF's ids of the converted file.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...tokenizer.trainers import TRAINERS, byte_symbols, from_merges, train_merges, trainer_missing


@dataclass
class MixSample:
    """The documents ``tokenizer-train`` would train on, and each source's held-out documents."""

    train: list[str]
    held: dict[str, list[str]]
    trained: dict[str, int]
    vocab_size: int
    min_frequency: int
    eot_token: str


def mix_sample(mix_path: str | Path, max_samples: int | None = None, vocab_size: int | None = None) -> MixSample:
    """Read the mix as ``train_tokenizer`` does with one part (``max_samples``, ``vocab_size`` override it)."""
    from ...tokenizer.train import _SourceText, _train_documents, documents_per_source, load_mix

    mix, configs = load_mix(mix_path, max_samples, vocab_size)
    counts = documents_per_source(mix, configs)
    seen = {cfg.name: _SourceText() for cfg in configs}
    texts = []
    for src, cfg, n in zip(mix.sources, configs, counts):
        texts += _train_documents(cfg, src.config, n, mix.max_chars_per_doc, mix.report_docs, seen[cfg.name])
    return MixSample(
        texts,
        {name: s.held for name, s in seen.items()},
        {name: s.trained for name, s in seen.items()},
        mix.vocab_size,
        mix.min_frequency,
        mix.eot_token,
    )


def _rusage() -> tuple[float, float]:
    """(CPU seconds of this process, all its threads; its peak RSS in MiB).

    The peak is /proc's VmHWM, this process's own: a spawned child's ru_maxrss starts at its parent's, which
    Linux carries over the exec."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    peak = r.ru_maxrss  # KiB; elsewhere than Linux, the parent's may be in it
    status = Path("/proc/self/status")
    if status.is_file():
        peak = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return r.ru_utime + r.ru_stime, peak / 1024


def _child(name: str, sample_path: str, out_path: str, check: bool) -> None:
    """One trainer in its own process: train (timed), then the checks that need its own objects."""
    with open(sample_path, "rb") as f:
        sample: MixSample = pickle.load(f)
    cpu0, rss0 = _rusage()
    t0 = time.perf_counter()
    merges, native = train_merges(name, sample.train, sample.vocab_size, sample.min_frequency, sample.eot_token)
    wall = time.perf_counter() - t0
    cpu1, rss1 = _rusage()
    result = {
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "rss_before_mib": rss0,
        "peak_rss_mib": rss1,
        "merges": [[a.hex(), b.hex()] for a, b in merges],
    }
    if name == "tokenizers" and check:  # the file train.py writes, to compare from_merges' file with
        result["tokenizer_json"] = native.to_str()
    if name == "rustbpe" and check:  # its own encoder against HF's ids of the converted file
        hf = from_merges(merges, sample.eot_token)
        ranks = {r: bytes(t) for t, r in native.get_mergeable_ranks()}
        symbols = byte_symbols()
        differ = 0
        for docs in sample.held.values():
            for doc, enc in zip(docs, hf.encode_batch(docs, add_special_tokens=False)):
                mine = ["".join(symbols[b] for b in ranks[i]) for i in native.encode(doc)]
                differ += mine != enc.tokens
        result["native_differ_docs"] = differ
    Path(out_path).write_text(json.dumps(result))


def _run_one(name: str, sample_path: str, out_dir: Path, round_: int) -> dict:
    out = out_dir / f"{name}.{round_}.json"
    proc = multiprocessing.get_context("spawn").Process(target=_child, args=(name, sample_path, str(out), round_ == 0))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"error": f"exit code {proc.exitcode}"}
    return json.loads(out.read_text())


def _bytes_per_token(tok, held: dict[str, list[str]]) -> dict[str, float]:
    bpt = {}
    for source, docs in held.items():
        num_tokens = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
        bpt[source] = sum(len(d.encode("utf-8")) for d in docs) / num_tokens if num_tokens else 0.0
    return bpt


def _gigatoken_differ(tokenizer_json: str, held: dict[str, list[str]]) -> int | None:
    """Held-out documents whose gigatoken ids differ from HF's for this file (None: gigatoken missing)."""
    if trainer_missing("gigatoken"):
        return None
    from ...tokenizer.encoders import open_encoder

    docs = [d for ds in held.values() for d in ds]
    giga, hf = (open_encoder(n, tokenizer_json, parallel=True)(docs) for n in ("gigatoken", "hf"))
    if (giga[1] == hf[1]).all() and (giga[0] == hf[0]).all():
        return 0
    import numpy as np

    ends_g, ends_h = np.cumsum(giga[1]), np.cumsum(hf[1])
    differ = 0
    for i in range(len(docs)):
        g = giga[0][ends_g[i] - giga[1][i] : ends_g[i]]
        h = hf[0][ends_h[i] - hf[1][i] : ends_h[i]]
        differ += not np.array_equal(g, h)
    return differ


def bench_train(
    sample: MixSample, trainers: tuple[str, ...] = TRAINERS, rounds: int = 2, work_dir: str | Path | None = None
) -> dict:
    """Train each available trainer ``rounds`` times on ``sample``; measure and compare (see the module doc)."""
    names = [n for n in trainers if not trainer_missing(n)]
    results: dict[str, dict] = {n: {"missing": trainer_missing(n)} for n in trainers if trainer_missing(n)}
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        sample_path = Path(tmp) / "sample.pkl"
        with open(sample_path, "wb") as f:
            pickle.dump(sample, f)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)] if names else []
            for name in order:
                runs[name].append(_run_one(name, str(sample_path), Path(tmp), r))
    reference = None
    for name in names:
        ok = [x for x in runs[name] if "error" not in x]
        if not ok:
            results[name] = {"error": runs[name][0]["error"]}
            continue
        merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in ok[0]["merges"]]
        tok = from_merges(merges, sample.eot_token)
        tokenizer_json = tok.to_str()
        res = {
            "wall_s": min(x["wall_s"] for x in ok),
            "wall_s_median": statistics.median(x["wall_s"] for x in ok),
            "cpu_s": min(x["cpu_s"] for x in ok),
            "peak_rss_mib": max(x["peak_rss_mib"] for x in ok),
            "rss_before_mib": min(x["rss_before_mib"] for x in ok),
            "rounds": len(ok),
            "num_merges": len(merges),
            "deterministic": all(x["merges"] == ok[0]["merges"] for x in ok),
            "bytes_per_token": _bytes_per_token(tok, sample.held),
            "gigatoken_differ_docs": _gigatoken_differ(tokenizer_json, sample.held),
        }
        if "native_differ_docs" in ok[0]:
            res["native_differ_docs"] = ok[0]["native_differ_docs"]
        if name == "tokenizers":
            res["file_equal_to_trained"] = tokenizer_json == ok[0].get("tokenizer_json")
            reference = (merges, res)
        results[name] = res
    if reference:
        ref_merges, ref = reference
        for name in names:
            res = results[name]
            if "wall_s" not in res:
                continue
            merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in runs[name][0]["merges"]]
            first = next((i for i, (m, n) in enumerate(zip(merges, ref_merges)) if m != n), None)
            if first is None and len(merges) != len(ref_merges):
                first = min(len(merges), len(ref_merges))
            res["same_merges"] = first is None
            res["first_different_merge"] = first
            res["merges_in_common"] = len(set(merges) & set(ref_merges))
            res["wall_ratio"] = res["wall_s"] / ref["wall_s"]
            res["no_worse_everywhere"] = all(
                res["bytes_per_token"][s] >= ref["bytes_per_token"][s] - 1e-12 for s in ref["bytes_per_token"]
            )
    return {
        "num_train_docs": len(sample.train),
        "num_train_bytes": sum(len(t.encode("utf-8")) for t in sample.train),
        "trained": sample.trained,
        "num_heldout_docs": {s: len(d) for s, d in sample.held.items()},
        "vocab_size": sample.vocab_size,
        "trainers": results,
    }


def format_bench(report: dict) -> str:
    """The table: one line per trainer, then bytes per token per source."""
    trainers = report["trainers"]
    sources = list(report["num_heldout_docs"])
    lines = [
        f"sample: {report['num_train_docs']:,} training documents, {report['num_train_bytes'] / 1e6:,.1f} MB; "
        f"vocabulary {report['vocab_size']:,}; held out: "
        + ", ".join(f"{s} {n}" for s, n in report["num_heldout_docs"].items()),
        f"{'trainer':<12}{'wall s':>9}{'ratio':>7}{'CPU s':>8}{'RSS MiB':>9}{'peak':>7}{'same merges':>13}"
        f"{'in common':>11}{'giga=HF':>9}{'native=HF':>11}",
    ]
    for name, r in trainers.items():
        if "wall_s" not in r:
            lines.append(f"{name:<12}  {r.get('missing') or r.get('error')}")
            continue
        same = "yes" if r.get("same_merges") else f"no (#{r.get('first_different_merge')})"
        giga = {None: "n/a", 0: "yes"}.get(r["gigatoken_differ_docs"], f"{r['gigatoken_differ_docs']} differ")
        native = {None: "-", 0: "yes"}.get(r.get("native_differ_docs"), f"{r.get('native_differ_docs')} differ")
        lines.append(
            f"{name:<12}{r['wall_s']:>9.2f}{r.get('wall_ratio', float('nan')):>7.2f}{r['cpu_s']:>8.2f}"
            f"{r['rss_before_mib']:>9,.0f}{r['peak_rss_mib']:>7,.0f}{same:>13}"
            f"{r.get('merges_in_common', 0):>11,}{giga:>9}{native:>11}"
        )
    lines.append(
        "RSS: the process with the sample loaded, before training; peak: its high-water mark after. "
        "in common: merges also in tokenizers' (any order)"
    )
    lines.append("bytes per token on each source's held-out text:")
    lines.append(f"{'trainer':<12}" + "".join(f"{s:>18}" for s in sources))
    for name, r in trainers.items():
        if "bytes_per_token" in r:
            lines.append(f"{name:<12}" + "".join(f"{r['bytes_per_token'][s]:>18.4f}" for s in sources))
    return "\n".join(lines)
