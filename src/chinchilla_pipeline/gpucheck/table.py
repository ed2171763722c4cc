"""``gpu_check.md``: the check's results as markdown tables (BENCHMARKS.md quotes them)."""

from __future__ import annotations

from typing import Any


def _f(v: Any, fmt: str = ",.0f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def markdown(res: dict[str, Any]) -> str:
    """Environment, throughput per setting, checkpoint cost, smoke run, torchrun and export, as markdown."""
    env, m = res["environment"], res["throughput_model"]
    lines = [
        f"# gpu-check ({res['mode']} mode), {res['started']}",
        "",
        f"Command: `{res['command']}`; wall time {res['wall_s']:.0f} s.",
        "",
        "| environment | |",
        "|---|---|",
    ]
    for k in (
        "card",
        "memory_gib",
        "capability",
        "peak_bf16_tflops",
        "torch",
        "cuda_build",
        "nccl",
        "python",
        "cpu_count",
    ):
        if k in env:
            lines.append(f"| {k} | {env[k]} |")
    lines += [
        "",
        f"Throughput: model {m['name']} ({m['params']:,} parameters, context {m['context']}, "
        f"{m['dtype']}), {m['flops_per_token']:,} FLOPs/token (nanoGPT's 6N + 12·L·H·Q·T); MFU = "
        "FLOPs/token × tokens/s ÷ the card's dense bf16 peak above. One process, one device; "
        "first step = compilation included; peak = `torch.cuda.max_memory_allocated`.",
        "",
        "| setting | micro batch | trainer tok/s | bare tok/s | trainer/bare | trainer MFU | bare MFU "
        "| trainer peak GiB | first step s (trainer / bare) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tp = res.get("throughput")
    if isinstance(tp, dict):  # the whole part failed
        lines.append(f"| failed: {tp['error'][:200]} | | | | | | | | |")
    for r in tp if isinstance(tp, list) else []:
        if "skipped" in r or "error" in r:
            lines.append(
                f"| {r['setting']} ({r['description']}) | {r.get('skipped') or r['error'][:160]} | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['setting']} ({r['description']}) | {r['micro_batch_size']} | "
            f"{_f(r['trainer_tokens_per_s'])} | {_f(r['bare_tokens_per_s'])} | {r['ratio']:.3f} | "
            f"{_pct(r['trainer_mfu'])} | {_pct(r['bare_mfu'])} | {_f(r['trainer_peak_gib'], '.1f')} | "
            f"{r['trainer_first_step_s']:.1f} / {r['bare_first_step_s']:.1f} |"
        )
    if "fastest" in res and res["mode"] == "gpu":
        f = res["fastest"]
        lines += [
            "",
            f"Fastest trainer: `{f['setting']}`, {f['trainer_tokens_per_s']:,.0f} tokens/s = "
            f"{100 * f['of_target']:.0f}% of the 500K tokens/s target.",
        ]
    ck = res.get("checkpoint_write", {})
    lines += ["", "| checkpoint write (model + AdamW state, atomic, best of 2) | |", "|---|---|"]
    if "error" in ck:
        lines.append(f"| failed | {ck['error'][:200]} |")
    elif ck:
        lines += [
            f"| size | {ck['bytes'] / 2**30:.2f} GiB ({ck['params']:,} parameters) |",
            f"| seconds | {ck['write_s']:.2f} (rounds: {', '.join(f'{t:.2f}' for t in ck['rounds_s'])}) |",
        ]
        if "share_of_training" in ck:
            lines.append(
                f"| share of training time | {100 * ck['share_of_training']:.2f}% (one write per 250 steps "
                f"of 524,288 tokens = {ck['default_interval_s']:,.0f} s at the baseline trainer rate) |"
            )
    sd, sm = res.get("smoke_data", {}), res.get("smoke", {})
    lines += ["", "| curriculum smoke run | |", "|---|---|"]
    if "error" in sd:
        lines.append(f"| data: failed | {sd['error'][:200]} |")
    elif sd:
        c = sd["curriculum"]
        lines.append(
            f"| run | {sd['params']:,} parameters ({sd['model']['n_layer']} layers x {sd['model']['n_embd']},"
            f" context {sd['model']['block_size']}, vocabulary {sd['vocab_size']:,}); phases a, b; "
            f"{c['total_tokens'] // c['batch']['global_batch_tokens']} steps of "
            f"{c['batch']['global_batch_tokens']:,} tokens; micro batch auto |"
        )
    if "error" in sm:
        lines.append(f"| failed | {sm['error'][:300]} |")
    elif sm:
        rv, tv = sm["resume_vs_unbroken"], sm["torchrun_vs_unbroken"]
        lines += [
            f"| micro batch | {sm.get('micro_batch_line')} |",
            f"| unbroken | {sm['unbroken_s']:.0f} s; phase boundary crossed: {sm['phase_boundary_logged']} |",
            f"| SIGKILL | after the checkpoint at step {sm['killed_at_checkpoint']}; {sm.get('resume_line')} |",
            f"| resumed vs unbroken | {_cmp(rv)} |",
        ]
        if "unbroken_vs_unbroken" in sm:
            lines.append(f"| unbroken vs unbroken (run-to-run) | {_cmp(sm['unbroken_vs_unbroken'])} |")
        lines.append(
            f"| torchrun --nproc_per_node=1 vs unbroken | process group + DDP: "
            f"{sm['torchrun_process_group']}; {_cmp(tv)} |"
        )
    ex = res.get("export", {})
    if "error" in ex:
        lines.append(f"| HF export logits | failed: {ex['error'][:200]} |")
    elif ex:
        lines.append(
            f"| HF export logits vs model (float32, {ex['shape']}) | max abs diff {ex['max_abs_diff']:.2e} "
            f"(largest logit {ex['logit_scale']:.1f}); argmax agreement {100 * ex['argmax_agreement']:.2f}% |"
        )
    if res.get("failed_parts"):
        lines += ["", f"**Failed parts**: {', '.join(res['failed_parts'])} (errors in gpu_check.json)."]
    return "\n".join(lines) + "\n"


def _cmp(c: dict[str, Any]) -> str:
    if c["bitwise"]:
        return f"bitwise identical ({c['steps_compared']} steps' losses, validation losses, final weights)"
    return (
        f"{c['train_loss_bitwise_equal_steps']}/{c['steps_compared']} steps bitwise; max |Δ loss| "
        f"{_f(c['train_loss_max_abs_diff'], '.2e')}, max |Δ validation loss| "
        f"{_f(c['validation_loss_max_abs_diff'], '.2e')}, max |Δ final weight| "
        f"{c['final_weights_max_abs_diff']:.2e}"
    )
