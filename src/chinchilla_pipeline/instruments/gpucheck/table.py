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


def _rows(res: dict[str, Any], part: str) -> list[dict[str, Any]]:
    """A part's rows: its list, or the rows kept beside its error."""
    tp = res.get(part)
    rows = tp if isinstance(tp, list) else tp.get("rows") if isinstance(tp, dict) else None
    return [r for r in rows or [] if isinstance(r, dict)]


def speed_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every throughput measurement: the recipes (ii), then the further settings (vi)."""
    return _rows(res, "throughput") + _rows(res, "more_speed")


def _speed_line(name: str, r: dict[str, Any]) -> str:
    if "skipped" in r or "error" in r:
        why = f"skipped ({r['skipped']})" if "skipped" in r else _cell(r["error"], 160)
        return f"| {name} | {why} | | | | | | | |"
    return (
        f"| {name} | {r['micro_batch_size']} | {_f(r['trainer_tokens_per_s'])} | {_pct(r['trainer_mfu'])} | "
        f"{_f(r.get('bare_tokens_per_s'))} | {_f(r.get('ratio'), '.3f')} | {_f(r['trainer_peak_gib'], '.1f')} | "
        f"{r['compile_s']:.1f} ({r['first_step_s']:.1f}) | {r['graphs_compiled']} |"
    )


def _parts(res: dict[str, Any]) -> list[str]:
    lines = ["| part | budget s | started at s | ended at s | result |", "|---|---|---|---|---|"]
    for name in res["order"]:
        t = res["part_times_s"].get(name, {})
        p = res.get(name)
        state = (
            ("failed: " + _cell(p["error"], 120))
            if isinstance(p, dict) and "error" in p
            else ("done" if name in res["parts_done"] else "running" if name == res.get("running_part") else "not run")
        )
        lines.append(
            f"| {name} | {_f(t.get('budget'))} | {_f(t.get('start'), '.1f')} | {_f(t.get('end'), '.1f')} | {state} |"
        )
    return lines


def markdown(res: dict[str, Any]) -> str:
    """The parts with their times, throughput, torchrun, smoke runs and export, as markdown.

    Written after every part: while ``complete`` is false it says which parts have not run (yet)."""
    lines = [
        f"# gpu-check ({res['mode']} mode), {res['started']}",
        "",
        f"Command: `{res['command']}`; wall time {res['wall_s']:.0f} s from the process's start "
        f"(deadline {res['deadline_s']:.0f} s).",
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
            + f". Done: {', '.join(res['parts_done']) or 'none'}; not run (or not finished): "
            f"{', '.join(res['pending_parts']) or 'none'}. These files are rewritten after every part.",
            "",
        ]
    lines += _parts(res) + [""]
    env = res.get("environment")
    if isinstance(env, dict):
        lines += ["| environment | |", "|---|---|"]
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
        lines.append("")
    rows = speed_rows(res)
    if rows:
        lines += [
            "Throughput: each recipe as shipped (its curriculum config: model, optimiser, speed section), bf16 on "
            'a GPU, compiled, at the micro batch `"auto"` finds, one micro batch per step. MFU = FLOPs/token '
            "(nanoGPT's and nanochat's 6N + 12·L·H·Q·T) × tokens/s ÷ the card's dense bf16 peak above. Bare = "
            "the same compiled model and optimiser on one fixed batch (no data loading, no logging): "
            "trainer/bare is the trainer's overhead. Compile: the first step's seconds less one step's (the "
            "first step's in brackets). Graphs: new graphs "
            "Dynamo compiled for it (0: served by graphs compiled before). Peak: `torch.cuda.max_memory_allocated`.",
            "",
            "| recipe or setting | micro batch | trainer tok/s | trainer MFU | bare tok/s | trainer/bare | peak GiB "
            "| compile s (first step) | graphs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in _rows(res, "throughput"):
            lines.append(
                _speed_line(f"recipe {r['recipe']}" + (f" ({r['model']}, {r['optimizer']})" if "model" in r else ""), r)
            )
        for r in _rows(res, "more_speed"):
            lines.append(_speed_line(f"{r['setting']} ({r['description']})", r))
        lines.append("")
    lines += _smoke(res)
    if res.get("failed_parts"):
        lines += ["", f"**Failed**: {', '.join(res['failed_parts'])} (errors in gpu_check.json)."]
    return "\n".join(lines) + "\n"


def _smoke(res: dict[str, Any]) -> list[str]:
    sd, tr, sm, ex = (
        res.get(k) if isinstance(res.get(k), dict) else {} for k in ("smoke_data", "torchrun", "smoke", "export")
    )
    lines = ["| torchrun, smoke runs, export | |", "|---|---|"]
    if "params" in sd:
        c, m = sd["curriculum"], sd["model"]
        lines.append(
            f"| smoke run | {sd['params']:,} parameters ({m['n_layer']} layers x {m['n_embd']}, context "
            f"{m['block_size']}, vocabulary {sd['vocab_size']:,}); phases a, b; "
            f"{c['total_tokens'] // c['batch']['global_batch_tokens']} steps of {c['batch']['global_batch_tokens']:,} "
            f"tokens, micro batch {c['batch']['micro_batch_size']} |"
        )
    if "wall_s" in tr:
        lines.append(
            f"| torchrun --nproc_per_node=1 | {tr['wall_s']:.0f} s; {tr['backend']} process group + DDP: "
            f"{tr['process_group']}; accumulation {tr['grad_accum']}: no_sync on {tr['no_sync_micro_steps_per_step']} "
            "micro step(s) per step |"
        )
    if "unbroken_s" in sm:
        lines.append(f"| unbroken | {sm['unbroken_s']:.0f} s; phase boundary crossed: {sm['phase_boundary_logged']} |")
    if "run_to_run" in sm:
        lines.append(f"| unbroken vs unbroken (run-to-run) | {_cmp(sm['run_to_run'])} |")
    if "killed_at_checkpoint" in sm:
        lines.append(
            f"| SIGKILL | after the checkpoint at step {sm['killed_at_checkpoint']}; {sm.get('resume_line')} |"
        )
    if "resume_vs_unbroken" in sm:
        c = sm["resume_vs_unbroken"]
        lines.append(
            f"| resumed vs unbroken | {_cmp(c)}; train loss up to the kill "
            f"{_f(c.get('train_loss_to_kill'), '.2e')}, after the resume "
            f"{_f(c.get('train_loss_after_resume'), '.2e')} |"
        )
    if "verdict" in sm:
        v = sm["verdict"]
        per = "; ".join(
            f"{q}: {p['result']}"
            + (
                f" ({p['diff']:.2e} ≤ {p['bound']:.2e})"
                if p["result"] == "within"
                else f" ({p['diff']:.2e} > {p['bound']:.2e})"
                if p["result"] == "exceeds"
                else ""
            )
            for q, p in v["per_quantity"].items()
        )
        lines.append(f"| resume verdict | {'ok' if v['ok'] else 'NOT OK'}: {per}. Why: {v['why']} |")
    if "torchrun_vs_unbroken" in sm:
        lines.append(f"| torchrun vs unbroken | {_cmp(sm['torchrun_vs_unbroken'])} |")
    for name, part in (("smoke data", sd), ("torchrun", tr), ("smoke", sm)):
        if "error" in part:
            lines.append(f"| {name}: failed | {_cell(part['error'], 300)} |")
    if "error" in ex:
        lines.append(f"| export logits | failed: {_cell(ex['error'], 200)} |")
    elif ex:
        lines.append(
            f"| export logits vs model (float32, {ex['shape']}) | max abs diff {ex['max_abs_diff']:.2e} "
            f"(largest logit {ex['logit_scale']:.1f}); argmax agreement {100 * ex['argmax_agreement']:.2f}% |"
        )
    return lines


def _cmp(c: dict[str, Any]) -> str:
    if c["bitwise"]:
        return f"bitwise identical ({c['steps_compared']} steps' losses, validation losses, final weights)"
    return (
        f"{c['train_loss_bitwise_equal_steps']}/{c['steps_compared']} steps bitwise; max |Δ loss| "
        f"{_f(c['train_loss'], '.2e')}, max |Δ validation loss| {_f(c['validation_loss'], '.2e')}, "
        f"max |Δ final weight| {c['final_weights']:.2e}"
    )
