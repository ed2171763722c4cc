"""``gpu_check.md``: the check's results as markdown tables (BENCHMARKS.md quotes them)."""

from __future__ import annotations

from typing import Any


def _f(v: Any, fmt: str = ",.0f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def _cell(text: str, n: int) -> str:
    """An error as one table cell, at most about ``n`` characters: its first line and, when it has more (a log's
    tail), its last one (where a traceback ends); the whole text is in gpu_check.json."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()] or [""]
    cell = lines[0][:n] + (f" … {lines[-1][-n:]}" if len(lines) > 1 else "")
    return cell.replace("|", "\\|")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def throughput_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The throughput part's rows: its list, or the rows kept beside its error."""
    tp = res.get("throughput")
    rows = tp if isinstance(tp, list) else tp.get("rows") if isinstance(tp, dict) else None
    return [r for r in rows or [] if isinstance(r, dict)]


def markdown(res: dict[str, Any]) -> str:
    """Environment, throughput per setting, checkpoint cost, smoke run, torchrun and export, as markdown.

    Written after every part: while ``complete`` is false it says which parts have not run (yet)."""
    env, m = res["environment"], res["throughput_model"]
    budget = f", throughput budget {res['budget_s']:.0f} s" if res.get("budget_s") is not None else ""
    lines = [
        f"# gpu-check ({res['mode']} mode), {res['started']}",
        "",
        f"Command: `{res['command']}`; wall time {res['wall_s']:.0f} s (deadline {res['deadline_s']:.0f} s{budget}).",
        "",
    ]
    if not res.get("complete"):
        running = res.get("running_part")
        lines += [
            "**Incomplete**: "
            + (
                f"stopped ({res['stopped']})"
                if res.get("stopped")
                else "the check was still running, or was killed" + (f", during part `{running}`" if running else "")
            )
            + f". Not run (or not finished): {', '.join(res.get('pending_parts', [])) or 'none'}. "
            "These files are rewritten after every part: what is below was measured.",
            "",
        ]
    lines += [
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
        "error",
    ):
        if k in env:
            lines.append(f"| {k} | {env[k]} |")
    lines += [
        "",
        f"Throughput: model {m['name']} ({m['params']:,} parameters, context {m['context']}, "
        f"{m['dtype']}), {m['flops_per_token']:,} FLOPs/token (nanoGPT's 6N + 12·L·H·Q·T); MFU = "
        "FLOPs/token × tokens/s ÷ the card's dense bf16 peak above. One process, one device; "
        "first step = compilation included; peak = `torch.cuda.max_memory_allocated`. The bare loop (one "
        "fixed batch on the device: no data loading, no logging) runs for `baseline` only: trainer/bare there "
        "is the check of the trainer's data loading and overhead; – = not measured.",
        "",
        "| setting | micro batch | trainer tok/s | bare tok/s | trainer/bare | trainer MFU | bare MFU "
        "| trainer peak GiB | first step s (trainer / bare) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in throughput_rows(res):
        if "skipped" in r or "error" in r:
            why = f"skipped ({r['skipped']})" if "skipped" in r else _cell(r["error"], 160)
            lines.append(f"| {r['setting']} ({r['description']}) | {why} | | | | | | | |")
            continue
        lines.append(
            f"| {r['setting']} ({r['description']}) | {r['micro_batch_size']} | "
            f"{_f(r['trainer_tokens_per_s'])} | {_f(r['bare_tokens_per_s'])} | {_f(r['ratio'], '.3f')} | "
            f"{_pct(r['trainer_mfu'])} | {_pct(r['bare_mfu'])} | {_f(r['trainer_peak_gib'], '.1f')} | "
            f"{r['trainer_first_step_s']:.1f} / {_f(r['bare_first_step_s'], '.1f')} |"
        )
    tp = res.get("throughput")
    if isinstance(tp, dict) and "error" in tp:  # the whole part failed (or was not run)
        lines.append(f"| failed: {_cell(tp['error'], 200)} | | | | | | | | |")
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
        lines.append(f"| failed | {_cell(ck['error'], 200)} |")
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
        lines.append(f"| data: failed | {_cell(sd['error'], 200)} |")
    elif sd:
        c = sd["curriculum"]
        lines.append(
            f"| run | {sd['params']:,} parameters ({sd['model']['n_layer']} layers x {sd['model']['n_embd']},"
            f" context {sd['model']['block_size']}, vocabulary {sd['vocab_size']:,}); phases a, b; "
            f"{c['total_tokens'] // c['batch']['global_batch_tokens']} steps of "
            f"{c['batch']['global_batch_tokens']:,} tokens; micro batch auto |"
        )
    # each run's rows as soon as it has ended (a timeout or a kill keeps the runs before it)
    if "unbroken_s" in sm:
        lines += [
            f"| micro batch | {sm.get('micro_batch_line')} |",
            f"| unbroken | {sm['unbroken_s']:.0f} s; phase boundary crossed: {sm['phase_boundary_logged']} |",
        ]
    if "killed_at_checkpoint" in sm:
        lines.append(
            f"| SIGKILL | after the checkpoint at step {sm['killed_at_checkpoint']}; {sm.get('resume_line')} |"
        )
    if "resume_vs_unbroken" in sm:
        lines.append(f"| resumed vs unbroken | {_cmp(sm['resume_vs_unbroken'])} |")
    if "unbroken_vs_unbroken" in sm:
        lines.append(f"| unbroken vs unbroken (run-to-run) | {_cmp(sm['unbroken_vs_unbroken'])} |")
    if "torchrun_vs_unbroken" in sm:
        lines.append(
            f"| torchrun --nproc_per_node=1 vs unbroken | process group + DDP: "
            f"{sm['torchrun_process_group']}; {_cmp(sm['torchrun_vs_unbroken'])} |"
        )
    if "error" in sm:
        lines.append(f"| failed | {_cell(sm['error'], 300)} |")
    ex = res.get("export", {})
    if "error" in ex:
        lines.append(f"| HF export logits | failed: {_cell(ex['error'], 200)} |")
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
