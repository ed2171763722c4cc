"""Tiny local copies of the shipped Hub repositories, with the layout each has at its pinned commit.

``build_mirror(root)`` writes ``root/<owner>/<name>/`` for every Hub source of ``config/datasets``; with
``CHINCHILLA_HUB_MIRROR=root`` the shipped configs read them through the same ``load_dataset`` call
(``data/hub.py``). Each replica has the real repository's file names and file count, formats, directory names,
README metadata (a ``configs:`` block only where the real README has one), config names, splits, columns and
types, as the configs' ``_comment`` and the pages cited below give them. Row counts are tiny (a few rows per
file, ~2 s for the whole mirror); text is the real test corpus (Python's help topics) cut into paragraphs.
``build_mirror(root, c4_train_files=n)`` writes only the first ``n`` of C4's 1,024 train files (``c4_replica``).
``reddit_shaped(root, total_rows)`` writes the Reddit replica with the real files' relative sizes, months in order.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import CORPUS

# wikimedia/wikipedia at b04c8d1c: `configs:` per dump and language; the licence pair as the card's metadata gives
# it (huggingface.co/datasets/wikimedia/wikipedia/commit/b8bc12bbc5758d81a5fb8981bd04148236527e38).
WIKI_README = """---
license:
- cc-by-sa-3.0
- gfdl
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
# allenai/c4 at 607bd4c8: a 2.38 kB README of prose
# (huggingface.co/datasets/allenai/c4/tree/607bd4c8450a42878aa9ddc051a65a055450ef87): no YAML and no `configs:`
# block, which came later with "Datasets support (#6)" (commit 1588ec45), so `datasets` infers one config,
# default, from the files `data_files` names.
C4_README = """# C4 (replica)

The processed version of Google's C4 in five variants: en, en.noclean, en.noblocklist, realnewslike, multilingual.
No YAML header, as at commit 607bd4c8.
"""
# sentence-transformers/reddit-title-body at 60f9fef: no YAML header; the card gives the format and the lines per
# file (huggingface.co/datasets/sentence-transformers/reddit-title-body/blob/60f9fef73b56b73dfaefeab3729410f3cf9f846d/
# README.md).
REDDIT_README = """# Reddit (Title, Body)-Pairs (replica)

JSON lines {"title": ..., "body": ..., "subreddit": ...}, one gzipped file per year; no YAML header, as at 60f9fef.
"""
# emozilla/pg19 at c021754c: dataset_info only, no `configs:`; `datasets` takes the splits from the file names.
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
# The 23 train files of emozilla/pg19 at c021754c (push_to_hub names: index, count, hash), as a public collection
# script that reads that commit lists them; its validation and test files as local copies of it name them.
PG19_TRAIN_HASHES = (
    "5263dc4323e881d2 2b13c68dbeba63b5 8e4dd6b70d51dfcf e7f0ba0d3c2eb6c0 3f9e7e096fa07f4b 87dece6a0ab708e8 "
    "c50fea56d0518a87 e9fea5c158e172e2 275017526d706c9d f07a29af90b71085 dd5d8583a9f6a549 6c0bc91e6df2e661 "
    "78d820574bddc6bb 5b853732c713dded 54b567998cd5eb4b 7a78b1e66cfe52de 8269d10108995a28 e240b232c0daddca "
    "f59d477d80180c78 198af082bd917d87 f9b058c5e9338514 e221306b7359a366 5a956eb2a5d6cab5"
).split()
PG19_VALIDATION = "data/validation-00000-of-00001-0f92e2337f79aeac.parquet"
PG19_TEST = "data/test-00000-of-00001-29a571947c0b5ccc.parquet"
# Lines per yearly file, the README's overview table at 60f9fef (127,445,911 in all; 2014 as corrected there,
# 8,538,976): 2010 holds 0.34% of the posts, 2019 15.1%, 2020 18.1%. "The 2021 file contains submissions up until
# including 2021-06"; the files are in month order, "shuffled on a monthly basis".
REDDIT_LINES = {
    2010: 431_782,
    2011: 1_673_264,
    2012: 3_727_526,
    2013: 5_713_956,
    2014: 8_538_976,
    2015: 11_064_453,
    2016: 12_224_789,
    2017: 13_558_139,
    2018: 15_552_110,
    2019: 19_224_970,
    2020: 23_030_988,
    2021: 12_704_958,
}
REDDIT_MONTHS = {year: 6 if year == 2021 else 12 for year in REDDIT_LINES}
# Rows per replica: enough for the shipped configs' validation splits (1,000 documents; PG-19's 20 books,
# BookCorpus's 200 documents of 128 sentences) plus training documents; Reddit's 40,000 rows leave 2,000
# documents to a config that keeps 5% of them.
C4_TRAIN_FILES = 1024  # en/c4-train.*-of-01024.json.gz at 607bd4c8
SIZES = {"wikipedia": 1_100, "c4": 1_200, "reddit": 40_000, "bookcorpus_sentences": 28_000, "pg19": 40}


