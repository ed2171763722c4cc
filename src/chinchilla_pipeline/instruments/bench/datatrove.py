"""``make bench-datatrove``: ``chinchilla prepare`` against datatrove 0.10.1 on the same files, tokenizer and cores.

The input: the test corpus (789 documents of Python's help topics) written ``--copies`` times into each of 4
gzipped JSON-lines files, each copy in its own seeded order (34 copies: 4 x 15.8 MB of text, ~14.2M tokens);
the tokenizer: a byte-level BPE trained on the corpus (6,701 entries, as in ``bench-prepare``). Each side runs
in a fresh process on ``--workers`` cores, alternated over ``--rounds`` rounds (the order flips each round):

- prepare: ``chinchilla prepare --workers N``: the bad-record scan of every file, the ``datasets`` stream with
  its shuffle buffer of 10,000 documents, gigatoken in N worker processes with the id check against HF
  (the first 4 MB, then 1 document in 1,000), uint16 shards, their sha256, the manifest;
- datatrove: ``JsonlReader`` + ``DocumentTokenizer`` in a ``LocalPipelineExecutor`` of N tasks (``datatrove_run.py``,
  run by the separate env's Python): HF ``encode_batch`` with one thread per task, ``.ds`` + ``.index`` files,
  then the whole of each task's output shuffled into a second file.

Prints per round both wall times, tokens/s, CPU seconds and peak RSS (each with its child processes, sampled
every 20 ms from /proc) and the ratios (wall; CPU seconds, which other jobs barely move), then the medians;
both must count the same tokens (an EOT per document on each side).

    python -m chinchilla_pipeline.instruments.bench.datatrove --datatrove_python .venv-datatrove/bin/python
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...data.layout import MANIFEST_NAME, dataset_dir
from .prepare import process_tree, rss_bytes, write_config

NUM_FILES = 4


def write_inputs(corpus: Path, out: Path, copies: int, seed: int = 0) -> list[Path]:
    """``NUM_FILES`` gzipped JSON-lines files of ``copies`` copies of ``corpus``'s lines, each copy shuffled."""
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    rng = random.Random(seed)
    out.mkdir(parents=True)
    paths = []
    for k in range(NUM_FILES):
        path = out / f"part_{k}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
            for _ in range(copies):
                f.writelines(rng.sample(lines, len(lines)))
        paths.append(path)
    return paths


