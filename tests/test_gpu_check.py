"""``chinchilla gpu-check --mode cpu``: the GPU check's own code path on CPU (tiny model, gloo), run through
``scripts/gpu_check.sh`` so CI keeps both working; what a kill, a deadline or a hung subprocess leaves; and the
pieces it relies on: "micro_batch_size": "auto", speed settings outside the fingerprint, one rank under torchrun
running DDP."""

from __future__ import annotations

import json
import os
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
from chinchilla_pipeline.gpucheck import check, smoke, speed
from chinchilla_pipeline.model.config import ModelConfig
from chinchilla_pipeline.train.config import CurriculumConfig, make_plan, micro_batch_candidates
from chinchilla_pipeline.train.distributed import under_torchrun
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


def test_gpu_check_cpu_mode_runs_every_part_through_its_script(tmp_path):
    """``scripts/gpu_check.sh --mode cpu`` (as `make gpu-check-cpu` runs it): the interpreter from $PYTHON, its
    pydantic/datasets check, the package from src/ on the PYTHONPATH it sets (none inherited)."""
    out = tmp_path / "check"
    env = {k: v for k, v in CLI_ENV.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [str(SCRIPT), "--mode", "cpu", "--out_dir", str(out)],
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert Path(res["environment"]["pythonpath"]).resolve() == (ROOT / "src").resolve()
    assert res["complete"] and res["pending_parts"] == [] and res["failed_parts"] == []
    assert res["deadline_s"] == check.DEFAULT_DEADLINE_S["cpu"] and res["wall_s"] < res["deadline_s"]
    base, chunked, modern = res["throughput"]
    assert (base["setting"], chunked["setting"], modern["setting"]) == ("baseline", "chunked_ce", "nanochat")
    # the modern recipe: the nanochat model with Muon + AdamW, measured like the others
    assert modern["optimizer"] == "muon" and modern["trainer_tokens_per_s"] > 0 and modern["model"].endswith("nanochat")
    # the bare loop for the baseline only: trainer/bare there, the bare fields empty elsewhere
    assert base["bare_measured"] and base["bare_tokens_per_s"] > 0 and base["trainer_tokens_per_s"] > 0
    assert base["ratio"] == base["trainer_tokens_per_s"] / base["bare_tokens_per_s"]
    assert chunked["trainer_tokens_per_s"] > 0 and not chunked["bare_measured"]
    assert all(chunked[k] is None for k in speed.BARE_FIELDS)
    smoke_res = res["smoke"]
    assert smoke_res["phase_boundary_logged"] and "auto -> 4" in smoke_res["micro_batch_line"]
    assert 20 <= smoke_res["killed_at_checkpoint"] < 100  # killed mid phase a; the resume crossed the boundary
    assert smoke_res["resume_vs_unbroken"]["bitwise"] and smoke_res["resume_vs_unbroken"]["steps_compared"] == 200
    assert smoke_res["torchrun_process_group"] and smoke_res["torchrun_vs_unbroken"]["bitwise"]
    assert res["export"]["max_abs_diff"] < 1e-4 and res["export"]["argmax_agreement"] == 1.0
    assert res["checkpoint_write"]["bytes"] > 3 * 4 * res["checkpoint_write"]["params"]  # weights + 2 AdamW moments
    table = (out / "gpu_check.md").read_text()
    assert "| resumed vs unbroken | bitwise identical" in table and table == r.stdout
    assert "Incomplete" not in table
    row = next(line for line in table.splitlines() if line.startswith("| chunked_ce ("))
    cells = [c.strip() for c in row.split("|")[1:-1]]  # setting, micro, trainer, bare, ratio, MFU, MFU, GiB, first
    assert cells[2] != "–" and cells[3] == cells[4] == "–" and cells[8].endswith("/ –")
    assert (out / "work" / check.MARKER).is_file()


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


def test_gpu_check_writes_its_results_after_every_part(tmp_path, monkeypatch):
    """A kill during a part leaves the parts before it on disk, marked incomplete; the next check reuses the
    scratch directory (its own), and parts the deadline leaves no time for are recorded as not run."""
    out, seen = tmp_path / "check", {}

    def killed(*_args, **_kwargs):  # what a SIGKILL during the checkpoint part would leave: the files as they are
        seen["json"] = json.loads((out / "gpu_check.json").read_text())
        seen["md"] = (out / "gpu_check.md").read_text()
        os.kill(os.getpid(), signal.SIGTERM)  # then a SIGTERM (`timeout`'s signal) ends the check
        time.sleep(30)

    monkeypatch.setattr(check, "checkpoint_cost", killed)
    handler = signal.getsignal(signal.SIGTERM)
    stopped = check.gpu_check("cpu", out, settings=["baseline"], say=lambda line: None)
    on_disk = seen["json"]
    assert not on_disk["complete"] and on_disk["running_part"] == "checkpoint_write"
    assert on_disk["pending_parts"] == ["checkpoint_write", "smoke_data", "smoke", "export"]
    (base,) = on_disk["throughput"]
    assert base["trainer_tokens_per_s"] > 0 and base["bare_tokens_per_s"] > 0
    assert on_disk["fastest"]["setting"] == "baseline" and on_disk["part_seconds"].keys() == {"throughput"}
    assert "**Incomplete**" in seen["md"] and "during part `checkpoint_write`" in seen["md"]
    assert "| baseline (" in seen["md"]
    final = json.loads((out / "gpu_check.json").read_text())  # SIGTERM: recorded, and the check ends
    assert final == json.loads(json.dumps(stopped)) and not final["complete"]
    assert final["stopped"] == "SIGTERM during part checkpoint_write" and final["failed_parts"] == ["checkpoint_write"]
    assert final["checkpoint_write"]["error"] == "stopped: SIGTERM" and final["throughput"] == on_disk["throughput"]
    assert signal.getsignal(signal.SIGTERM) is handler  # the check's own handler is gone

    (out / "work" / "left_over").write_text("the killed check's scratch")
    res = check.gpu_check("cpu", out, settings=["baseline"], deadline_s=1e-6, say=lambda line: None)
    assert res["complete"] and res["pending_parts"] == [] and not (out / "work" / "left_over").exists()
    assert res["failed_parts"] == check.PARTS
    assert all(res[part]["error"].startswith("not run: the check's deadline") for part in check.PARTS)
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


def test_throughput_settings_start_only_within_their_budget_and_bare_only_for_the_baseline(monkeypatch):
    """eager right after baseline; a compiled setting starts only if the last compiled one's trainer time fits."""
    calls, saves = [], []

    def fake_measure(name, *_args, bare, **_kwargs):
        calls.append((name, bare))
        return {
            "setting": name,
            "trainer_tokens_per_s": 1.0,
            "trainer_wall_s": 60.0,
            "bare_measured": bare,
            "bare_tokens_per_s": 1.0 if bare else None,
            "micro_batch_size": 16,
        }

    monkeypatch.setattr(speed, "measure", fake_measure)
    assert speed.GPU_SETTINGS[:2] == ["baseline", "eager"]
    rows = speed.measure_all(
        speed.GPU_SETTINGS[:4],
        MODEL,
        None,
        dtype="bfloat16",
        steps=1,
        warmup=1,
        peak=None,
        deadline=time.monotonic() + 30,
        say=lambda line: None,
        save=lambda: saves.append(1),
    )
    assert calls == [("baseline", True), ("eager", False)]
    assert [r["setting"] for r in rows] == speed.GPU_SETTINGS[:4] and len(saves) == 4
    assert rows[2]["skipped"].startswith("time budget") and "~60 s expected" in rows[2]["skipped"]


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
    plan = make_plan(_cfg(global_tokens, "auto"), MODEL, world)
    assert plan.micro_batch_size == expected
    assert plan.micro_batch_size * plan.grad_accum * world * 32 == global_tokens
    assert make_plan(_cfg(global_tokens, "auto"), MODEL, world, micro_batch_size=1).micro_batch_size == 1


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
    from chinchilla_pipeline.train import microbatch
    from chinchilla_pipeline.train.distributed import Dist

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (60 * gib, 80 * gib))  # another process holds 20
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev: "NVIDIA H100 80GB HBM3")
    peaks = {8: None, 4: 70 * gib, 2: 50 * gib, 1: 30 * gib}  # 8: out of memory; 4 fits the card, not the free part
    monkeypatch.setattr(microbatch, "probe_step", lambda model_cfg, cfg, device, micro: peaks[micro])
    dist = Dist(0, 0, 1, torch.device("cuda", 0))
    lines = []
    assert microbatch.resolve_micro_batch(_cfg(8 * 32, "auto"), MODEL, dist, log=lines.append) == 2
    assert lines[1] == "micro batch 4: peak 70.0 GiB (budget 54.0 GiB of 80.0 GiB)"
    peaks.update({2: None, 1: None})
    with pytest.raises(UserError, match=r"no micro batch fits on NVIDIA H100 80GB HBM3 .*speed\.cross_entropy"):
        microbatch.resolve_micro_batch(_cfg(8 * 32, "auto"), MODEL, dist)


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
