"""Held-out text is held out: the tokenizer never reads validation text, validation documents are unique and
absent from train, and a finished output is reused only for the config that made it.

The test corpus read by its ``text`` field alone has real exact duplicates: help topics that share a body
under different titles (98 of 789).
"""

import gzip
import json
import shutil

import numpy as np
import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data.config import DatasetConfig
from chinchilla_pipeline.data.manifest import write_token_dataset
from chinchilla_pipeline.data.merge import merge_parts
from chinchilla_pipeline.data.prepare import prepare_dataset
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.data.sources import iter_documents
from chinchilla_pipeline.data.verify import verify_dataset
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from chinchilla_pipeline.tokenizer.report import format_report
from chinchilla_pipeline.tokenizer.token_bytes import token_byte_lengths
from chinchilla_pipeline.tokenizer.train import train_tokenizer
from conftest import CORPUS, TOKENIZER_SOURCE, prepare_args, write_dataset_config


def run_prepare(cfg_path, tok, out, **kw):
    return prepare_dataset(load_config(DatasetConfig, cfg_path), cfg_path, tok, out, progress=False, **kw)


def stream(cfg_path):
    cfg = load_config(DatasetConfig, cfg_path)
    return [d for batch in iter_documents(cfg, cfg_path) for d in batch]


def expected_splits(texts, validation_docs):
    """Plain-Python reading of the rule: the first unique documents are validation, then train less copies."""
    val, dup_val, train, dup_train = [], 0, [], 0
    for t in texts:
        if len(val) < validation_docs:
            if t in val:
                dup_val += 1
            else:
                val.append(t)
        elif t in val:
            dup_train += 1
        else:
            train.append(t)
    return val, train, dup_val, dup_train


def decoded(ds, split, tok):
    return [
        tok.decode(s.tokens[a + 1 : b].tolist())
        for s in ds.shards(split)
        for a, b in zip(s.doc_starts[:-1], s.doc_starts[1:])
    ]


def test_duplicates_of_validation_are_dropped_and_counted(tmp_path, tokenizer_dir):
    cfg = write_dataset_config(
        tmp_path, "bodies", text_template=None, text_field="text", validation_docs=89, shuffle_buffer=10_000
    )
    texts = stream(cfg)
    val, train, dup_val, dup_train = expected_splits(texts, 89)
    assert dup_val > 0 and dup_train > 0  # the corpus really holds duplicates on both sides
    m = run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    h = m["hygiene"]
    assert (h["dropped_duplicate_in_validation"], h["dropped_duplicate_of_validation"]) == (dup_val, dup_train)
    assert m["input"]["rows_read"] == m["num_docs_read"] == 789
    assert m["splits"]["validation"]["num_docs"] + m["splits"]["train"]["num_docs"] == 789 - dup_val - dup_train
    ds = open_prepared(tmp_path / "out/bodies")
    tok = load_tokenizer(tokenizer_dir).tokenizer
    assert decoded(ds, "validation", tok) == val and decoded(ds, "train", tok) == train
    assert verify_dataset(ds.path) == []


