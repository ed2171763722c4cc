"""``chinchilla gpu-check --mode cpu``: the GPU check's own code path on CPU (tiny models, gloo), rehearsing
its order with scaled budgets; what a SIGTERM, a SIGKILL, the device command's cut, a deadline or a hung
subprocess leaves; and the pieces it relies on: "micro_batch_size": "auto", speed settings outside the
fingerprint, one rank under torchrun running DDP."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from chinchilla_pipeline import cli
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.instruments.gpucheck import check, smoke, speed
from chinchilla_pipeline.model.config import ModelConfig
from chinchilla_pipeline.train.config import CurriculumConfig
from chinchilla_pipeline.train.distributed import under_torchrun
from chinchilla_pipeline.train.layout import make_layout, micro_batch_candidates
from chinchilla_pipeline.train.schedule import make_schedule
from chinchilla_pipeline.train.setup import fingerprint
from conftest import CLI, CLI_ENV, ROOT

MODEL = ModelConfig(name="t", n_layer=1, n_head=1, n_embd=8, block_size=32, vocab_size=64)
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _cfg(global_batch_tokens: int, micro, **fields) -> CurriculumConfig:
    return CurriculumConfig(
        name="r",
        model="m.json",
        phases=[{"name": "a", "share": 1.0, "sources": [{"name": "s", "path": "d"}]}],
        batch={"global_batch_tokens": global_batch_tokens, "micro_batch_size": micro},
        **fields,
    )


def test_rehearsal_runs_the_parts_in_order_each_result_on_disk_before_the_next(tmp_path, monkeypatch):
    """The whole order in CPU mode at the CPU deadline (300 s, every budget scaled by 300/330): each part, as
    it starts, finds the results of every part before it in gpu_check.json (read from disk); every part passes;
    the resumed and torchrun runs are bitwise the unbroken one, so is the second unbroken run."""
    out, seen = tmp_path / "check", []

    def on_disk_first(part):
        def run(ctx):
            on_disk = json.loads((out / "gpu_check.json").read_text())
            seen.append((part.name, on_disk["parts_done"], [p for p in on_disk["order"] if p in on_disk]))
            return part.run(ctx)

        return check.parts.Part(part.name, run)

    monkeypatch.setattr(check, "PARTS", [on_disk_first(p) for p in check.PARTS])
    handler = signal.getsignal(signal.SIGTERM)
    res = check.gpu_check("cpu", out, say=lambda line: None)
    order = ["environment", "throughput", "smoke_data", "torchrun", "smoke", "export", "more_speed"]
    assert res["order"] == order and [name for name, _, _ in seen] == order
    for i, (name, done, with_results) in enumerate(seen):
        assert done == order[:i] and with_results == order[:i], name
    assert res["complete"] and res["parts_done"] == order and res["failed_parts"] == [], res["failed_parts"]
    assert signal.getsignal(signal.SIGTERM) is handler  # the check's own handler is gone
    times = res["part_times_s"]
    assert sum(t["budget"] for t in times.values()) == pytest.approx(check.DEFAULT_DEADLINE_S["cpu"], abs=0.5)
    assert all(times[a]["end"] <= times[b]["start"] for a, b in zip(order, order[1:]))
    assert res["wall_s"] < res["deadline_s"]
    nanochat, gpt2 = res["throughput"]  # both shipped recipes, the default first, with their optimisers
    assert (nanochat["recipe"], nanochat["optimizer"], gpt2["recipe"], gpt2["optimizer"]) == (
        "nanochat",
        "muon",
        "gpt2",
        "adamw",
    )
    for r in (nanochat, gpt2):
        assert r["micro_batch_size"] == 16 and r["trainer_tokens_per_s"] > 0 and r["bare_tokens_per_s"] > 0
        assert r["ratio"] == r["trainer_tokens_per_s"] / r["bare_tokens_per_s"] and r["graphs_compiled"] == 0
    assert [r["setting"] for r in res["more_speed"]] == speed.CPU_SETTINGS
    assert all(r["trainer_tokens_per_s"] > 0 for r in res["more_speed"])
    tr = res["torchrun"]
    assert tr["process_group"] and tr["grad_accum"] == 2 and tr["no_sync_micro_steps_per_step"] == 1
    sm = res["smoke"]
    assert sm["phase_boundary_logged"] and sm["grad_accum"] == 2 and sm["run_to_run"]["bitwise"]
    assert 10 <= sm["killed_at_checkpoint"] < 30  # killed mid phase a; the resume crossed the boundary at 30
    assert sm["resume_vs_unbroken"]["bitwise"] and sm["resume_vs_unbroken"]["steps_compared"] == 60
    assert sm["verdict"]["ok"] and sm["verdict"]["summary"].count("bitwise") == 3
    assert sm["torchrun_vs_unbroken"]["bitwise"]
    assert res["export"]["max_abs_diff"] < 1e-4 and res["export"]["argmax_agreement"] == 1.0
    table = (out / "gpu_check.md").read_text()
    assert "| resume verdict | ok: train_loss: bitwise" in table and "Incomplete" not in table
    assert "| recipe nanochat (check_cpu_nanochat, muon) | 16 |" in table
    assert (out / "work" / check.MARKER).is_file()


def _partial(path: Path) -> dict:
    """gpu_check.json as a kill left it: it parses, names the parts done, in order, each with its result."""
    res = json.loads(path.read_text())
    done = res["parts_done"]
    assert done == res["order"][: len(done)] and all(name in res for name in done)
    assert res["complete"] == (done == res["order"])
    return res


KILL_DEADLINE_S = 15.0  # the kill tests' check: the whole order, every budget at 15/330 of the GPU one


def test_the_device_command_copies_a_readable_result_to_out_when_cut_at_a_random_moment(tmp_path):
    """scripts/gpu_check_device.sh, its cut (SIGTERM) at a random moment: $OUT still gets gpu_check.json (it
    parses and names the parts done), gpu_check.md and the output."""
    cut = random.Random().uniform(8, KILL_DEADLINE_S + 5)
    env = {k: v for k, v in CLI_ENV.items() if k != "PYTHONPATH"}
    env.update(
        PYTHON=sys.executable,
        OUT=str(tmp_path / "out"),
        GPU_CHECK_OUT=str(tmp_path / "check"),
        GPU_CHECK_CUT_S=f"{cut:.1f}",
    )
    (tmp_path / "out").mkdir()
    r = subprocess.run(
        [str(ROOT / "scripts" / "gpu_check_device.sh"), "--mode", "cpu", "--deadline_s", str(KILL_DEADLINE_S)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode in (0, 1, 124), (cut, r.stdout[-2000:], r.stderr[-2000:])
    res = _partial(tmp_path / "out" / "gpu_check.json")
    assert res["complete"] or res["stopped"].startswith("SIGTERM"), (cut, res.get("stopped"))
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith("# gpu-check (cpu mode)")
    assert "gpu-check" in (tmp_path / "out" / "gpu_check.log").read_text()
    if "environment" in res["parts_done"]:  # the interpreter from $PYTHON, the package from src/ (none inherited)
        assert Path(res["environment"]["pythonpath"]).resolve() == (ROOT / "src").resolve()


def test_a_sigkill_at_a_random_moment_leaves_a_readable_partial_result(tmp_path):
    """SIGKILL of the check (and of the runs it started) at a random moment after its first write."""
    out = tmp_path / "check"
    env = {k: v for k, v in CLI_ENV.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [str(SCRIPT), "--mode", "cpu", "--out_dir", str(out), "--deadline_s", str(KILL_DEADLINE_S)],
        env={**env, "PYTHON": sys.executable},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not (out / "gpu_check.json").exists() and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(random.Random().uniform(0, KILL_DEADLINE_S))
    finally:
        os.kill(proc.pid, signal.SIGSTOP)  # frozen (or a zombie): its list of runs cannot change while killed
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in smoke._descendants(proc.pid) + ([proc.pid] if sig == signal.SIGKILL else []):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:  # ended (and reaped) meanwhile
                    pass
        proc.wait()
    res = _partial(out / "gpu_check.json")
    assert res["complete"] or "stopped" not in res
    assert (out / "gpu_check.md").read_text().startswith("# gpu-check (cpu mode)")


def test_gpu_check_script_without_pydantic_or_wheels_says_what_to_do(tmp_path):
    """An interpreter lacking pydantic/datasets and no .whl/: one line naming the fix, exit 2 (a copy of the
    script, so a .whl/ in this checkout does not matter)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "gpu_check.sh")
    bare_python = tmp_path / "python"
    bare_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # -S: no site-packages
    bare_python.chmod(0o755)
    r = subprocess.run(
        [str(tmp_path / "scripts" / "gpu_check.sh"), "--mode", "cpu"],
        env={**os.environ, "PYTHON": str(bare_python)},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "lacks pydantic/datasets and there is no .whl/" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_parts_past_the_deadline_are_recorded_as_not_run_and_the_scratch_directory_is_reused(tmp_path):
    out = tmp_path / "check"
    (out / "work").mkdir(parents=True)
    (out / "work" / check.MARKER).write_text("an earlier check's")
    (out / "work" / "left_over").write_text("the killed check's scratch")
    res = check.gpu_check("cpu", out, deadline_s=1e-6, say=lambda line: None)
    assert res["complete"] and res["pending_parts"] == [] and not (out / "work" / "left_over").exists()
    assert res["failed_parts"] == res["order"]
    assert all(res[part]["error"].startswith("not run: the check's deadline") for part in res["order"])
    assert json.loads((out / "gpu_check.json").read_text()) == json.loads(json.dumps(res))


def test_gpu_check_refuses_a_work_directory_it_did_not_make(tmp_path, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    assert cli.main(["gpu-check", "--mode", "cpu", "--out_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "work: exists and was not made by gpu-check" in err
    assert (tmp_path / "work" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_smoke_run_past_its_timeout_is_killed_with_its_process_tree(tmp_path):
    """As torchrun does, the command starts a child in a session of its own: both are killed at the timeout."""
    parent = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    log = tmp_path / "run.log"
    t0 = time.monotonic()
    with pytest.raises(smoke.Timeout, match="killed after"):
        smoke.run([sys.executable, "-c", parent], None, log, timeout_s=2)
    assert time.monotonic() - t0 < 20
    child = Path(f"/proc/{int(log.read_text().split()[0])}/stat")
    for _ in range(100):  # gone, or a zombie until its new parent reaps it
        if not child.exists() or child.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the child outlived the timeout")
    with pytest.raises(smoke.Timeout, match="not started"):
        smoke.run(["true"], None, log, smoke._timeout_s(time.monotonic() - 1, "the late run"))


def test_further_settings_start_only_if_their_expected_time_fits(monkeypatch):
    """A setting that shares the recipe's graph is expected to cost the recipe's time less its compile and
    probe; a new graph the recipe's whole time. The rest is recorded as skipped, with the reason."""
    calls, saves = [], []
    monkeypatch.setattr(
        speed,
        "measure",
        lambda *a, **k: calls.append(k["compile_"]) or {"micro_batch_size": 16, "trainer_tokens_per_s": 1.0},
    )
    base = {"wall_s": 100.0, "first_step_s": 60.0, "probe_s": 10.0, "micro_batch_size": 16}
    cfg = CurriculumConfig(
        name="r", model="m.json", phases=[{"name": "a", "share": 1.0, "sources": [{"name": "s", "path": "d"}]}]
    )
    rows = speed.measure_settings(
        ["foreach_adamw", "eager", "chunked_ce"],
        base,
        cfg,
        MODEL,
        torch.device("cpu"),
        mode="gpu",
        peak=None,
        until=time.monotonic() + 50,
        rows=[],
        save=lambda: saves.append(1),
        say=lambda line: None,
    )
    assert calls == ["on", "off"] and len(saves) == 3
    assert rows[2]["skipped"].startswith("time:") and "~100 s expected" in rows[2]["skipped"]


def test_gpu_check_refuses_an_unknown_setting(tmp_path):
    r = subprocess.run(
        [
            *CLI,
            "gpu-check",
            "--mode",
            "cpu",
            "--settings",
            "warp_drive",
            "--out_dir",
            str(tmp_path),
        ],
        env=CLI_ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "unknown setting 'warp_drive'" in r.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "global_tokens, world, expected",
    [
        (8 * 32, 1, 8),  # 8 sequences per step: one micro batch of 8
        (8 * 32, 2, 4),  # 4 per rank
        (24 * 32, 1, 12),  # 24 sequences: the largest divisor up to 16
        (512 * 32, 1, 16),
        (17 * 32, 1, 1),  # a prime above 16: no accumulation but of single sequences
    ],
)
def test_auto_micro_batch_on_cpu_is_the_largest_divisor_up_to_16(global_tokens, world, expected):
    cfg = _cfg(global_tokens, "auto")
    layout = make_layout(make_schedule(cfg, MODEL), cfg.batch, world)
    assert layout.micro_batch_size == expected
    assert layout.micro_batch_size * layout.grad_accum * world * 32 == global_tokens
    assert make_layout(make_schedule(cfg, MODEL), cfg.batch, world, micro_batch_size=1).micro_batch_size == 1


def test_micro_batch_must_be_a_number_or_auto():
    with pytest.raises(ValidationError):
        _cfg(256, "max")
    assert micro_batch_candidates(12) == [12, 6, 4, 3, 2, 1] and micro_batch_candidates(12, 5) == [4, 3, 2, 1]


def test_speed_settings_do_not_change_the_fingerprint(tmp_path):
    from trainkit import make_domain

    ds = make_domain(tmp_path, "wiki")
    from chinchilla_pipeline.data.reader import open_prepared

    domains = {"s": open_prepared(ds)}
    a = fingerprint(_cfg(256, 8), MODEL, domains)
    b = fingerprint(
        _cfg(256, 8, compile="on", speed={"cross_entropy": "chunked", "ddp_static_graph": True, "attention": "flash"}),
        MODEL,
        domains,
    )
    assert a == b and fingerprint(_cfg(256, 4), MODEL, domains) != a


def test_torchrun_is_recognised_by_its_variables():
    torchrun = {"TORCHELASTIC_RUN_ID": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "1"}
    assert under_torchrun(torchrun)
    assert not under_torchrun({"WORLD_SIZE": "1", "RANK": "0"})  # a plain run with rank variables exported


def test_auto_micro_batch_takes_the_largest_that_fits_the_free_memory_or_stops_with_one_line(monkeypatch):
    """The CUDA search with the card's answers stood in for (no GPU here): the probe's peaks against 90% of
    what this process can have (free + its reserved), largest micro batch first; none fitting is a UserError."""
    from chinchilla_pipeline.train import layout
    from chinchilla_pipeline.train.distributed import Dist

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (60 * gib, 80 * gib))  # another process holds 20
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev: "NVIDIA H100 80GB HBM3")
    peaks = {8: None, 4: 70 * gib, 2: 50 * gib, 1: 30 * gib}  # 8: out of memory; 4 fits the card, not the free part
    monkeypatch.setattr(layout, "probe_step", lambda build, vocab, context, device, micro: peaks[micro])
    dist = Dist(0, 0, 1, torch.device("cuda", 0))
    cfg = _cfg(8 * 32, "auto")
    schedule, lines = make_schedule(cfg, MODEL), []
    found = layout.resolve_layout(schedule, cfg.batch, dist, None, MODEL.vocab_size, log=lines.append)
    assert found.micro_batch_size == 2 and found.grad_accum == 4
    assert lines[1] == "micro batch 4: peak 70.0 GiB (budget 54.0 GiB of 80.0 GiB)"
    peaks.update({2: None, 1: None})
    with pytest.raises(UserError, match=r"no micro batch fits on NVIDIA H100 80GB HBM3 .*speed\.cross_entropy"):
        layout.resolve_layout(schedule, cfg.batch, dist, None, MODEL.vocab_size)


@pytest.mark.parametrize(
    "card, tflops",
    [
        ("NVIDIA H200", 989),
        ("NVIDIA H200 NVL", 835),
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA L4", None),
    ],
)
def test_peak_table_matches_the_most_specific_card_name(monkeypatch, card, tflops):
    import torch

    from chinchilla_pipeline.train.metrics import peak_flops

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: card)
    peak = peak_flops(torch.device("cuda", 0))
    assert (None if peak is None else round(peak / 1e12)) == tflops
