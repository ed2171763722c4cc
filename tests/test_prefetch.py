"""The background batch reader (train/prefetch.py) changes no batch: runs with and without it are bitwise equal."""

from __future__ import annotations

import json

import pytest
import torch

from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.train.checkpoint import load_checkpoint
from chinchilla_pipeline.train.prefetch import BatchPrefetcher
from chinchilla_pipeline.train.pretrain import run_pretrain
from chinchilla_pipeline.train.rundir import list_checkpoints
from chinchilla_pipeline.train.sampler import TokenStream, WeightedMultiDatasetSampler
from trainkit import SEED_ORDER, make_domain, write_curriculum

KINDS = {"train", "validation", "epoch", "phase_start", "transition"}  # in the order written
TIMING = {"tokens_per_s", "mfu"}  # the only fields that may differ between two runs


def _train(root, prefetch: bool, phases: list[str | None]):
    """48 steps over two phases on sources of 24 windows each: every source starts a new epoch."""
    for domain in ("wiki", "books", "c4", "forums"):
        make_domain(root / "data", domain, n_docs=4)  # 4 x 200 tokens = 24 windows of 32
    cfg = write_curriculum(root, SEED_ORDER, steps=48, speed={"prefetch": prefetch})
    for phase in phases:
        assert run_pretrain(cfg, phase=phase, out_dir=root / "runs", device="cpu") == 0
    run = root / "runs" / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in r.items() if k not in TIMING} for r in lines if r["type"] in KINDS]
    return records, [load_checkpoint(p) for _, p in list_checkpoints(run)]


@pytest.fixture(scope="module")
def without_prefetch(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("off"), False, [None])


@pytest.mark.parametrize("phases", [[None], ["a", "b"]])  # one invocation; one per phase (reads stop at each end)
def test_losses_epochs_and_checkpoints_are_bitwise_those_without_prefetch(tmp_path, phases, without_prefetch):
    off_records, off_ckpts = without_prefetch
    on_records, on_ckpts = _train(tmp_path / "on", True, phases)
    assert on_records == off_records  # losses and gradient norms as floats: equal to the last bit
    assert sum(r["type"] == "epoch" for r in on_records) >= 8  # each source's new epochs, logged at the same steps
    assert [c["step"] for c in on_ckpts] == [c["step"] for c in off_ckpts] != []
    for on, off in zip(on_ckpts, off_ckpts):
        assert on["sampler"] == off["sampler"] and on["consumed"] == off["consumed"]
        assert all(torch.equal(on["model"][k], off["model"][k]) for k in off["model"])


def test_a_batch_read_ahead_serves_only_its_own_picks(tmp_path):
    stream = TokenStream(open_prepared(make_domain(tmp_path, "wiki")).shards("train"))
    sampler = WeightedMultiDatasetSampler(["wiki"], [stream], [1.0], context=32, seed=0)
    other = WeightedMultiDatasetSampler(["wiki"], [stream], [1.0], context=32, seed=1)
    batches = BatchPrefetcher(torch.device("cpu"))
    batches.ahead(sampler, sampler.peek(8))
    picks = sampler.take(8)
    assert torch.equal(batches.get(sampler, picks), torch.from_numpy(sampler.read(picks)[0]))
    batches.ahead(sampler, sampler.peek(8))  # read for `sampler`; asked for by `other`: read again
    mine = other.take(8)
    assert torch.equal(batches.get(other, mine), torch.from_numpy(other.read(mine)[0]))
    batches.close()