def test_verify_finds_a_validation_document_in_train(tmp_path, tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    docs = [[tok.eot_id] + tok.tokenizer.encode(t).ids for t in ("alpha beta", "gamma delta", "epsilon")]
    arrays = [np.array(d, dtype=np.uint16) for d in docs]
    write_token_dataset(
        tmp_path,
        "planted",
        {"validation": arrays[:2], "train": [arrays[2], arrays[1]]},
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        token_bytes=token_byte_lengths(tok),
    )
    assert verify_dataset(tmp_path / "planted") == ["train: 1 documents equal a validation document"]


def _canary_corpus(tmp_path, canaries_first: bool):
    """Five documents repeating a made-up word, before (or after) the real help topics."""
    rows = [json.loads(line) for line in gzip.open(CORPUS, "rt")]
    canaries = [{"title": f"c{i}", "text": "qjxvw " * 300} for i in range(5)]
    path = tmp_path / f"canary_{canaries_first}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (canaries + rows if canaries_first else rows + canaries)))
    return path


@pytest.mark.parametrize("held_out", [True, False])
def test_the_tokenizer_never_trains_on_validation_text(tmp_path, held_out):
    # shuffle_buffer 0 keeps the file order: the canaries are the validation split, or the last training documents.
    data = _canary_corpus(tmp_path, canaries_first=held_out)
    cfg = write_dataset_config(
        tmp_path,
        "canary",
        source={"type": "local", "format": "json", "data_files": [str(data)]},
        shuffle_buffer=0,
        validation_docs=5,
    )
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 600, "max_samples": 5000, "report_docs": 3, "sources": [{"config": str(cfg)}]})
    )
    report = train_tokenizer(mix, tmp_path / "tok")
    vocab = load_tokenizer(tmp_path / "tok").tokenizer.get_vocab()
    learnt = any("qjxv" in token for token in vocab)
    assert learnt is not held_out  # the control (canaries in train) shows the word is learnt when seen
    src = report["sources"]["canary"]
    assert src["num_heldout_docs"] == 3 and src["validation_docs"] == 5
    m = run_prepare(cfg, tmp_path / "tok", tmp_path / "out")
    assert src["num_train_docs"] == m["splits"]["train"]["num_docs"]  # exactly prepare's training documents
    assert src["validation_sha256"] == m["hygiene"]["validation_sha256"]
    assert verify_dataset(tmp_path / "out/canary", tmp_path / "tok") == []


def test_a_changed_mix_is_refused_and_the_same_mix_reused(tmp_path, tokenizer_dir):
    out = tmp_path / "tok"
    cfg = write_dataset_config(tmp_path, validation_docs=20)
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"vocab_size": 300, "max_samples": 50, "sources": [{"config": str(cfg)}]}))
    train_tokenizer(mix, out)
    before = (out / "tokenizer.json").read_bytes()
    train_tokenizer(mix, out)  # same mix: kept
    assert (out / "tokenizer.json").read_bytes() == before
    write_dataset_config(tmp_path, validation_docs=30)  # a source's config changed: another mix
    with pytest.raises(UserError, match=f"the tokenizer in {out} was trained on a different mix; pass --overwrite"):
        train_tokenizer(mix, out)
    assert (out / "tokenizer.json").read_bytes() == before
    assert train_tokenizer(mix, out, overwrite=True)["sources"]["topics"]["validation_docs"] == 30


def test_a_finished_dataset_is_refused_for_a_changed_config_or_tokenizer(tmp_path, tokenizer_dir):
    cfg = write_dataset_config(tmp_path, max_samples=40)
    run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    manifest = (tmp_path / "out/topics/manifest.json").read_bytes()
    write_dataset_config(tmp_path, max_samples=40, validation_docs=21)
    with pytest.raises(UserError, match="another config, tokenizer or pipeline version; pass --overwrite"):
        run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    write_dataset_config(tmp_path, max_samples=40)
    mix = tmp_path / "mix.json"  # the mix changed, the tokenizer retrained: the shards are stale
    mix.write_text(json.dumps({"vocab_size": 300, "max_samples": 50, "sources": [{"config": str(cfg)}]}))
    other_tok = tmp_path / "tok"
    train_tokenizer(mix, other_tok)
    with pytest.raises(UserError, match="another config, tokenizer or pipeline version"):
        run_prepare(cfg, other_tok, tmp_path / "out")
    assert (tmp_path / "out/topics/manifest.json").read_bytes() == manifest


