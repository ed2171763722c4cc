"""WeightedMultiDatasetSampler on real shards: exact prefixes, epochs, resume, DDP slices."""

from __future__ import annotations

import numpy as np
import pytest

from chinchilla_pipeline.data.manifest import write_token_dataset
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.train.mixture import Mixture, Piece
from chinchilla_pipeline.train.sampler import TokenStream, WeightedMultiDatasetSampler

CTX = 8


def arange_stream(tmp_path, name, num_windows, base=0):
    """A source whose window i starts with token base + i·CTX (so a window names itself), in two shards."""
    tokens = np.arange(base, base + num_windows * CTX + 1, dtype=np.int64)
    tokens[0] = 0  # documents start with end-of-text (id 0)
    half = tokens.size // 2
    docs = [tokens[:half], np.concatenate([[0], tokens[half + 1 :]])]
    shards = []
    for part, doc in zip("ab", docs):
        path = write_token_dataset(
            tmp_path, f"{name}_{part}", {"train": [doc], "validation": [doc]}, vocab_size=60000, eot_id=0
        )
        shards += open_prepared(path).shards("train")
    return TokenStream(shards)


def make(tmp_path, weights, windows=(50, 30, 20), seed=1, **kw):
    names = [f"s{i}" for i in range(len(weights))]
    streams = [arange_stream(tmp_path, n, w, base=10000 * (i + 1)) for i, (n, w) in enumerate(zip(names, windows))]
    return WeightedMultiDatasetSampler(names, streams, weights, context=CTX, seed=seed, **kw)


@pytest.mark.parametrize("weights", [[2, 1], [0.5, 0.3, 0.2], [0.97, 0.02, 0.01], [1, 1, 1]])
def test_every_prefix_within_one_sequence_of_the_weights(tmp_path, weights):
    s = make(tmp_path, weights, windows=(50, 30, 20)[: len(weights)])
    sources = np.array(s.next_sources(3000))
    w = np.array(weights, dtype=float) / sum(weights)
    counts = np.stack([np.cumsum(sources == i) for i in range(len(weights))], axis=1)  # after p+1 draws
    positions = np.arange(1, 3001)[:, None]
    assert np.abs(counts - w * positions).max() <= 1.0
    assert s.drawn == counts[-1].tolist()


def test_tokens_come_from_the_stream_across_shards(tmp_path):
    stream = arange_stream(tmp_path, "x", 40)
    flat = np.concatenate([sh.tokens for sh in stream.shards]).astype(np.int64)
    for start in (0, 7, flat.size // 2 - 3, flat.size - CTX - 1):
        assert np.array_equal(stream.read(start, CTX + 1), flat[start : start + CTX + 1])


def test_no_repeat_within_an_epoch_then_a_new_shuffle_is_recorded(tmp_path):
    s = make(tmp_path, [1], windows=(50,))
    n = s.num_windows[0]
    rows, _ = s.next_step(2 * n + 5)
    starts = [int(r[-1]) for r in rows]  # last token of window i is base + (i+1)·CTX (never the eot)
    epoch0, epoch1 = starts[:n], starts[n : 2 * n]
    assert len(set(epoch0)) == n and sorted(epoch0) == sorted(epoch1)
    assert epoch0 != epoch1
    assert [e["epoch"] for e in s.epoch_events] == [1, 2]
    assert [e["position"] for e in s.epoch_events] == [n, 2 * n]


def test_deterministic_and_seeded(tmp_path):
    a, b, c = make(tmp_path, [2, 1]), make(tmp_path, [2, 1]), make(tmp_path, [2, 1], seed=2)
    ra, rb, rc = a.next_step(64)[0], b.next_step(64)[0], c.next_step(64)[0]
    assert np.array_equal(ra, rb) and not np.array_equal(ra, rc)


def test_state_restores_the_same_next_batches(tmp_path):
    a = make(tmp_path, [0.5, 0.3, 0.2])
    for _ in range(7):
        a.next_step(16)
    state = a.state_dict()
    expected = [a.next_step(16)[0] for _ in range(10)]  # crosses epoch boundaries (20-window source)
    b = make(tmp_path, [0.5, 0.3, 0.2])
    b.load_state_dict(state)
    assert all(np.array_equal(e, b.next_step(16)[0]) for e in expected)
    assert set(state) == {"position", "drawn", "used", "names"}


def test_peek_names_the_next_picks_without_moving_the_state(tmp_path):
    a, b = make(tmp_path, [0.5, 0.3, 0.2]), make(tmp_path, [0.5, 0.3, 0.2])
    for _ in range(12):  # 192 sequences: every source crosses epochs (20-window source)
        state, events = a.state_dict(), list(a.epoch_events)
        ahead = a.peek(16, rank=1, world=2)
        assert a.state_dict() == state and a.epoch_events == events
        picks = a.take(16, rank=1, world=2)
        assert picks == ahead
        rows, src = a.read(picks)
        expected_rows, expected_src = b.next_step(16, rank=1, world=2)
        assert np.array_equal(rows, expected_rows) and np.array_equal(src, expected_src)
    assert a.state_dict() == b.state_dict() and a.epoch_events == b.epoch_events != []


def test_a_source_shared_by_two_phases_continues_where_it_stopped(tmp_path):
    whole = make(tmp_path, [1], windows=(50,))
    rows = whole.next_step(40)[0]
    w = (1.0, 0.0)  # phase 1: s0 alone; phase 2 (from sequence 25): s0 and s1 half and half
    mixture = Mixture(
        ["s0", "s1"], [Piece(0, 25, w, w, (0, 1), True), Piece(25, None, (0.5, 0.5), (0.5, 0.5), (0, 1), True)]
    )
    streams = [arange_stream(tmp_path, n, k, base=10000 * (i + 1)) for i, (n, k) in enumerate([("s0", 50), ("s1", 30)])]
    both = WeightedMultiDatasetSampler(["s0", "s1"], streams, mixture, context=CTX, seed=1)
    part1 = both.next_step(25)[0]
    part2, src = both.next_step(30)
    assert np.array_equal(np.concatenate([part1, part2[src == 0]]), rows)
    assert both.consumed() == {"s0": 40, "s1": 15}


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_get_disjoint_slices_of_the_same_global_stream(tmp_path, world):
    single = make(tmp_path, [2, 1], windows=(500, 300))  # no epoch ends within these 160 sequences
    ranks = [make(tmp_path, [2, 1], windows=(500, 300)) for _ in range(world)]
    for _ in range(5):
        full, src = single.next_step(32)
        parts = [r.next_step(32, rank=k, world=world) for k, r in enumerate(ranks)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), full)
        assert np.array_equal(np.concatenate([p[1] for p in parts]), src)
        keys = [{(int(s), row.tobytes()) for row, s in zip(*p)} for p in parts]
        assert sum(len(k) for k in keys) == len(set().union(*keys)) == 32  # disjoint, no repeat
    assert all(r.state_dict() == single.state_dict() for r in ranks)


def test_too_small_source_refused(tmp_path):
    write_token_dataset(tmp_path, "small", {"train": [np.array([0, 1, 2])], "validation": []}, vocab_size=10, eot_id=0)
    stream = TokenStream(open_prepared(tmp_path / "small").shards("train"))
    with pytest.raises(ValueError, match="fewer than context"):
        WeightedMultiDatasetSampler(["small"], [stream], [1.0], context=CTX, seed=0)
