"""gigatoken against HF tokenizers: the same ids on hard text, the same shard bytes, and a difference stops prepare."""

import gzip
import json
import re

import numpy as np
import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data import encode, id_check
from chinchilla_pipeline.data.id_check import CheckSampler, first_difference
from chinchilla_pipeline.data.layout import PROGRESS_NAME
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.tokenizer.encoders import open_encoder
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from chinchilla_pipeline.tokenizer.unicode_gap import GAP_RANGES, gap_documents
from conftest import CORPUS, prepare_args, write_dataset_config
from hardtext import hard_texts
from test_prepare import run_prepare, shard_docs, tree_bytes

MARKER = "MARKER"  # the one document whose ids the broken encoder changes


@pytest.fixture(scope="module")
def larger_tokenizer(tmp_path_factory):
    """A 4,096-token BPE of the test corpus (the session's has 1,024): more merges, more ways to differ."""
    from chinchilla_pipeline.tokenizer.train import train_tokenizer

    d = tmp_path_factory.mktemp("tok4096")
    cfg = write_dataset_config(d, "tokenizer_text_4096", validation_docs=20)
    mix = d / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 4096, "max_samples": 700, "report_docs": 20, "sources": [{"config": str(cfg)}]})
    )
    train_tokenizer(mix, d / "tokenizer")
    return d / "tokenizer"


@pytest.mark.parametrize("seed,size", [(0, "1024"), (1, "1024"), (2, "4096"), (3, "4096")])
def test_gigatoken_gives_hf_ids_on_hard_text(tokenizer_dir, larger_tokenizer, seed, size):
    json_text = load_tokenizer(tokenizer_dir if size == "1024" else larger_tokenizer).path.read_text()
    docs = hard_texts(seed)
    fast_ids, fast_lens = open_encoder("gigatoken", json_text, parallel=True)(docs)
    ref_ids, ref_lens = open_encoder("hf", json_text, parallel=True)(docs)
    assert first_difference(fast_ids, fast_lens, list(range(len(docs))), ref_ids, ref_lens) is None
    assert np.array_equal(fast_ids, ref_ids) and np.array_equal(fast_lens, ref_lens)


def _with_a_contraction_token(tokenizer_dir) -> str:
    """The session tokenizer's JSON plus the token "'t" (the merge "'" + "t"), which makes the gap visible."""
    data = json.loads(load_tokenizer(tokenizer_dir).path.read_text())
    data["model"]["vocab"]["'t"] = len(data["model"]["vocab"])
    data["model"]["merges"].append(["'", "t"])
    return json.dumps(data)


def test_the_unicode_gap_is_exactly_where_raw_gigatoken_differs_and_hf_encodes_it(tokenizer_dir):
    import gigatoken

    json_text = _with_a_contraction_token(tokenizer_dir)
    raw = gigatoken.Tokenizer.from_json(json_text)
    hf = open_encoder("hf", json_text, parallel=True)
    gap = [c for first, last in GAP_RANGES for c in range(first, last + 1)]
    others = [c for c in range(0, 0x110000, 97) if not 0xD800 <= c < 0xE000 and c not in set(gap)]
    texts = [chr(c) + "'t" for c in gap + others]
    ref_ids, ref_lens = hf(texts)
    ref = np.split(ref_ids, np.cumsum(ref_lens)[:-1])
    differs = [not np.array_equal(r, np.asarray(g)) for r, g in zip(ref, raw.encode_batch_list(texts))]
    assert differs == [True] * len(gap) + [False] * len(others)  # a new gigatoken or tokenizers: update the table
    assert gap_documents(texts) == list(range(len(gap)))
    ids, lens = open_encoder("gigatoken", json_text, parallel=True)(texts)
    assert np.array_equal(ids, ref_ids) and np.array_equal(lens, ref_lens)


def test_first_difference_names_the_document_token_and_ids():
    ids, lens = np.array([1, 2, 3, 4, 5, 6], np.uint32), np.array([2, 4])
    assert first_difference(ids, lens, [0, 1], np.array([1, 2, 3, 4, 5, 6], np.uint32), np.array([2, 4])) is None
    diff = first_difference(ids, lens, [1], np.array([3, 4, 9, 6], np.uint32), np.array([4]))
    assert (diff.doc, diff.token, diff.fast_id, diff.reference_id) == (1, 2, 5, 9)
    diff = first_difference(ids, lens, [0], np.array([1, 2, 7], np.uint32), np.array([3]))  # the fast ids end first
    assert (diff.doc, diff.token, diff.fast_id, diff.reference_id) == (0, 2, None, 7)