def _four_files(directory, name="split", **fields):
    """The test corpus dealt into 4 files (2 parts get whole files, as with most Hub datasets) and its config."""
    rows = [json.loads(line) for line in gzip.open(CORPUS, "rt")]
    files = []
    for i in range(4):
        files.append(directory / f"{name}_{i}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows[i::4]))
    source = {"type": "local", "format": "json", "data_files": [str(f) for f in files]}
    return write_dataset_config(directory, name, source=source, validation_docs=40, **fields)


@pytest.fixture(scope="module")
def held_out_for_two_parts(tmp_path_factory):
    """A tokenizer trained with world_size 2 on the 4-file split (validation_docs 40: 20 per part), and the
    text it trained on (recorded where the trainer reads its corpus)."""
    from chinchilla_pipeline.tokenizer import train

    d = tmp_path_factory.mktemp("two_parts")
    cfg = _four_files(d)
    mix = d / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 400, "max_samples": 5000, "report_docs": 25, "sources": [{"config": str(cfg)}]})
    )
    trained: list[str] = []
    progress = train.tqdm

    def recording(docs, **kw):
        return progress((trained.append(doc) or doc for doc in docs), **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "tqdm", recording)
        report = train_tokenizer(mix, d / "tok", world_size=2)
    return cfg, d / "tok", report, set(trained)


def test_no_part_validation_document_reaches_the_tokenizer(tmp_path, held_out_for_two_parts):
    # Before --world_size, 17 and 19 of the parts' 20 validation documents were in the tokenizer's training text.
    cfg, tok_dir, report, trained = held_out_for_two_parts
    src = report["sources"]["split"]
    tok = load_tokenizer(tok_dir).tokenizer
    assert report["held_out_world_size"] == 2 and src["part_validation_docs"] == [20, 20]
    assert src["skipped_part_validation_docs"] > 0  # the one-part stream's training documents held some
    assert len(trained) == src["num_train_docs"] > 600
    assert "held out: the validation splits of 1 part and of 2 parts" in format_report(report)
    held = []
    for rank in range(2):
        m = run_prepare(cfg, tok_dir, tmp_path / "two", rank=rank, world_size=2)
        val = decoded(open_prepared(tmp_path / f"two/split/part_{rank:05d}_of_00002"), "validation", tok)
        assert len(val) == 20 and sum(doc in trained for doc in val) == 0, f"part {rank}'s validation trained on"
        assert m["hygiene"]["validation_sha256"] == src["part_validation_sha256"][rank]
        held += val
    # the report measures the parts' validation documents, part 0's first
    assert src["num_heldout_docs"] == 25 and src["num_heldout_bytes"] == sum(len(d.encode()) for d in held[:25])
    merge_parts(tmp_path / "two", "split", 2)
    assert verify_dataset(tmp_path / "two/split", tok_dir) == []
    # the one-part validation split stays held out: the same tokenizer serves the dataset prepared in one part
    run_prepare(cfg, tok_dir, tmp_path / "one")
    assert sum(doc in trained for doc in decoded(open_prepared(tmp_path / "one/split"), "validation", tok)) == 0
    assert verify_dataset(tmp_path / "one/split", tok_dir) == []


