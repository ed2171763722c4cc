"""Training commands: the plan, pretraining, its benchmarks and checks."""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_USER_ERROR, UserError
from .common import config_path_arg, count, device_arg, out_path_arg, parse_phase, positive


def _add_plan(sub) -> None:
    p = sub.add_parser("plan", help="Chinchilla plan: tokens, FLOPs, steps, phases, wall-clock, predicted loss")
    from ..train.config import DEFAULT_GLOBAL_BATCH_TOKENS, DEFAULT_TOKENS_PER_PARAM

    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--curriculum",
        "--config_path",
        "--config",
        dest="curriculum",
        help="curriculum config (config/curriculum/*.json): its model, phases and batch (as pretrain --config_path)",
    )
    src.add_argument("--model_config", help="model config JSON (config/models/*.json): N counted from the model")
    src.add_argument("--num_params", type=count, help="parameters, all included (e.g. 124M)")
    p.add_argument("--non_embedding_params", type=count, help="non-embedding parameters, with --num_params")
    p.add_argument("--tokens_per_param", type=float, help=f"D/N (default: {DEFAULT_TOKENS_PER_PARAM:g})")
    p.add_argument(
        "--global_batch_tokens",
        type=count,
        help=f"tokens per optimizer step (default: {DEFAULT_GLOBAL_BATCH_TOKENS:,}, llm.c's GPT-2 124M)",
    )
    p.add_argument(
        "--phase",
        type=parse_phase,
        action="append",
        help="NAME=SHARE of the tokens, repeatable (default: A=0.5 B=0.5, the seed's 1.5B + 1.5B)",
    )
    p.add_argument("--compute_budget", type=count, help="FLOPs to split compute-optimally (default: 6 N D)")
    p.add_argument("--tokens_per_second", type=count, help="training throughput, for the wall-clock time")
    p.add_argument(
        "--budget_seconds", type=float, help="with --tokens_per_second and no N: plan the size the time allows"
    )
    out_path_arg(p, help="write the plan as JSON here")

    def run(a):
        from ..atomic import write_json
        from ..plan import format_plan, resolve_plan

        positive(
            a,
            "num_params",
            "non_embedding_params",
            "tokens_per_param",
            "global_batch_tokens",
            "compute_budget",
            "tokens_per_second",
            "budget_seconds",
        )
        plan = resolve_plan(
            curriculum=a.curriculum,
            model_config=a.model_config,
            num_params=a.num_params,
            non_embedding_params=a.non_embedding_params,
            tokens_per_param=a.tokens_per_param,
            global_batch_tokens=a.global_batch_tokens,
            phases=a.phase,
            compute_budget=a.compute_budget,
            tokens_per_second=a.tokens_per_second,
            budget_seconds=a.budget_seconds,
        )
        print(format_plan(plan))
        if a.out_path:
            write_json(a.out_path, plan)
            print(f"\nwrote {a.out_path}")
        return 0

    p.set_defaults(func=run)


def _add_preflight(sub) -> None:
    p = sub.add_parser("preflight", help="before GPU spend: data, epochs, tokenizer, disk, GPU, wall-clock, run state")
    config_path_arg(p, default="config/curriculum/chinchilla_124m.json", help="curriculum config JSON")
    p.add_argument("--tokenizer", default="data/tokenizer", help="the tokenizer the sources were prepared with")
    p.add_argument("--out_dir", default="runs", help="the run goes to OUT_DIR/<config name>/")
    device_arg(p, "cuda: no GPU is a blocker")
    p.add_argument(
        "--tokens_per_second",
        type=float,
        help="training throughput of the whole job (default: gpu-check's fastest setting x the ranks)",
    )
    p.add_argument(
        "--gpu_check", default="runs/gpu_check/gpu_check.json", help="gpu-check's results, for the throughput"
    )
    p.add_argument("--world_size", type=int, help="ranks of the training job (default $WORLD_SIZE or 1)")
    p.add_argument("--no_verify", action="store_true", help="skip re-reading the shards' checksums")

    def run(a):
        from ..instruments.preflight import format_table, preflight

        positive(a, "tokens_per_second", "world_size")
        rows = preflight(
            a.config_path,
            tokenizer_dir=a.tokenizer,
            out_dir=a.out_dir,
            device=a.device,
            tokens_per_second=a.tokens_per_second,
            world_size=a.world_size,
            verify=not a.no_verify,
            gpu_check_json=a.gpu_check,
        )
        print(format_table(rows))
        return EXIT_USER_ERROR if any(r.status == "BLOCKER" for r in rows) else 0

    p.set_defaults(func=run)


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="train a curriculum phase (or all phases), resuming from the last checkpoint")
    config_path_arg(p, default="config/curriculum/chinchilla_124m.json", help="curriculum config JSON")
    p.add_argument(
        "--phase", default="all", help="phase name from the config, or 'all' (default) for every remaining phase"
    )
    p.add_argument("--out_dir", default="runs", help="the run goes to OUT_DIR/<config name>/")
    p.add_argument(
        "--allow_changes",
        action="store_true",
        help="resume even if the model, data, tokenizer or recipe differ from the checkpoint's",
    )
    device_arg(p)
    p.add_argument("--peak_tflops", type=float, help="the card's dense bf16 peak, for MFU where it is not known")
    p.add_argument(
        "--plan_only", action="store_true", help="print parameters, budget and steps per phase; train nothing"
    )
    p.add_argument(
        "--wandb_project", help="also log to Weights & Biases, this project (WANDB_MODE=offline: no network)"
    )
    p.add_argument("--wandb_name", help="the wandb run's name (default: the run directory's name)")
    p.add_argument(
        "--hellaswag_path", help="HellaSwag at every evaluation: the validation jsonl (downloaded if missing)"
    )
    p.add_argument("--hellaswag_tokenizer", help="with --hellaswag_path: the run's tokenizer directory")
    p.add_argument("--hellaswag_max_items", type=int, help="with --hellaswag_path: the first N items (default: all)")

    def run(a):
        from ..train.pretrain import run_pretrain

        positive(a, "hellaswag_max_items")
        wandb = {"project": a.wandb_project, "name": a.wandb_name} if a.wandb_project else None
        hellaswag = {
            "hellaswag_path": a.hellaswag_path,
            "hellaswag_tokenizer": a.hellaswag_tokenizer,
            "hellaswag_max_items": a.hellaswag_max_items,
        }
        return run_pretrain(
            a.config_path,
            phase=None if a.phase == "all" else a.phase,
            out_dir=a.out_dir,
            allow_changes=a.allow_changes,
            device=a.device,
            peak_tflops=a.peak_tflops,
            plan_only=a.plan_only,
            wandb=wandb,
            hellaswag=hellaswag,
        )

    p.set_defaults(func=run)