def test_the_sample_depends_on_stream_positions_not_on_chunks(monkeypatch):
    monkeypatch.setattr(id_check, "CHECK_FIRST_CHARS", 50)
    texts = ["x" * 10] * 3_500

    def sampled(sizes, first_position=0):
        sampler, out, i = CheckSampler(first_position), [], 0
        for n in sizes:
            start, which = sampler.take(texts[i : i + n])
            out += [start + w for w in which]
            i += n
        return out

    want = [0, 1, 2, 3, 4, 1000, 2000, 3000]  # until 50 characters, then every 1,000th position
    assert sampled([3_500]) == sampled([7, 993, 1, 2_499]) == want
    assert sampled([1_500], first_position=1_998) == [1998, 1999, 2000, 2001, 2002, 3000]  # a resume checks again


def test_shards_are_byte_identical_whichever_encoder(tmp_path, tokenizer_dir):
    docs = hard_texts(seed=7, num_docs=200)
    path = tmp_path / "hard.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    cfg = write_dataset_config(
        tmp_path, "hard", source={"type": "local", "format": "json", "data_files": [str(path)]}, text_template="{text}"
    )
    for enc in ("hf", "gigatoken"):
        assert main(prepare_args(cfg, tokenizer_dir, tmp_path / enc, "--encoder", enc, "--workers", "2")) == 0
    assert tree_bytes(tmp_path / "hf") == tree_bytes(tmp_path / "gigatoken")


def _init_with_one_wrong_id(*args):
    """The real worker, whose fast encoder adds 1 to the 4th id of any document holding ``MARKER``."""
    encode._init_worker(*args)
    fast = encode._worker["encode"]

    def wrong(texts):
        ids, lens = fast(texts)
        ids, starts = ids.copy(), np.cumsum(lens) - lens
        for text, start in zip(texts, starts):
            if MARKER in text:
                ids[start + 3] += 1
        return ids, lens

    encode._worker["encode"] = wrong


def test_a_wrong_id_stops_prepare_with_one_line_and_keeps_complete_shards(tmp_path, tokenizer_dir, monkeypatch, capsys):
    # A corpus copy with the marker in its 601st document: ~12 shards of 5,000 tokens come before it.
    with open(tmp_path / "c.jsonl", "w") as out:
        for i, line in enumerate(gzip.open(CORPUS, "rt")):
            d = json.loads(line)
            out.write(json.dumps({**d, "text": d["text"] + (f" {MARKER}" if i == 600 else "")}) + "\n")
    source = {"type": "local", "format": "json", "data_files": [str(tmp_path / "c.jsonl")]}
    cfg = write_dataset_config(tmp_path, source=source, shard_tokens=5_000, batch_docs=16)
    monkeypatch.setattr(encode, "_init_worker", _init_with_one_wrong_id)
    assert main(prepare_args(cfg, tokenizer_dir, tmp_path / "out", "--encoder", "gigatoken")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    found = re.search(
        r"topics: gigatoken and HF tokenizers give different ids for document ([\d,]+) of the stream: "
        r"first at token 3 \(gigatoken id (\d+), HF id (\d+)\)",
        err,
    )
    assert found and int(found[2]) == int(found[3]) + 1, err
    out = tmp_path / "out" / "topics"
    shards = [s["path"] for split in json.loads((out / PROGRESS_NAME).read_text())["shards"].values() for s in split]
    assert len(shards) > 10  # the complete shards stay, the unfinished one is gone
    assert {p.name for p in out.iterdir()} == {PROGRESS_NAME, *shards, *(s.replace(".bin", ".idx") for s in shards)}

    # The same directory resumes with --encoder hf and ends equal to a clean run; the position named is the marker's.
    monkeypatch.undo()
    assert main(prepare_args(cfg, tokenizer_dir, tmp_path / "out", "--encoder", "hf")) == 0
    run_prepare(cfg, tokenizer_dir, tmp_path / "clean")
    assert tree_bytes(out) == tree_bytes(tmp_path / "clean" / "topics")
    ds, tok = open_prepared(out), load_tokenizer(tokenizer_dir).tokenizer
    stream = shard_docs(ds, "validation") + shard_docs(ds, "train")
    assert MARKER in tok.decode(stream[int(found[1].replace(",", ""))].tolist())


def test_without_gigatoken_hf_is_the_default_with_one_line_and_asking_for_it_is_refused(monkeypatch, caplog):
    import importlib.util

    from chinchilla_pipeline.errors import UserError
    from chinchilla_pipeline.tokenizer import encoders

    assert encoders.resolve_encoder(None) == "gigatoken"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "gigatoken" else real(name))
    with caplog.at_level("INFO", logger=encoders.__name__):
        assert encoders.resolve_encoder(None) == "hf"
    assert [r.getMessage() for r in caplog.records] == [
        "gigatoken is not installed: encoding with HF tokenizers (the same ids, 24-35x slower)"
    ]
    with pytest.raises(UserError, match="gigatoken is not installed"):
        encoders.resolve_encoder("gigatoken")
