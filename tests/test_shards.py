import numpy as np
import pytest

from chinchilla_pipeline.data.manifest import write_token_dataset
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.data.shards import HEADER_BYTES, ShardWriter, open_shard
from chinchilla_pipeline.errors import UserError


def test_shard_round_trip_uint16(tmp_path):
    w = ShardWriter(tmp_path / "train_00000.bin", vocab_size=50257, eot_id=50256)
    w.add(np.array([50256, 1, 2, 3, 50256, 7]), [4, 2])
    w.add(np.array([50256, 9]), [2])
    w.close()
    s = open_shard(tmp_path / "train_00000.bin")
    assert s.tokens.dtype == np.uint16
    assert s.tokens.tolist() == [50256, 1, 2, 3, 50256, 7, 50256, 9]
    assert s.doc_starts.tolist() == [0, 4, 6, 8]
    assert (tmp_path / "train_00000.bin").stat().st_size == HEADER_BYTES + 8 * 2


def test_large_vocabulary_uses_uint32(tmp_path):
    w = ShardWriter(tmp_path / "a.bin", vocab_size=100_000, eot_id=0)
    w.add(np.array([0, 99_999]), [2])
    w.close()
    s = open_shard(tmp_path / "a.bin")
    assert s.tokens.dtype == np.uint32 and s.tokens.tolist() == [0, 99_999]


def test_aborted_writer_leaves_nothing(tmp_path):
    w = ShardWriter(tmp_path / "a.bin", vocab_size=300, eot_id=0)
    w.add(np.array([0, 1]), [2])
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_truncated_or_foreign_file_is_refused(tmp_path):
    w = ShardWriter(tmp_path / "a.bin", vocab_size=300, eot_id=0)
    w.add(np.array([0, 1, 2]), [3])
    w.close()
    with open(tmp_path / "a.bin", "r+b") as f:
        f.truncate(HEADER_BYTES + 2)
    with pytest.raises(UserError, match="header says"):
        open_shard(tmp_path / "a.bin")
    (tmp_path / "b.bin").write_bytes(b"x" * 300)
    with pytest.raises(UserError, match="bad magic"):
        open_shard(tmp_path / "b.bin")


def test_reader_opens_a_token_dataset(tmp_path):
    docs = {"train": [np.array([0, 4, 5]), np.array([0, 6])], "validation": [np.array([0, 8])]}
    ds = open_prepared(write_token_dataset(tmp_path, "d", docs, vocab_size=16, eot_id=0))
    assert ds.num_tokens("train") == 5 and ds.num_docs("validation") == 1
    assert ds.shards("train")[0].tokens.tolist() == [0, 4, 5, 0, 6]
    with pytest.raises(UserError, match="not prepared"):
        open_prepared(tmp_path / "missing")
