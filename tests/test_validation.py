"""Validation in nats/token and bits per byte: the Validator against a hand computation, datasets without
the bytes-per-token table refused."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data.manifest import write_token_dataset
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.train.distributed import Dist
from chinchilla_pipeline.train.validation import Validator
from trainkit import EOT, SEED_ORDER, VOCAB, byte_vocabulary, write_curriculum

CONTEXT = 16
CPU = Dist(0, 0, 1, torch.device("cpu"))


class Bigram(torch.nn.Module):
    """Logits of the next token from the current one alone: a model whose per-token losses differ."""

    def __init__(self, vocab: int):
        super().__init__()
        self.logits = torch.nn.Embedding(vocab, vocab)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(x).flatten(0, 1), y.flatten())


def _dataset(root, name: str, seed: int, table: np.ndarray | None):
    rng = np.random.default_rng(seed)
    docs = [np.concatenate([[EOT], rng.integers(1, VOCAB, int(rng.integers(5, 40)))]) for _ in range(12)]
    return open_prepared(
        write_token_dataset(
            root, name, {"train": docs, "validation": docs}, vocab_size=VOCAB, eot_id=EOT, token_bytes=table
        )
    )


def test_bits_per_byte_equal_a_hand_computation(tmp_path):
    table = (np.arange(VOCAB) % 4 + 1).astype(np.int32)  # 1 to 4 bytes per id, as UTF-8 characters
    table[EOT] = 0
    datasets = {name: _dataset(tmp_path, name, seed, table) for seed, name in enumerate(("wiki", "books"))}
    torch.manual_seed(0)
    model = Bigram(VOCAB)
    max_tokens = 5 * CONTEXT + 3  # 5 whole windows per domain
    result = Validator(datasets, context=CONTEXT, max_tokens=max_tokens, micro_batch_size=2, dist=CPU).evaluate(
        model, contextlib.nullcontext
    )
    assert set(result) == {"loss", "bpb"} and set(result["bpb"]) == set(datasets)
    log_p = torch.log_softmax(model.logits.weight.detach().double(), dim=-1)
    for name, ds in datasets.items():
        tokens = np.asarray(ds.shards("validation")[0].tokens).astype(np.int64)
        nats = num_bytes = num_tokens = 0.0
        for j in range(5):  # window j: tokens jT .. jT + T, predicting the last T of them
            x, y = tokens[j * CONTEXT : (j + 1) * CONTEXT], tokens[j * CONTEXT + 1 : (j + 1) * CONTEXT + 1]
            nats -= float(log_p[x, y].sum())
            num_bytes += int(table[y].sum())
            num_tokens += CONTEXT
        assert result["loss"][name] == pytest.approx(nats / num_tokens, rel=1e-5)
        assert result["bpb"][name] == pytest.approx(nats / (math.log(2) * num_bytes), rel=1e-5)


def test_a_dataset_without_the_table_is_refused_naming_its_manifest(tmp_path, capsys):
    ds = _dataset(tmp_path, "old", 0, None)
    with pytest.raises(UserError, match=r"old/manifest.json: field 'token_bytes_sha256': no token_bytes.npy"):
        Validator({"old": ds}, context=CONTEXT, max_tokens=64, micro_batch_size=2, dist=CPU)
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=4)
    (tmp_path / "data/books/token_bytes.npy").unlink()
    assert main(["pretrain", "--config", str(cfg), "--out_dir", str(tmp_path / "runs"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "books/manifest.json" in err and "re-run `chinchilla prepare`" in err and "Traceback" not in err


def test_a_tampered_or_different_table_is_refused(tmp_path):
    ds = _dataset(tmp_path, "a", 0, byte_vocabulary())
    other = _dataset(tmp_path, "b", 1, byte_vocabulary() * 2)
    with pytest.raises(UserError, match="another token_bytes.npy"):
        Validator({"a": ds, "b": other}, context=CONTEXT, max_tokens=64, micro_batch_size=2, dist=CPU)
    np.save(ds.path / "token_bytes.npy", byte_vocabulary() * 3)
    with pytest.raises(UserError, match="differs from the manifest's sha256"):
        open_prepared(ds.path).token_bytes()


def test_transition_summary_in_both_units_and_from_a_boundary_saved_before_bits_per_byte():
    from chinchilla_pipeline.train.metrics import transition_summary

    before = {"loss": {"wiki": 2.0, "c4": 3.0}, "bpb": {"wiki": 1.0, "c4": 1.5}}
    after = {"loss": {"wiki": 2.5, "c4": 2.0}, "bpb": {"wiki": 1.2, "c4": 1.0}}
    s = transition_summary(before, after, ["wiki"], ["c4"])
    assert s["forgetting"] == {"wiki": 0.5} and s["gain"] == {"c4": 1.0} and s["before"] == before["loss"]
    assert s["forgetting_bpb"] == {"wiki": pytest.approx(0.2)} and s["gain_bpb"] == {"c4": 0.5}
    old = transition_summary({"wiki": 2.0, "c4": 3.0}, after, ["wiki"], ["c4"])  # a checkpoint's {domain: nats}
    assert old["forgetting"] == {"wiki": 0.5} and not any(k.endswith("_bpb") for k in old)