def test_prepare_refuses_a_tokenizer_held_out_for_another_number_of_parts(
    tmp_path, tokenizer_dir, held_out_for_two_parts, capsys, monkeypatch
):
    cfg = write_dataset_config(tmp_path, TOKENIZER_SOURCE, validation_docs=20)  # read by the session tokenizer
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # the world size prepare reads from a Slurm array
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    capsys.readouterr()
    assert main(prepare_args(cfg, tokenizer_dir, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(
        f"error: {tokenizer_dir}: the tokenizer held out the validation split of {TOKENIZER_SOURCE} for"
    )
    assert "--world_size 1, not for this prepare's --world_size 2" in err
    assert "retrain it with `chinchilla tokenizer-train --world_size 2 --overwrite`" in err
    assert not (tmp_path / "out").exists()
    split_cfg, tok_dir = held_out_for_two_parts[:2]
    with pytest.raises(UserError, match="for --world_size 1 and 2, not for this prepare's --world_size 4"):
        run_prepare(split_cfg, tok_dir, tmp_path / "out", rank=0, world_size=4)
    assert not (tmp_path / "out").exists()
    other = write_dataset_config(tmp_path, "unread")  # a dataset the tokenizer did not read: no refusal
    assert main(prepare_args(other, tokenizer_dir, tmp_path / "out", "--workers", "1")) == 0


def test_verify_finds_parts_whose_validation_the_tokenizer_did_not_hold_out(tmp_path, held_out_for_two_parts):
    cfg, tok_dir, _, _ = held_out_for_two_parts
    data = json.loads(cfg.read_text())
    other = tmp_path / "split.json"  # the same dataset name, shuffled with another seed: other validation splits
    other.write_text(json.dumps({**data, "seed": 7}))
    # prepare refuses that tokenizer too (check_tokenizer_held_out): prepare with a copy whose report does not
    # name the dataset (the same tokenizer.json), to see what verify finds in such a dataset
    unnamed = tmp_path / "tok_unnamed"
    shutil.copytree(tok_dir, unnamed)
    report = json.loads((unnamed / "tokenizer_report.json").read_text())
    del report["sources"]["split"]
    (unnamed / "tokenizer_report.json").write_text(json.dumps(report))
    for rank in range(2):
        run_prepare(other, unnamed, tmp_path / "out", rank=rank, world_size=2)
    merge_parts(tmp_path / "out", "split", 2)
    problems = verify_dataset(tmp_path / "out/split", tok_dir)
    assert len(problems) == 2 and all("it may have trained on this validation text" in p for p in problems)
    assert problems[1].startswith("part_00001_of_00002/the tokenizer held out another validation split of part 1")
    assert len(verify_dataset(tmp_path / "out/split/part_00000_of_00002", tok_dir)) == 1  # one part alone
    # a tokenizer that held out the one-part split only (a report without held_out_world_size)
    old = tmp_path / "tok_one_part"
    shutil.copytree(tok_dir, old)
    report = json.loads((old / "tokenizer_report.json").read_text())
    del report["held_out_world_size"], report["sources"]["split"]["part_validation_sha256"]
    (old / "tokenizer_report.json").write_text(json.dumps(report))
    assert verify_dataset(tmp_path / "out/split", old) == [
        "the tokenizer held out the validation split of split for --world_size 1, not for this dataset's 2 parts: "
        "it may have trained on their validation text (tokenizer-train --world_size 2)"
    ]


def test_prepare_refuses_a_tokenizer_whose_source_changed_since(tmp_path, capsys):
    """A file added to the glob changes the stream and its validation split: a tokenizer trained before it may
    have trained on the new split, so prepare refuses it (before it commits any shard) until it is retrained."""
    lines = gzip.decompress(CORPUS.read_bytes()).decode().splitlines(keepends=True)
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a.jsonl").write_text("".join(lines[:400]))
    src = {"type": "local", "format": "json", "data_files": [str(tmp_path / "d/*.jsonl")]}
    cfg = write_dataset_config(tmp_path, "grows", source=src, validation_docs=20)
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"vocab_size": 300, "max_samples": 200, "sources": [{"config": str(cfg)}]}))
    train_tokenizer(mix, tmp_path / "tok")
    (tmp_path / "d/b.jsonl").write_text("".join(lines[400:]))  # the source grows after the tokenizer
    capsys.readouterr()
    assert main(prepare_args(cfg, tmp_path / "tok", tmp_path / "out", "--workers", "1", "--quiet")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the tokenizer held out another validation split of grows than this prepare" in err
    assert not (tmp_path / "out/grows/manifest.json").exists() and not (tmp_path / "out/grows/.progress.json").exists()
    assert not list((tmp_path / "out/grows").glob("*.bin"))  # the validation shard it began is removed
    train_tokenizer(mix, tmp_path / "tok", overwrite=True)
    assert main(prepare_args(cfg, tmp_path / "tok", tmp_path / "out", "--workers", "1")) == 0