def _add_bench_train(sub) -> None:
    p = sub.add_parser("bench-train", help="trainer tokens/s against a bare PyTorch loop of the same model and batch")
    p.add_argument(
        "--model_config",
        "--model",
        dest="model_config",
        default="config/models/cpu_small.json",
        help="model config JSON",
    )
    device_arg(p)
    p.add_argument("--micro_batch_size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--grad_accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--steps", type=int, default=10, help="timed optimiser steps per round")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of each loop; the best counts")
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed steps first (compilation, caches)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--peak_tflops", type=float, help="dense bf16 peak for MFU where the card is not known")
    p.add_argument(
        "--cross_entropy",
        choices=["sliced", "chunked"],
        default="sliced",
        help="the loss path (config speed.cross_entropy)",
    )
    p.add_argument(
        "--optimizer",
        choices=["adamw", "muon"],
        default="adamw",
        help="the recipe's optimiser (config optimizer.kind): AdamW, or Muon on the block matrices + AdamW",
    )

    def run(a):
        from ..instruments.bench.train import bench_train
        from ..train.config import OptimizerConfig, SpeedConfig

        positive(a, "micro_batch_size", "grad_accum", "steps", "rounds", "peak_tflops")
        if a.warmup_steps < 0:
            raise UserError(f"expected >= 0, got {a.warmup_steps}", field="--warmup_steps")
        bench_train(
            a.model_config,
            device=a.device,
            micro=a.micro_batch_size,
            accum=a.grad_accum,
            steps=a.steps,
            warmup=a.warmup_steps,
            dtype=a.dtype,
            compile_=a.compile,
            rounds=a.rounds,
            peak_tflops=a.peak_tflops,
            speed=SpeedConfig(cross_entropy=a.cross_entropy),
            optimizer=OptimizerConfig(kind=a.optimizer),
        )
        return 0

    p.set_defaults(func=run)