def paragraphs() -> list[str]:
    """The test corpus cut into paragraphs of at least 60 characters (a few thousand, deterministic)."""
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            out.extend(p.strip() for p in json.loads(line)["text"].split("\n\n") if len(p.strip()) >= 60)
    return out


def _text(paras: list[str], i: int, n: int) -> str:
    return "\n\n".join(paras[(i * n + k) % len(paras)] for k in range(n))


def _parquet(path: Path, table: pa.Table, row_group_size: int = 256) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:  # level 1: the mirror is rebuilt per module
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _split(rows: list, parts: int) -> list[list]:
    """``rows`` in ``parts`` consecutive parts whose sizes differ by at most one."""
    return [rows[i * len(rows) // parts : (i + 1) * len(rows) // parts] for i in range(parts)]


def _largest_remainder(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, rounded so that the parts sum to ``total`` exactly."""
    quotas = [total * w / sum(weights) for w in weights]
    counts = [int(q) for q in quotas]
    for i in sorted(range(len(quotas)), key=lambda i: counts[i] - quotas[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


def reddit_month_rows(total_rows: int) -> dict[tuple[int, int], int]:
    """Rows per (year, month) of ``reddit_shaped``: the years in proportion to the README's lines per file, each
    year split evenly over its months (the card gives no monthly counts: equal months are assumed)."""
    years = _largest_remainder(total_rows, list(REDDIT_LINES.values()))
    out = {}
    for year, n in zip(REDDIT_LINES, years):
        months = REDDIT_MONTHS[year]
        for m in range(months):
            out[(year, m + 1)] = (m + 1) * n // months - m * n // months
    return out


def _bodies(paras: list[str]) -> list[str]:
    """Post bodies of 100-300 characters: paragraphs, the next one appended to a short one, cut at a space."""
    out = []
    for i, p in enumerate(paras):
        body = p if len(p) >= 100 else f"{p} {paras[(i + 1) % len(paras)]}"
        out.append(body if len(body) <= 300 else body[:300].rsplit(" ", 1)[0])
    return out


def reddit_shaped(root: Path, total_rows: int) -> Path:
    """Write ``root/sentence-transformers/reddit-title-body/`` as at 60f9fef and return ``root``.

    12 gzipped JSON-lines files ``reddit_title_text_2010.jsonl.gz`` ... ``_2021`` (2021: January to June), with
    ``total_rows`` posts in the real files' proportions (``reddit_month_rows``), each file in month order.
    Columns title, body, subreddit (strings). A title starts with its month, ``y2015m03 `` (then a serial that
    keeps every document unique), so the document text ``{title}\\n\\n{body}`` tells where it came from; a body is
    100-300 characters of the test corpus, so ``min_chars`` 100 keeps every post."""
    paras = paragraphs()
    bodies = _bodies(paras)
    repo = root / "sentence-transformers" / "reddit-title-body"
    months = reddit_month_rows(total_rows)
    serial = 0
    for year in REDDIT_LINES:
        rows = []
        for month in range(1, REDDIT_MONTHS[year] + 1):
            for _ in range(months[(year, month)]):
                words = paras[(serial * 7) % len(paras)].split()[:6]
                rows.append(
                    {
                        "title": f"y{year}m{month:02d} post {serial}: {' '.join(words)}",
                        "body": bodies[(serial * 5 + 1) % len(bodies)],
                        "subreddit": f"sub{serial % 7}",
                    }
                )
                serial += 1
        _jsonl_gz(repo / f"reddit_title_text_{year}.jsonl.gz", rows)
    (repo / "README.md").write_text(REDDIT_README)
    return root


def c4_replica(root: Path, train_files: int = C4_TRAIN_FILES, paras: list[str] | None = None) -> Path:
    """Write ``root/allenai/c4/`` as at 607bd4c8 and return ``root``: gzipped JSON lines,
    en/c4-train.NNNNN-of-01024.json.gz (all 1,024 by default; ``train_files`` < 1,024: the first ones, as a
    partial download has them, the same rows over fewer files), the 8 validation files and one file of the
    realnewslike variant (never read)."""
    paras = paras or paragraphs()
    c4 = [
        {"text": _text(paras, i + 7, 3), "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.org/{i}"}
        for i in range(SIZES["c4"])
    ]
    repo = root / "allenai" / "c4"
    for j, part in enumerate(_split(c4, train_files)):
        _jsonl_gz(repo / "en" / f"c4-train.{j:05d}-of-{C4_TRAIN_FILES:05d}.json.gz", part)
    for j, part in enumerate(_split(c4[:16], 8)):
        _jsonl_gz(repo / "en" / f"c4-validation.{j:05d}-of-00008.json.gz", part)
    _jsonl_gz(repo / "realnewslike" / "c4-train.00000-of-00512.json.gz", c4[:10])
    (repo / "README.md").write_text(C4_README)
    return root


def build_mirror(root: Path, c4_train_files: int = C4_TRAIN_FILES) -> Path:
    """Write every replica under ``root`` and return it. ``c4_train_files``: see ``c4_replica`` (opening a
    source costs ``datasets`` ~7 CPU-s per 1,024 files: a test that opens C4 often can ask for fewer)."""
    paras = paragraphs()
    # wikimedia/wikipedia: 20231101.en/train-000NN-of-00041.parquet, all 41; row groups of 8 rows, so that a
    # file holds several (a test corrupts one in the middle of a file).
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
    for j, part in enumerate(_split(wiki, 41)):
        _parquet(repo / "20231101.en" / f"train-{j:05d}-of-00041.parquet", pa.Table.from_pylist(part), 8)
    _parquet(repo / "20231101.simple" / "train-00000-of-00001.parquet", pa.Table.from_pylist(wiki[:5]))
    (repo / "README.md").write_text(WIKI_README)
    c4_replica(root, c4_train_files, paras)
    reddit_shaped(root, SIZES["reddit"])
    # bookcorpus/bookcorpus at refs/convert/parquet: plain_text/train/0000.parquet ... 0009.parquet (10 files, as
    # public code that downloads that branch names them), column text, no README.
    sentences = [s.strip().lower()[:60] + " ." for p in paras for s in p.replace("\n", " ").split(". ") if s.strip()]
    rows = [sentences[i % len(sentences)] for i in range(SIZES["bookcorpus_sentences"])]
    repo = root / "bookcorpus" / "bookcorpus"
    for j, part in enumerate(_split(rows, 10)):
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
    for j, (part, digest) in enumerate(zip(_split(books, 23), PG19_TRAIN_HASHES)):
        _parquet(repo / "data" / f"train-{j:05d}-of-00023-{digest}.parquet", pa.Table.from_pylist(part, schema))
    _parquet(repo / PG19_VALIDATION, pa.Table.from_pylist(books[:2], schema))
    _parquet(repo / PG19_TEST, pa.Table.from_pylist(books[:2], schema))
    (repo / "README.md").write_text(PG19_README)
    return root


def script_only_repo(root: Path, repo_id: str = "bookcorpus/bookcorpus") -> Path:
    """The main branch of a script dataset: README + ``<name>.py`` (what datasets>=4 refuses)."""
    repo = root / repo_id
    repo.mkdir(parents=True, exist_ok=True)
    (repo / f"{repo_id.split('/')[1]}.py").write_text("import datasets\n")
    (repo / "README.md").write_text("# script dataset\n")
    return root
