"""Tiny local copies of the shipped Hub repositories, with the layout each has at its pinned commit.

``build_mirror(root)`` writes ``root/<owner>/<name>/`` for every Hub source of ``config/datasets``; with
``CHINCHILLA_HUB_MIRROR=root`` the shipped configs read them through the same ``load_dataset`` call
(``data/hub.py``). Layouts (file names, formats, README ``configs:`` metadata, config names, splits,
columns and types) follow the configs' ``_comment`` citations; row counts are tiny, text is the real
test corpus (Python's help topics) cut into paragraphs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import CORPUS

WIKI_README = """---
license: cc-by-sa-3.0
configs:
- config_name: 20231101.en
  data_files:
  - split: train
    path: 20231101.en/train-*
- config_name: 20231101.simple
  data_files:
  - split: train
    path: 20231101.simple/train-*
---
# Wikipedia (replica)
"""
C4_README = """---
license: odc-by
configs:
- config_name: en
  default: true
  data_files:
  - split: train
    path: en/c4-train.*.json.gz
  - split: validation
    path: en/c4-validation.*.json.gz
- config_name: realnewslike
  data_files:
  - split: train
    path: realnewslike/c4-train.*.json.gz
---
# C4 (replica)
"""
REDDIT_README = "# Reddit (Title, Body)-Pairs (replica)\n\nNo YAML header, as in the real repository.\n"
PG19_README = """---
dataset_info:
  features:
  - name: short_book_title
    dtype: string
  - name: publication_date
    dtype: int32
  - name: url
    dtype: string
  - name: text
    dtype: string
---
# PG-19 (replica)
"""
SIZES = {"wikipedia": 1_100, "c4": 1_200, "reddit": 1_300, "bookcorpus_sentences": 28_000, "pg19": 40}


def paragraphs() -> list[str]:
    """The test corpus cut into paragraphs of at least 60 characters (a few thousand, deterministic)."""
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            out.extend(p.strip() for p in json.loads(line)["text"].split("\n\n") if len(p.strip()) >= 60)
    return out


def _text(paras: list[str], i: int, n: int) -> str:
    return "\n\n".join(paras[(i * n + k) % len(paras)] for k in range(n))


def _parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=256)


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _split(rows: list, parts: int) -> list[list]:
    k = -(-len(rows) // parts)
    return [rows[i : i + k] for i in range(0, len(rows), k)]


def build_mirror(root: Path) -> Path:
    """Write every replica under ``root`` and return it."""
    paras = paragraphs()
    # wikimedia/wikipedia: parquet, 20231101.en/train-000NN-of-00041.parquet (3 of the 41 here).
    wiki = [
        {
            "id": str(i),
            "url": f"https://en.wikipedia.org/wiki?curid={i}",
            "title": f"Article {i}",
            "text": _text(paras, i, 3),
        }
        for i in range(SIZES["wikipedia"])
    ]
    repo = root / "wikimedia" / "wikipedia"
    for j, part in enumerate(_split(wiki, 3)):
        _parquet(repo / "20231101.en" / f"train-{j:05d}-of-00041.parquet", pa.Table.from_pylist(part))
    _parquet(repo / "20231101.simple" / "train-00000-of-00001.parquet", pa.Table.from_pylist(wiki[:5]))
    (repo / "README.md").write_text(WIKI_README)
    # allenai/c4: gzipped JSON lines, en/c4-train.0000N-of-01024.json.gz (2 of 1,024) + validation.
    c4 = [
        {"text": _text(paras, i + 7, 3), "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.org/{i}"}
        for i in range(SIZES["c4"])
    ]
    repo = root / "allenai" / "c4"
    for j, part in enumerate(_split(c4, 2)):
        _jsonl_gz(repo / "en" / f"c4-train.{j:05d}-of-01024.json.gz", part)
    _jsonl_gz(repo / "en" / "c4-validation.00000-of-00008.json.gz", c4[:10])
    _jsonl_gz(repo / "realnewslike" / "c4-train.00000-of-00512.json.gz", c4[:10])
    (repo / "README.md").write_text(C4_README)
    # sentence-transformers/reddit-title-body: reddit_title_text_20xx.jsonl.gz at the root (3 of the 12 years).
    reddit = [
        {"title": paras[(i * 5) % len(paras)][:80], "body": paras[(i * 5 + 1) % len(paras)], "subreddit": f"sub{i % 7}"}
        for i in range(SIZES["reddit"])
    ]
    repo = root / "sentence-transformers" / "reddit-title-body"
    for year, part in zip((2010, 2011, 2012), _split(reddit, 3)):
        _jsonl_gz(repo / f"reddit_title_text_{year}.jsonl.gz", part)
    (repo / "README.md").write_text(REDDIT_README)
    # bookcorpus/bookcorpus at refs/convert/parquet: plain_text/train/000N.parquet, column text, no README.
    sentences = [s.strip().lower()[:60] + " ." for p in paras for s in p.replace("\n", " ").split(". ") if s.strip()]
    rows = [sentences[i % len(sentences)] for i in range(SIZES["bookcorpus_sentences"])]
    repo = root / "bookcorpus" / "bookcorpus"
    for j, part in enumerate(_split(rows, 2)):
        _parquet(repo / "plain_text" / "train" / f"{j:04d}.parquet", pa.table({"text": part}))
    # emozilla/pg19: data/<split>-0000N-of-0000M-<hash>.parquet, four columns (publication_date int32).
    books = [
        {
            "short_book_title": f"Book {i}",
            "publication_date": 1850 + i % 60,
            "url": f"http://www.gutenberg.org/ebooks/{i}",
            "text": _text(paras, i * 11, 6),
        }
        for i in range(SIZES["pg19"])
    ]
    schema = pa.schema(
        [
            ("short_book_title", pa.string()),
            ("publication_date", pa.int32()),
            ("url", pa.string()),
            ("text", pa.string()),
        ]
    )
    repo = root / "emozilla" / "pg19"
    for j, part in enumerate(_split(books, 2)):
        _parquet(repo / "data" / f"train-{j:05d}-of-00002-{j:016x}.parquet", pa.Table.from_pylist(part, schema))
    _parquet(
        repo / "data" / "validation-00000-of-00001-0000000000000abc.parquet", pa.Table.from_pylist(books[:2], schema)
    )
    _parquet(repo / "data" / "test-00000-of-00001-29a571947c0b5ccc.parquet", pa.Table.from_pylist(books[:2], schema))
    (repo / "README.md").write_text(PG19_README)
    return root


def script_only_repo(root: Path, repo_id: str = "bookcorpus/bookcorpus") -> Path:
    """The main branch of a script dataset: README + ``<name>.py`` (what datasets>=4 refuses)."""
    repo = root / repo_id
    repo.mkdir(parents=True, exist_ok=True)
    (repo / f"{repo_id.split('/')[1]}.py").write_text("import datasets\n")
    (repo / "README.md").write_text("# script dataset\n")
    return root
