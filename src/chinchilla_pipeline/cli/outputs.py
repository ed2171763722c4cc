"""Commands on a trained run: report, export, evaluation, HellaSwag, generation."""

from __future__ import annotations

from .common import checkpoint_args, config_path_arg, device_arg, out_path_arg, positive


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="a run's report.md and PNG plots from its metrics.jsonl")
    p.add_argument("--run_dir", required=True, help="the run directory (runs/<name>) holding metrics.jsonl")
    p.add_argument("--out_dir", help="where report.md and the plots go (default: RUN_DIR/report)")
    from ..plan import DEFAULT_TOKENS_PER_PARAM

    p.add_argument(
        "--tokens_per_param",
        type=float,
        default=DEFAULT_TOKENS_PER_PARAM,
        help=f"the planner's D/N, drawn beside the tokens trained (default: {DEFAULT_TOKENS_PER_PARAM:g})",
    )

    def run(a):
        from ..report.build import make_report

        print(make_report(a.run_dir, a.out_dir, a.tokens_per_param))
        return 0

    p.set_defaults(func=run)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="a checkpoint as a Hugging Face directory (GPT2LMHeadModel or NanoChatForCausalLM)"
    )
    checkpoint_args(p)
    p.add_argument("--out_dir", required=True, help="directory to write (config.json, model.safetensors, ...)")

    def run(a):
        from ..export.huggingface import export_huggingface

        rec = export_huggingface(a.checkpoint, a.tokenizer, a.out_dir)
        print(
            f"{a.out_dir}: {rec['architecture']}, {rec['num_params']:,} parameters, from {rec['checkpoint']} "
            f"(step {rec['step']:,})"
        )
        return 0

    p.set_defaults(func=run)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="a checkpoint's loss and perplexity on every domain's whole validation split")
    checkpoint_args(p)
    config_path_arg(p, required=True, help="the curriculum config: its domains are evaluated")

    def run(a):
        from ..export.evaluate_domains import evaluate_checkpoint, format_evaluation

        print(format_evaluation(evaluate_checkpoint(a.checkpoint, a.tokenizer, a.config_path)))
        return 0

    p.set_defaults(func=run)


def _add_hellaswag(sub) -> None:
    p = sub.add_parser("hellaswag", help="HellaSwag accuracy of a checkpoint or an export (llm.c's completion style)")
    p.add_argument(
        "--checkpoint",
        "--model",
        dest="checkpoint",
        required=True,
        help="a checkpoint file, a run directory (its latest final checkpoint) or a Hugging Face export",
    )
    p.add_argument("--tokenizer", help="for a checkpoint: the tokenizer directory the run's data was made with")
    p.add_argument(
        "--hellaswag_path",
        "--data",
        dest="hellaswag_path",
        default="data/hellaswag/hellaswag_val.jsonl",
        help="the validation jsonl; downloaded from rowanz/hellaswag there when missing",
    )
    p.add_argument("--max_items", type=int, help="the first N items only (default: all 10,042)")
    device_arg(p, "auto: CUDA (bf16) if present")
    p.add_argument("--items_per_batch", type=int, default=8, help="items per forward pass (x 4 endings = rows)")
    out_path_arg(p, help="result JSON (default: hellaswag.json in the run or export directory)")

    def run(a):
        from ..hellaswag.run import evaluate_hellaswag, format_result

        positive(a, "max_items", "items_per_batch")
        print(
            format_result(
                evaluate_hellaswag(
                    a.checkpoint,
                    a.tokenizer,
                    a.hellaswag_path,
                    max_items=a.max_items,
                    device=a.device,
                    items_per_batch=a.items_per_batch,
                    out=a.out_path,
                )
            )
        )
        return 0

    p.set_defaults(func=run)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a checkpoint with the project's model")
    checkpoint_args(p)
    p.add_argument("--prompt", default="", help="text to continue (default: none, an unconditional sample)")
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top_k", type=int, default=40, help="sample among the k likeliest tokens (1 = greedy)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same text")
    p.add_argument("--num_samples", type=int, default=1)

    def run(a):
        from ..export.generate import generate_from_checkpoint

        texts = generate_from_checkpoint(
            a.checkpoint,
            a.tokenizer,
            a.prompt,
            max_new_tokens=a.max_new_tokens,
            temperature=a.temperature,
            top_k=a.top_k,
            seed=a.seed,
            num_samples=a.num_samples,
        )
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1} (seed {a.seed})\n{a.prompt}{text}")
        return 0

    p.set_defaults(func=run)


ADDERS = [
    _add_report,
    _add_export,
    _add_evaluate,
    _add_hellaswag,
    _add_generate,
]
