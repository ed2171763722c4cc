"""prepare on bad local records: no text, non-string text, invalid UTF-8, huge or out-of-range documents.

Expected counts come from ``reference_input``, a plain-Python reading of the records written.
"""

import gzip
import json
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chinchilla_pipeline.data.config import DatasetConfig
from chinchilla_pipeline.data.manifest import input_summary
from chinchilla_pipeline.data.prepare import prepare_dataset
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.data.sources import COUNTERS
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from conftest import CLI, CLI_ENV, CORPUS, prepare_args, write_dataset_config

GOOD = [
    "The first good document.",
    "A second one, with punctuation!",
    "Third: short but kept.",
    "def fourth():\n    return 4\n",
    "Fifth and last.",
]
# Each is a row without text (missing key, number, list, null) except "", which is only empty.
BAD = [{"title": "no text key"}, {"text": 12345}, {"text": ["a", "list"]}, {"text": None}, {"text": ""}]


def run_prepare(cfg_path, tok, out, **kw):
    return prepare_dataset(load_config(DatasetConfig, cfg_path), cfg_path, tok, out, progress=False, **kw)


def decoded_docs(dataset_dir, tokenizer_dir, split="train"):
    """Each document of the split's shards, decoded; every one must start with end-of-text."""
    tok = load_tokenizer(tokenizer_dir)
    docs = [
        s.tokens[a:b]
        for s in open_prepared(dataset_dir).shards(split)
        for a, b in zip(s.doc_starts[:-1], s.doc_starts[1:])
    ]
    assert all(d[0] == tok.eot_id for d in docs)
    return [tok.tokenizer.decode(d[1:].tolist()) for d in docs]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def local_config(tmp_path, name, path, fmt="json", **fields):
    """A config over one local file, in file order, every document in the train split."""
    source = {"type": "local", "format": fmt, "data_files": [str(path)]}
    if fmt == "text":
        source["sample_by"] = "line"
    fields = {"text_template": None, "validation_docs": 0, "shuffle_buffer": 0, **fields}
    return write_dataset_config(tmp_path, name, source=source, **fields)


def reference_input(texts, min_chars=0, max_chars=None):
    """The manifest's ``input`` section for rows whose text is ``texts`` (None: no text)."""
    lens = [len(t) if t else 0 for t in texts]
    counts = {
        "rows_read": len(texts),
        "rows_without_text": sum(t is None for t in texts),
        "not_sampled": 0,
        "dropped_empty": lens.count(0),
        "dropped_too_short": sum(0 < n < min_chars for n in lens),
        "dropped_too_long": sum(max_chars is not None and n > max_chars for n in lens),
        "documents_with_replacement_char": sum(bool(t) and "\ufffd" in t for t in texts),
    }
    assert list(counts) == list(COUNTERS)
    return counts


def text_of(record):
    t = record.get("text")
    return t if isinstance(t, str) else None


def test_rows_without_text_and_empty_rows_are_dropped_and_counted(tmp_path, tokenizer_dir):
    records = [r for g, bad in zip(GOOD, BAD) for r in ({"text": g}, bad)]  # good, bad, good, bad, ...
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    m = run_prepare(local_config(tmp_path, "mixed", path), tokenizer_dir, tmp_path / "out")
    kept = [text_of(r) for r in records if text_of(r)]
    assert decoded_docs(tmp_path / "out/mixed", tokenizer_dir) == kept
    assert m["splits"]["train"]["num_docs"] == len(kept)
    assert m["input"] == reference_input([text_of(r) for r in records])
    assert m["input"]["rows_read"] == len(records)
    assert m["input"]["rows_without_text"] == 4 and m["input"]["dropped_empty"] == 5


def _write_rows(path, fmt, rows: list[bytes]):
    """``rows`` (UTF-8 or not) as one text value per row in ``fmt``; returns the path."""
    if fmt == "json":
        marker = "@@ROW@@"
        line = json.dumps({"text": marker}).encode()
        path.write_bytes(b"".join(line.replace(marker.encode(), r) + b"\n" for r in rows))
    elif fmt == "text":
        path.write_bytes(b"\n".join(rows) + b"\n")
    elif fmt == "csv":
        path.write_bytes(b"text\n" + b"\n".join(rows) + b"\n")
    else:  # parquet: a string column holding the raw bytes, unvalidated, as another writer may leave it
        binary = pa.array(rows, type=pa.binary())
        strings = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())
        pq.write_table(pa.table({"text": strings}), path)
    return path


@pytest.mark.parametrize("fmt, suffix", [("json", "jsonl"), ("text", "txt"), ("csv", "csv"), ("parquet", "parquet")])
def test_invalid_utf8_becomes_replacement_char(tmp_path, tokenizer_dir, fmt, suffix):
    rows = [b"A clean first line.", b"caf\xff\xfe au lait then \xc3 more", b"A clean last line."]
    path = _write_rows(tmp_path / f"bad.{suffix}", fmt, rows)
    m = run_prepare(local_config(tmp_path, "bad", path, fmt), tokenizer_dir, tmp_path / "out")
    expected = [r.decode("utf-8", "replace") for r in rows]
    assert "\ufffd\ufffd au lait" in expected[1]
    assert decoded_docs(tmp_path / "out/bad", tokenizer_dir) == expected
    assert m["input"] == reference_input(expected)
    assert m["input"]["documents_with_replacement_char"] == 1