def _add_bench_prefetch(sub) -> None:
    p = sub.add_parser(
        "bench-prefetch",
        help="the data path with speed.prefetch off and on, shards dropped from the page cache: ms per step",
    )
    p.add_argument("--work_dir", help="where the shards are written: a disk, not tmpfs (default: the temp directory)")
    p.add_argument("--gb", type=float, default=4.0, help="GB of shards written (2 sources, deleted at the end)")
    p.add_argument("--sequences", type=int, default=64, help="sequences per step (one of 8 ranks at 124M: 64)")
    p.add_argument("--context", type=int, default=1024, help="tokens per sequence (plus its last target)")
    p.add_argument("--steps", type=int, default=16, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of each loop; the best counts")
    p.add_argument("--compute_ms", type=float, default=200.0, help="stand-in forward and backward per step, ms")
    p.add_argument(
        "--stand_in",
        choices=["matmul", "sleep"],
        default="matmul",
        help="matmul: CPU training (the cores busy); sleep: a GPU's step (the host idle)",
    )
    p.add_argument("--cached", action="store_true", help="keep the shards in the page cache: the thread's overhead")

    def run(a):
        from ..instruments.bench.prefetch import bench_prefetch

        positive(a, "gb", "sequences", "context", "steps", "rounds", "compute_ms")
        bench_prefetch(
            a.work_dir,
            gb=a.gb,
            sequences=a.sequences,
            context=a.context,
            steps=a.steps,
            rounds=a.rounds,
            compute_ms=a.compute_ms,
            stand_in=a.stand_in,
            cached=a.cached,
        )
        return 0

    p.set_defaults(func=run)


def _add_gpu_check(sub) -> None:
    p = sub.add_parser(
        "gpu-check",
        help="the GPU check in priority order: environment, throughput of the shipped recipes, torchrun NCCL DDP, "
        "curriculum smoke run killed and resumed, export logits, further speed settings (docs/gpu.md)",
    )
    p.add_argument(
        "--mode",
        choices=["gpu", "cpu"],
        default="gpu",
        help="gpu: the 124M recipes on CUDA, within 6 minutes of the process's start; cpu: tiny models, gloo (CI)",
    )
    p.add_argument("--out_dir", default="runs/gpu_check", help="gpu_check.json, gpu_check.md and the smoke runs")
    p.add_argument(
        "--settings", nargs="+", help="part (vi)'s further speed settings (default: the mode's list; docs/gpu.md)"
    )
    p.add_argument(
        "--deadline_s",
        type=float,
        help="seconds from the process's start by which every part has ended; each part's budget scales with it "
        "(default: 330 on gpu, 300 on cpu)",
    )

    def run(a):
        from ..instruments.gpucheck.check import gpu_check
        from ..instruments.gpucheck.env import process_start

        positive(a, "deadline_s")
        result = gpu_check(
            a.mode, Path(a.out_dir), settings=a.settings, deadline_s=a.deadline_s, started=process_start()
        )
        print((Path(a.out_dir) / "gpu_check.md").read_text(), end="")
        return 1 if result["failed_parts"] else 0

    p.set_defaults(func=run)


def _add_demo_size(sub) -> None:
    p = sub.add_parser("demo-size", help="measure this machine and size a demo model: 20 tokens/param in a time budget")
    p.add_argument("--seconds", type=float, default=240, help="training time budget in seconds")
    p.add_argument("--tokenizer", default="data/demo/tokenizer", help="the vocabulary size comes from it")
    p.add_argument("--block_size", type=int, default=128, help="context length in tokens")
    p.add_argument("--micro_batch_size", type=int, default=16, help="sequences per forward pass while measuring")
    out_path_arg(p, default="runs/demo/model.json", help="model config to write (sizing.json goes beside it)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--overwrite", action="store_true", help="measure again although the model config exists")
    p.add_argument(
        "--recipe",
        choices=["nanochat", "gpt2"],
        default="nanochat",
        help="the model family and optimiser timed: nanochat (Muon + AdamW) or gpt2 (AdamW)",
    )

    def run(a):
        from pathlib import Path

        from ..instruments.demo.sizing import format_sizing, write_demo_model
        from ..tokenizer.load import load_tokenizer
        from ..train.config import OptimizerConfig

        positive(a, "seconds", "block_size", "micro_batch_size")
        if Path(a.out_path).is_file() and not a.overwrite:
            print(f"{a.out_path} exists (a run may depend on it): kept; --overwrite measures again")
            return 0
        vocab = load_tokenizer(a.tokenizer).vocab_size
        optimizer = OptimizerConfig(kind="muon" if a.recipe == "nanochat" else "adamw")
        sized = write_demo_model(
            a.out_path, a.seconds, vocab, a.block_size, a.micro_batch_size, a.device, a.recipe, optimizer
        )
        print(format_sizing(a.out_path, sized))
        return 0

    p.set_defaults(func=run)


def _add_average_checkpoints(sub) -> None:
    p = sub.add_parser(
        "average-checkpoints",
        help="the uniform mean of a run's (or a phase's) last K checkpoints' weights, as a checkpoint that "
        "evaluate, export, hellaswag and generate take",
    )
    p.add_argument("--run_dir", required=True, help="the run directory (runs/<name>) holding checkpoints/")
    p.add_argument("--last", type=int, required=True, help="how many of the newest intact checkpoints to average")
    p.add_argument("--phase", help="only the checkpoints of this phase (its periodic ones and its final)")
    out_path_arg(p, help="the checkpoint to write (default: RUN_DIR/averages/last-K[_PHASE]/checkpoint.pt)")

    def run(a):
        from ..train.average import average_checkpoints, averaged_from

        positive(a, "last")
        path = average_checkpoints(a.run_dir, a.last, phase=a.phase, out=a.out_path)
        rec = averaged_from(path)
        steps = [c["step"] for c in rec["checkpoints"]]
        print(
            f"averaged {len(steps)} checkpoint{'s' * (len(steps) != 1)} of {a.run_dir}"
            + (f" (phase '{a.phase}')" if a.phase else "")
            + f", step{'s' * (len(steps) != 1)} {', '.join(map(str, steps))}: "
            + ", ".join(c["file"] for c in rec["checkpoints"])
        )
        print(f"wrote {path} (step {steps[-1]}; --checkpoint for evaluate, export, hellaswag, generate)")
        return 0

    p.set_defaults(func=run)


ADDERS = [
    _add_plan,
    _add_preflight,
    _add_pretrain,
    _add_bench_train,
    _add_bench_prefetch,
    _add_gpu_check,
    _add_demo_size,
    _add_average_checkpoints,
]
