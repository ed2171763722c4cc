"""`chinchilla preflight`: one table; blockers (data, tokenizer, disk, GPU asked for) exit 2."""

from __future__ import annotations

import json
import re
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data.config import DatasetConfig
from chinchilla_pipeline.data.prepare import prepare_dataset
from chinchilla_pipeline.instruments import preflight as pf
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from conftest import write_dataset_config

STEPS, TOKENS_PER_STEP = 20, 256


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory, tokenizer_dir):
    """Two sources prepared with the test tokenizer, a two-phase curriculum over them, a tiny model."""
    root = tmp_path_factory.mktemp("preflight")
    for name, n in (("wiki", 120), ("forums", 60)):
        cfg_path = write_dataset_config(root, name=name, max_samples=n)
        prepare_dataset(
            load_config(DatasetConfig, cfg_path), cfg_path, tokenizer_dir, root / "data", workers=1, progress=False
        )
    vocab = load_tokenizer(tokenizer_dir).vocab_size
    (root / "model.json").write_text(
        json.dumps({"name": "t", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": vocab})
    )
    cur = {
        "name": "run",
        "model": str(root / "model.json"),
        "total_tokens": STEPS * TOKENS_PER_STEP,
        "phases": [
            {"name": "a", "share": 0.5, "sources": [{"name": "wiki", "path": str(root / "data/wiki")}]},
            {
                "name": "b",
                "share": 0.5,
                "sources": [
                    {"name": "wiki", "path": str(root / "data/wiki")},
                    {"name": "forums", "path": str(root / "data/forums"), "weight": 3},
                ],
            },
        ],
        "batch": {"global_batch_tokens": TOKENS_PER_STEP, "micro_batch_size": 8},
        "checkpoint": {"interval_steps": 5, "keep_last": 2},
    }
    (root / "run.json").write_text(json.dumps(cur))
    return root


def table(capsys, root, tokenizer_dir, *extra) -> tuple[int, dict[str, tuple[str, str]]]:
    code = main(
        [
            "preflight",
            "--config",
            str(root / "run.json"),
            "--tokenizer",
            str(tokenizer_dir),
            "--out_dir",
            str(root / "runs"),
            *extra,
        ]
    )
    rows = {}
    for line in capsys.readouterr().out.splitlines()[1:-1]:
        check, status, detail = re.split(r"\s{2,}", line, maxsplit=2)
        rows[check] = (status, detail)
    return code, rows


def test_ready_run_prints_every_check_and_exits_0(run_setup, tokenizer_dir, capsys):
    code, rows = table(capsys, run_setup, tokenizer_dir, "--tokens_per_second", "1024")
    assert list(rows) == ["data wiki", "data forums", "tokenizer", "disk", "gpu", "wall-clock", "run dir"]
    manifests = {n: json.loads((run_setup / "data" / n / "manifest.json").read_text()) for n in ("wiki", "forums")}
    # phase a draws 10 steps of wiki; phase b 10 steps split 1:3 -> wiki 10*256*1.25, forums 10*256*0.75
    for name, drawn in (("wiki", 10 * 256 * 1.25), ("forums", 10 * 256 * 0.75)):
        train = manifests[name]["splits"]["train"]["num_tokens"]
        assert f"the phases draw {drawn:,.0f}: {drawn / train:.2f} epochs" in rows[f"data {name}"][1]
    assert rows["tokenizer"][0] == "ok" and rows["disk"][0] == "ok"
    assert rows["run dir"][1].endswith("fresh (no checkpoint)")
    assert "5,120 tokens at 1,024 tokens/s (given): 0 h 00 min" in rows["wall-clock"][1]
    if not torch.cuda.is_available():
        assert rows["gpu"] == ("warn", "none (CUDA unavailable): training would run on CPU")
    assert code == 0


def test_run_dir_state_resumable_then_finished(run_setup, tokenizer_dir, capsys):
    ckpts = run_setup / "runs" / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step_0000015.pt").write_bytes(b"")  # the trainer's names (train/checkpoint.py)
    try:
        _, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify")
        assert "resumable at step 15 of 20 (phase b)" in rows["run dir"][1]
        (ckpts / "step_0000020_final-b.pt").write_bytes(b"")
        _, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify")
        assert "finished at step 20" in rows["run dir"][1]
    finally:
        for p in ckpts.iterdir():
            p.unlink()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_gpu_is_a_blocker_only_when_cuda_is_asked_for(run_setup, tokenizer_dir, capsys):
    code, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify", "--device", "cuda")
    assert code == 2 and rows["gpu"][0] == "BLOCKER"


def fake_gpus(monkeypatch, n: int, name: str, bf16: bool) -> None:
    """``n`` CUDA devices called ``name`` as torch.cuda reports them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)


def test_gpu_without_bf16_blocks_the_default_dtype_and_ranks_are_counted(run_setup, tokenizer_dir, capsys, monkeypatch):
    fake_gpus(monkeypatch, 8, "Tesla V100-SXM2-32GB", bf16=False)
    code, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify")
    assert code == 2 and rows["gpu"][0] == "BLOCKER"  # the config's dtype is "auto": bf16 autocast on CUDA
    assert 'dtype "auto" trains in bf16 here: set "dtype": "float32"' in rows["gpu"][1]
    fake_gpus(monkeypatch, 8, "NVIDIA H100 80GB HBM3", bf16=True)
    cfg = json.loads((run_setup / "run.json").read_text())
    for world, status, says in [
        (8, "ok", "8 x NVIDIA H100 80GB HBM3; bf16 supported; 8 rank(s)"),
        (16, "ok", "(2 node(s) of 8)"),
        (4, "warn", "4 GPU(s) of this machine idle"),
        (12, "warn", "not a multiple of this machine's 8 GPUs"),
    ]:
        row = pf.check_gpu(namedtuple("Cfg", "dtype")(cfg.get("dtype", "auto")), "auto", world)
        assert row.status == status and says in row.detail, row


def test_out_dir_that_is_a_file_blocks(run_setup, tokenizer_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    code = main(
        [
            "preflight",
            "--config",
            str(run_setup / "run.json"),
            "--tokenizer",
            str(tokenizer_dir),
            "--out_dir",
            str(blocker),
            "--no_verify",
        ]
    )
    out = capsys.readouterr().out
    assert code == 2 and re.search(r"run dir\s+BLOCKER\s+.*a_file is a file, not a directory", out), out


def test_blockers_exit_2(run_setup, tokenizer_dir, tmp_path, capsys, monkeypatch):
    code, rows = table(capsys, run_setup, tmp_path / "other_tokenizer", "--no_verify")
    assert code == 2 and rows["tokenizer"][0] == "BLOCKER" and "no tokenizer at" in rows["tokenizer"][1]
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    code, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify")
    assert code == 2 and rows["disk"][0] == "BLOCKER" and "5 checkpoints x" in rows["disk"][1]


def test_unprepared_or_corrupt_source_is_a_blocker(run_setup, tokenizer_dir, tmp_path, capsys):
    cur = json.loads((run_setup / "run.json").read_text())
    cur["phases"][1]["sources"][1]["path"] = str(tmp_path / "missing")
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps(cur))
    code = main(["preflight", "--config", str(bad), "--tokenizer", str(tokenizer_dir), "--out_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and "data forums  BLOCKER  " in out and "no manifest.json" in out
    shard = Path(cur["phases"][0]["sources"][0]["path"]) / "train_00000.bin"
    original = shard.read_bytes()
    shard.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        code, rows = table(capsys, run_setup, tokenizer_dir)
        assert code == 2 and rows["data wiki"][0] == "BLOCKER" and "sha256 differs" in rows["data wiki"][1]
    finally:
        shard.write_bytes(original)
    table_path = Path(cur["phases"][0]["sources"][0]["path"]) / "token_bytes.npy"  # a dataset from before it
    original = table_path.read_bytes()
    table_path.unlink()
    try:
        code, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify")
        assert code == 2 and rows["data wiki"][0] == "BLOCKER" and "no token_bytes.npy" in rows["data wiki"][1]
    finally:
        table_path.write_bytes(original)


def test_wall_clock_from_gpu_check_results(run_setup, tokenizer_dir, capsys, tmp_path):
    """gpu-check's fastest trainer rate x the ranks sets the time; a CPU-mode result does not."""
    results = tmp_path / "gpu_check.json"
    fields = {"started": "2026-11-28 12:00:00 UTC", "environment": {"card": "NVIDIA H200"}}
    fields["fastest"] = {"setting": "baseline", "trainer_tokens_per_s": 1024.0}
    results.write_text(json.dumps({"mode": "gpu", **fields}))
    _, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify", "--gpu_check", str(results))
    assert rows["wall-clock"][0] == "ok"
    assert "5,120 tokens at 1,024 tokens/s (measured by gpu-check on NVIDIA H200" in rows["wall-clock"][1]
    assert "1,024 x 1 ranks, linear scaling assumed" in rows["wall-clock"][1]
    results.write_text(json.dumps({"mode": "cpu", **fields}))
    _, rows = table(capsys, run_setup, tokenizer_dir, "--no_verify", "--gpu_check", str(results))
    assert rows["wall-clock"][0] == "warn" and "make gpu-check" in rows["wall-clock"][1]
