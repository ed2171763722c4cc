"""Helpers for the training tests: tiny token datasets in the real shard format, tiny configs.

Each domain follows its own deterministic next-token rule, so a 2-layer model
learns it within tens of steps and a phase on one domain measurably changes
the loss on another.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from chinchilla_pipeline.data.manifest import write_token_dataset

VOCAB = 256
EOT = 0
RULES = {"wiki": (1, 1), "books": (3, 7), "c4": (5, 11), "forums": (7, 3)}  # next = (a·t + b) mod 255 + 1


def byte_vocabulary(vocab: int = VOCAB) -> np.ndarray:
    """The bytes per token id of a byte vocabulary: 1 for every id, 0 for end-of-text (``token_bytes.npy``)."""
    table = np.ones(vocab, dtype=np.int32)
    table[EOT] = 0
    return table


def make_domain(
    root: Path, name: str, *, n_docs: int = 40, doc_len: int = 200, vocab: int = VOCAB, seed: int = 0
) -> Path:
    """A prepared dataset whose documents start with EOT and then follow the domain's rule."""
    a, b = RULES[name]
    rng = np.random.default_rng([seed, a, b])

    def doc() -> np.ndarray:
        t = [EOT, int(rng.integers(1, vocab))]
        for _ in range(doc_len - 2):
            t.append((a * t[-1] + b) % (vocab - 1) + 1)
        return np.array(t, dtype=np.int64)

    return write_token_dataset(
        root,
        name,
        {"train": [doc() for _ in range(n_docs)], "validation": [doc() for _ in range(4)]},
        vocab_size=vocab,
        eot_id=EOT,
        tokenizer_sha256="test-tokenizer",
        token_bytes=byte_vocabulary(vocab),
    )


def write_model(root: Path, **fields) -> Path:
    cfg = {"name": "test_tiny", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": VOCAB}
    cfg.update(fields)
    path = root / "model.json"
    path.write_text(json.dumps(cfg))
    return path


def write_curriculum(
    root: Path, phases: list[tuple[str, dict[str, float]]], *, steps: int = 40, name: str = "run", **fields
) -> Path:
    """A curriculum over ``make_domain`` datasets in ``root/data``: 256 tokens per step, ``steps`` steps.

    ``phases``: [(phase name, {domain: weight})], equal shares.
    """
    model = root / "model.json" if (root / "model.json").exists() else write_model(root)
    data = root / "data"
    for domain in {d for _, ws in phases for d in ws}:
        if not (data / domain / "manifest.json").exists():
            make_domain(data, domain)
    cfg = {
        "name": name,
        "model": str(model),
        "seed": 7,
        "total_tokens": 256 * steps,
        "phases": [
            {
                "name": p,
                "share": 1 / len(phases),
                "sources": [{"name": d, "path": str(data / d), "weight": w} for d, w in ws.items()],
            }
            for p, ws in phases
        ],
        "batch": {"global_batch_tokens": 256, "micro_batch_size": 4},
        "optimizer": {"lr": 3e-3},
        "schedule": {"kind": "cosine", "warmup_share": 0.1},
        "eval": {"interval_steps": 10, "tokens_per_source": 256},
        "checkpoint": {"interval_steps": 5, "keep_last": 2},
        "log_interval_steps": 5,
    }
    cfg.update(fields)
    path = root / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


SEED_ORDER = [("a", {"wiki": 2, "books": 1}), ("b", {"c4": 2, "forums": 1})]


# The modern recipe at test size: the nanochat architecture, Muon + AdamW (lrs for width 32), long warmdown.
MODERN_MODEL = {"architecture": "nanochat"}
MODERN_FIELDS = {
    "optimizer": {
        "kind": "muon",
        "lr": 3e-3,
        "beta1": 0.8,
        "muon": {"matrix_lr": 0.02, "embedding_lr": 0.05, "head_lr": 0.01, "momentum_warmup_steps": 10},
    },
    "schedule": {"kind": "wsd", "warmup_share": 0.0, "decay_start_share": 0.35},
}


def kill_after_checkpoint(cmd: list[str], env: dict[str, str], run_dir: Path, at_least: int) -> int:
    """Start ``cmd`` (a ``chinchilla pretrain``), SIGKILL it once ``run_dir`` holds a checkpoint at step
    ``at_least`` or later; returns the step of the last checkpoint it left."""
    import os
    import signal
    import subprocess
    import time

    from chinchilla_pipeline.train.rundir import list_checkpoints

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list_checkpoints(run_dir) or list_checkpoints(run_dir)[-1][0] < at_least:
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return list_checkpoints(run_dir)[-1][0]


def assert_same_run(a: Path, b: Path, steps: int) -> None:
    """Two run directories trained the same steps bitwise: every step's loss, the final weights, the tokens drawn."""
    import torch

    from chinchilla_pipeline.train.checkpoint import load_checkpoint
    from chinchilla_pipeline.train.metrics import read_metrics
    from chinchilla_pipeline.train.rundir import METRICS, list_checkpoints

    ta, tb = read_metrics(a / METRICS, "train"), read_metrics(b / METRICS, "train")
    assert sorted(ta) == sorted(tb) == list(range(steps))
    assert [ta[s]["loss"] for s in range(steps)] == [tb[s]["loss"] for s in range(steps)]
    final_a = load_checkpoint(list_checkpoints(a)[-1][1])
    final_b = load_checkpoint(list_checkpoints(b)[-1][1])
    assert all(torch.equal(final_a["model"][k], final_b["model"][k]) for k in final_a["model"])
    assert final_a["tokens_seen"] == final_b["tokens_seen"]
