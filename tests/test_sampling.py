"""A sample of the whole source: the seeded hash that owns and samples documents, the Reddit-shaped replica
prepared at a few percent, and ranks that read disjoint units of the replicas with the real file counts."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data import hub, sources
from chinchilla_pipeline.data.config import DatasetConfig
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.data.sampling import draws, owned_and_sampled
from chinchilla_pipeline.schema import load_config
from conftest import ROOT, prepare_args
from hub_replicas import REDDIT_LINES, build_mirror, reddit_month_rows, reddit_shaped

pytestmark = pytest.mark.usefixtures("short_parquet_shutdown")
MONTH = re.compile(r"^y(\d{4})m(\d\d) ")


def test_draws_are_seeded_uniform_and_split_the_sample_across_ranks():
    texts = [f"post {i}" for i in range(20_000)] + [None]
    u = draws(texts, 42)
    assert np.array_equal(u, draws(texts, 42)) and not np.array_equal(u, draws(texts, 43))
    assert u.min() >= 0 and u.max() < 1 and u[-1] == draws([""], 42)[0]  # a missing text draws as ""
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 1_800  # 2,000 expected per tenth
    whole = owned_and_sampled(texts, 42, 0, 1, 0.05)[1]
    parts = [owned_and_sampled(texts, 42, r, 4, 0.05) for r in range(4)]
    owners = np.stack([owned for owned, _ in parts])
    assert (owners.sum(axis=0) == 1).all()  # every text has exactly one owner
    kept = np.stack([owned & sampled for owned, sampled in parts])
    assert (kept.sum(axis=0) == whole).all() and abs(whole.mean() - 0.05) < 0.005  # the parts: the one-rank sample
    assert all(abs(k.sum() - whole.sum() / 4) < 4 * (whole.sum() * 3 / 16) ** 0.5 for k in kept)


def shares(counts: Counter) -> dict:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def test_reddit_sample_of_a_few_percent_holds_every_year_and_month_in_proportion(tmp_path, tokenizer_dir, monkeypatch):
    """The shipped forum config on 12 yearly files in month order with the real files' relative sizes: 4% sampled
    by hash, the whole sample in the shuffle buffer, cut by max_samples at ~70% of it. Every year and every month
    is within half to twice its share of the source, in the training split and in the validation split, and the
    manifest's per-file counts are the years'."""
    root = reddit_shaped(tmp_path / "hub", 300_000)
    monkeypatch.setenv(hub.MIRROR_ENV, str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    monkeypatch.chdir(ROOT)
    cfg = "config/datasets/phase_b_forums_500m.json"
    out = tmp_path / "out"
    assert main(prepare_args(cfg, tokenizer_dir, out, "--max_samples", "7000", "--workers", "1")) == 0
    ds = open_prepared(out / "phase_b_forums_500m")
    m = ds.manifest
    assert m["stop_reason"] == "max_samples" and m["splits"]["validation"]["num_docs"] == 1000
    counts = m["input"]  # the rows that reached the cap's position in the shuffled stream: 96% outside the sample
    assert counts["rows_read"] <= 300_000 and abs(counts["not_sampled"] / counts["rows_read"] - 0.96) < 0.01
    source_year, source_month = Counter(), Counter()
    for (year, month), n in reddit_month_rows(300_000).items():
        source_year[year] += n
        source_month[month] += n
    src_y, src_m = shares(source_year), shares(source_month)
    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    per_file = {f["file"]: f for f in m["files"]}
    assert sorted(per_file) == [f"reddit_title_text_{y}.jsonl.gz" for y in REDDIT_LINES]
    for split in ("train", "validation"):
        years, months = Counter(), Counter()
        for shard in ds.shards(split):
            for start in shard.doc_starts[:-1]:  # a document starts with end-of-text, then its title
                year, month = MONTH.match(tok.decode(shard.tokens[start + 1 : start + 12].tolist())).groups()
                years[int(year)] += 1
                months[int(month)] += 1
        assert sum(years.values()) == m["splits"][split]["num_docs"]
        assert {f"reddit_title_text_{y}.jsonl.gz": n for y, n in years.items()} == {
            f: e[split] for f, e in per_file.items() if e[split]
        }
        for got, want in ((shares(years), src_y), (shares(months), src_m)):
            ratio = {k: got.get(k, 0) / share for k, share in want.items()}
            assert all(0.5 <= r <= 2 for r in ratio.values()), (split, ratio)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return build_mirror(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def on_mirror(mirror, monkeypatch) -> Path:
    monkeypatch.setenv(hub.MIRROR_ENV, str(mirror))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    return mirror


@pytest.mark.parametrize(
    "name, files", [("phase_a_wikipedia_1b", 41), ("phase_a_pg19_500m", 23), ("phase_a_bookcorpus_500m", 10)]
)
def test_ranks_read_disjoint_units_of_replicas_with_the_real_file_counts(on_mirror, name, files):
    """Wikipedia's 41 files, PG-19's 23 and BookCorpus's 10, split by row groups for W = 3 and 4: each rank
    iterates its own units only (no more than ceil(units / W)), the parts are disjoint and together the one-rank
    documents."""
    path = ROOT / f"config/datasets/{name}.json"
    cfg = load_config(DatasetConfig, path)
    whole, listed = sources.document_dataset(cfg, path)
    assert len(listed) == files
    one = sorted(d for b in sources.iter_documents(cfg, path) for d in b)
    for world_size in (3, 4):
        parts = [sources.document_dataset(cfg, path, r, world_size)[0] for r in range(world_size)]
        assert sum(p.num_shards for p in parts) == whole.num_shards >= files
        assert max(p.num_shards for p in parts) <= -(-whole.num_shards // world_size)
        docs = [[d for b in sources.iter_documents(cfg, path, r, world_size) for d in b] for r in range(world_size)]
        assert sorted(d for p in docs for d in p) == one


def test_reddit_ranks_each_read_every_file_and_keep_the_sample_they_own(tmp_path, monkeypatch):
    """A sampled source is split by hash: with W = 4 every rank reads all 12 files (the docs give the download),
    and the parts together are the one-rank sample."""
    root = reddit_shaped(tmp_path / "hub", 30_000)
    monkeypatch.setenv(hub.MIRROR_ENV, str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    path = ROOT / "config/datasets/phase_b_forums_500m.json"
    cfg = load_config(DatasetConfig, path)
    whole = [d for b in sources.iter_documents(cfg, path) for d in b]
    parts = [[d for b in sources.iter_documents(cfg, path, r, 4) for d in b] for r in range(4)]
    assert all(sources.document_dataset(cfg, path, r, 4)[0].num_shards == 12 for r in range(4))
    assert sorted(d for p in parts for d in p) == sorted(whole) and 900 < len(whole) < 1_500  # 4% of 30,000
    assert json.loads(path.read_text())["sample_rate"] == cfg.sample_rate == 0.04


def test_parquet_prefix_is_drawn_from_row_groups_of_every_part_of_the_source(on_mirror):
    """Wikipedia's replica (41 files in article order, row groups of 8) with a shuffle buffer of 16 documents: the
    first fifth of the stream comes from every fifth of the articles (at least half its share), which reading the
    files one after another (the unit shuffle left out) would not give."""
    path = ROOT / "config/datasets/phase_a_wikipedia_1b.json"
    cfg = load_config(DatasetConfig, path).model_copy(update={"shuffle_buffer": 16, "validation_docs": 0})
    docs = [d for b in sources.iter_documents(cfg, path) for d in b]
    ids = [int(re.match(r"Article (\d+)\n", d).group(1)) for d in docs[: len(docs) // 5]]
    fifths = np.bincount(np.array(ids) * 5 // len(docs), minlength=5)
    assert fifths.min() >= len(ids) / 5 / 2, fifths