def _cpu_ticks(pid: int) -> int:
    """User + system CPU of ``pid`` so far, in clock ticks (0 once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)


def timed(cmd: list[str]) -> tuple[float, float, float, str]:
    """Run ``cmd``: its wall seconds, CPU seconds and peak RSS (MB) with its descendants', and its stdout.

    CPU is each process's last sample (every 20 ms) from /proc: getrusage misses the CPU of children that no
    parent waits for (datatrove's pool workers), and this loses at most 20 ms per process."""
    ticks: dict[int, int] = {}
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        peak = 0
        while p.poll() is None:
            pids = process_tree(p.pid)
            ticks.update((q, max(ticks.get(q, 0), _cpu_ticks(q))) for q in pids)
            peak = max(peak, sum(rss_bytes(q) for q in pids))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return seconds, sum(ticks.values()) / os.sysconf("SC_CLK_TCK"), peak / 1e6, text


def bench_datatrove(datatrove_python: str, corpus: Path, copies: int, rounds: int, workers: int) -> int:
    from ...tokenizer.load import load_tokenizer
    from ...tokenizer.train import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = write_inputs(corpus, d / "in", copies)
        mix = d / "mix.json"
        base = write_config(d, "bench", str(corpus), 1)
        mix.write_text(
            json.dumps(
                {"vocab_size": 6_701, "max_samples": 100_000, "report_docs": 1, "sources": [{"config": str(base)}]}
            )
        )
        train_tokenizer(mix, d / "tok")
        tok = load_tokenizer(d / "tok")
        from tokenizers import Tokenizer

        eos = Tokenizer.from_file(str(tok.path)).id_to_token(tok.eot_id)
        cfg = d / "ours.json"
        cfg.write_text(
            json.dumps(
                {
                    "name": "ours",
                    "source": {"type": "local", "format": "json", "data_files": [str(f) for f in files]},
                    "validation_docs": 0,  # datatrove holds nothing out
                    "shuffle_buffer": 10_000,
                    "shard_tokens": 50_000_000,
                }
            )
        )
        text_mb = sum(len(gzip.decompress(f.read_bytes())) for f in files) / 1e6
        ours_cmd = [sys.executable, "-m", "chinchilla_pipeline.cli", "prepare", "--quiet", "--config_path", str(cfg)]
        ours_cmd += [
            "--tokenizer",
            str(d / "tok"),
            "--out_dir",
            str(d / "ours"),
            "--workers",
            str(workers),
            "--overwrite",
        ]
        side = Path(__file__).with_name("datatrove_run.py")
        theirs_cmd = [datatrove_python, str(side), str(d / "in"), str(tok.path), str(d / "dt"), eos, str(workers)]
        print(
            f"{NUM_FILES} files, {text_mb:.1f} MB of text; tokenizer {tok.vocab_size:,} entries; {workers} workers "
            f"each; {rounds} rounds, alternated",
            flush=True,
        )
        ratios, cpu_ratios, ours_rates, dt_rates = [], [], [], []
        for r in range(rounds):
            results = {}
            for name in ("prepare", "datatrove") if r % 2 == 0 else ("datatrove", "prepare"):
                shutil.rmtree(d / "dt", ignore_errors=True)  # datatrove skips tasks it finds completed
                results[name] = timed(ours_cmd if name == "prepare" else theirs_cmd)
            manifest = json.loads((dataset_dir(d / "ours", "ours") / MANIFEST_NAME).read_text())
            ours_tokens = sum(manifest["splits"][s]["num_tokens"] for s in ("train", "validation"))
            dt_tokens = int(results["datatrove"][3].split("datatrove tokens")[1].split()[0])
            assert ours_tokens == dt_tokens, (ours_tokens, dt_tokens)
            (ps, pc, pm, _), (ds, dc, dm, _) = results["prepare"], results["datatrove"]
            ratios.append(ds / ps)
            cpu_ratios.append(dc / pc)
            ours_rates.append(ours_tokens / ps / 1e6)
            dt_rates.append(dt_tokens / ds / 1e6)
            print(
                f"round {r + 1}: prepare {ps:.2f} s ({ours_rates[-1]:.3f} M tokens/s, {pc:.2f} CPU-s, peak "
                f"{pm:.0f} MB), datatrove {ds:.2f} s ({dt_rates[-1]:.3f} M tokens/s, {dc:.2f} CPU-s, peak "
                f"{dm:.0f} MB), {ours_tokens:,} tokens each: ratio {ratios[-1]:.2f} (CPU-s {cpu_ratios[-1]:.2f})",
                flush=True,
            )
    print(
        f"median: prepare {statistics.median(ours_rates):.3f} M tokens/s, datatrove {statistics.median(dt_rates):.3f}; "
        f"ratio {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); CPU-s ratio "
        f"{statistics.median(cpu_ratios):.2f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench-datatrove", description=__doc__.splitlines()[0])
    p.add_argument("--datatrove_python", default=".venv-datatrove/bin/python", help="the env with datatrove 0.10.1")
    p.add_argument("--corpus", type=Path, default=Path("tests/fixtures/pydoc_topics.jsonl.gz"))
    p.add_argument("--copies", type=int, default=34, help="copies of the corpus per file (34: ~14.2M tokens in all)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="prepare's tokenizer processes; datatrove's tasks")
    a = p.parse_args(argv)
    return bench_datatrove(a.datatrove_python, a.corpus, a.copies, a.rounds, a.workers)


if __name__ == "__main__":
    sys.exit(main())