def test_document_of_several_megabytes_round_trips(tmp_path, tokenizer_dir):
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        corpus = "\n\n".join(json.loads(line)["text"] for line in f)
    huge = (corpus * (5_000_000 // len(corpus) + 1))[:5_000_000]
    texts = ["A small document before.", huge, "A small document after."]
    path = write_jsonl(tmp_path / "huge.jsonl", [{"text": t} for t in texts])
    m = run_prepare(local_config(tmp_path, "huge", path), tokenizer_dir, tmp_path / "out")
    assert decoded_docs(tmp_path / "out/huge", tokenizer_dir) == texts
    assert m["input"] == reference_input(texts)


def test_min_and_max_chars_drop_and_count(tmp_path, tokenizer_dir):
    lo, hi = 10, 40
    lengths = [3, lo - 1, lo, 25, hi, hi + 1, 200, 1, 0]  # both bounds are inclusive
    texts = ["x" * n for n in lengths]
    path = write_jsonl(tmp_path / "sizes.jsonl", [{"text": t} for t in texts])
    m = run_prepare(local_config(tmp_path, "sizes", path, min_chars=lo, max_chars=hi), tokenizer_dir, tmp_path / "out")
    assert decoded_docs(tmp_path / "out/sizes", tokenizer_dir) == [t for t in texts if lo <= len(t) <= hi]
    expected = reference_input(texts, lo, hi)
    assert m["input"] == expected
    assert (expected["dropped_too_short"], expected["dropped_too_long"], expected["dropped_empty"]) == (3, 2, 1)


@pytest.mark.parametrize("batch_docs", [4, 1024])
def test_counts_stop_at_the_last_document_kept_under_a_cap(tmp_path, tokenizer_dir, batch_docs):
    good = [{"text": f"Kept document number {i}."} for i in range(8)]
    # Bad rows before the cut, then 50 after it: only the first ones are read into the counts.
    records = [BAD[3], good[0], BAD[1], good[1], BAD[4], BAD[0], good[2]] + [BAD[2]] * 50 + good[3:]
    max_samples = 3
    path = write_jsonl(tmp_path / "capped.jsonl", records)
    cfg = local_config(tmp_path, "capped", path, max_samples=max_samples, batch_docs=batch_docs)
    m = run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    cut = records.index(good[max_samples - 1]) + 1  # rows up to the last document kept
    assert m["stop_reason"] == "max_samples"
    assert decoded_docs(tmp_path / "out/capped", tokenizer_dir) == [g["text"] for g in good[:max_samples]]
    assert m["input"] == reference_input([text_of(r) for r in records[:cut]])
    again = run_prepare(cfg, tokenizer_dir, tmp_path / "out", overwrite=True)
    assert again["input"] == m["input"]


def test_cap_reached_on_the_last_document_does_not_count_the_rows_after_it(tmp_path, tokenizer_dir):
    good = [{"text": "good 0"}, {"text": "good 1"}]
    path = write_jsonl(tmp_path / "end.jsonl", good + [{"text": None}] * 2)
    m = run_prepare(local_config(tmp_path, "end", path, max_samples=2), tokenizer_dir, tmp_path / "out")
    assert m["stop_reason"] == "max_samples"
    assert m["input"] == reference_input([text_of(r) for r in good])
    # Without the cap the source is exhausted, and the rows after the last document are counted.
    m = run_prepare(local_config(tmp_path, "end_all", path), tokenizer_dir, tmp_path / "out")
    assert m["stop_reason"] == "source_exhausted"
    assert m["input"]["rows_read"] == 4 and m["input"]["rows_without_text"] == 2


def test_template_row_is_without_text_only_when_every_field_is_missing(tmp_path, tokenizer_dir):
    records = [
        {"title": "Both", "body": "fields here."},
        {"title": "Title only"},
        {"body": "Body only."},
        {"id": 4},
        {"title": None, "body": None},
    ]
    path = write_jsonl(tmp_path / "tpl.jsonl", records)
    cfg = local_config(tmp_path, "tpl", path, text_template="{title}\n\n{body}")
    m = run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    texts = [
        None if r.get("title") is None and r.get("body") is None else f"{r.get('title') or ''}\n\n{r.get('body') or ''}"
        for r in records
    ]
    assert decoded_docs(tmp_path / "out/tpl", tokenizer_dir) == [t for t in texts if t]
    assert m["input"] == reference_input(texts)
    assert m["input"]["rows_without_text"] == 2


def test_cli_prints_the_input_counts(tmp_path, tokenizer_dir):
    records = [{"text": g} for g in GOOD] + BAD
    cfg = local_config(tmp_path, "cli", write_jsonl(tmp_path / "cli.jsonl", records))
    done = subprocess.run(
        [*CLI, *prepare_args(cfg, tokenizer_dir, tmp_path / "out")], env=CLI_ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    counts = reference_input([text_of(r) for r in records])
    assert json.loads((tmp_path / "out/cli/manifest.json").read_text())["input"] == counts
    assert len(lines) == 2 and lines[0].startswith(f"cli: {len(GOOD)} documents")
    assert lines[1] == f"  {input_summary(counts)}"
    assert f"{len(records)} rows read, 4 without text; dropped 5 empty" in lines[1]
    assert input_summary(reference_input(GOOD)) is None  # a clean source: no second line
