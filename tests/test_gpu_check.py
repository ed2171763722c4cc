"""``chinchilla gpu-check --mode cpu``: the GPU check's own code path on CPU (tiny model, gloo), so CI keeps it
working; and the pieces it relies on: "micro_batch_size": "auto", speed settings outside the fingerprint,
one rank under torchrun running DDP."""

from __future__ import annotations

import json
import subprocess

import pytest
from pydantic import ValidationError

from chinchilla_pipeline.model.config import ModelConfig
from chinchilla_pipeline.train.config import CurriculumConfig, make_plan, micro_batch_candidates
from chinchilla_pipeline.train.distributed import under_torchrun
from chinchilla_pipeline.train.setup import fingerprint
from conftest import CLI, CLI_ENV

MODEL = ModelConfig(name="t", n_layer=1, n_head=1, n_embd=8, block_size=32, vocab_size=64)


def _cfg(global_batch_tokens: int, micro, **fields) -> CurriculumConfig:
    return CurriculumConfig(
        name="r",
        model="m.json",
        phases=[{"name": "a", "share": 1.0, "sources": [{"name": "s", "path": "d"}]}],
        batch={"global_batch_tokens": global_batch_tokens, "micro_batch_size": micro},
        **fields,
    )


def test_gpu_check_cpu_mode_runs_every_part(tmp_path):
    out = tmp_path / "check"
    r = subprocess.run(
        [*CLI, "gpu-check", "--mode", "cpu", "--out_dir", str(out)],
        env=CLI_ENV,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["failed_parts"] == []
    assert [row["setting"] for row in res["throughput"]] == ["baseline", "chunked_ce"]
    assert all(row["trainer_tokens_per_s"] > 0 and row["bare_tokens_per_s"] > 0 for row in res["throughput"])
    smoke = res["smoke"]
    assert smoke["phase_boundary_logged"] and "auto -> 4" in smoke["micro_batch_line"]
    assert 20 <= smoke["killed_at_checkpoint"] < 100  # killed mid phase a; the resume crossed the boundary
    assert smoke["resume_vs_unbroken"]["bitwise"] and smoke["resume_vs_unbroken"]["steps_compared"] == 200
    assert smoke["torchrun_process_group"] and smoke["torchrun_vs_unbroken"]["bitwise"]
    assert res["export"]["max_abs_diff"] < 1e-4 and res["export"]["argmax_agreement"] == 1.0
    assert res["checkpoint_write"]["bytes"] > 3 * 4 * res["checkpoint_write"]["params"]  # weights + 2 AdamW moments
    table = (out / "gpu_check.md").read_text()
    assert "| resumed vs unbroken | bitwise identical" in table and table == r.stdout


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
