"""The BPE trainers (tokenizer/trainers.py), tokenizer-train --trainer and bench-tokenizer-train."""

import gzip
import json

import pytest

from chinchilla_pipeline.atomic import sha256_file
from chinchilla_pipeline.cli import main
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.instruments.bench import tokenizer_train as bench_train
from chinchilla_pipeline.tokenizer import train
from chinchilla_pipeline.tokenizer.trainers import (
    from_merges,
    hf_bpe,
    hf_merges,
    rustbpe_merges,
    train_gigatoken,
    train_merges,
)
from chinchilla_pipeline.tokenizer.unicode_gap import gap_documents
from conftest import CORPUS, write_dataset_config
from hardtext import hard_texts

EOT = "<|endoftext|>"


def _corpus(n: int = 300) -> list[str]:
    with gzip.open(CORPUS, "rt") as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(n))]


def test_from_merges_writes_the_file_tokenizers_trains():
    tok, trainer = hf_bpe(600, 2, EOT)
    texts = _corpus()
    tok.train_from_iterator(texts, trainer=trainer)
    assert from_merges(hf_merges(tok), EOT).to_str() == tok.to_str()


def test_gigatoken_trains_the_merges_of_tokenizers_on_hard_text():
    # whitespace runs, control bytes (0x00 included), digits, scripts, emoji, the end-of-text string in the text;
    # not the Unicode gap, which train_gigatoken leaves to tokenizers (below)
    docs = hard_texts(0, 300)[:300]
    gap = set(gap_documents(docs))
    texts = [d for i, d in enumerate(docs) if i not in gap] + _corpus(100)
    for vocab_size in (400, 1000):
        assert (
            train_merges("gigatoken", texts, vocab_size, 2, EOT)[0]
            == train_merges("tokenizers", texts, vocab_size, 2, EOT)[0]
        )


@pytest.mark.parametrize("min_frequency", [0, 1, 2, 3])
def test_gigatoken_stops_where_min_frequency_stops_tokenizers(min_frequency):
    texts = ["the cat sat on the mat", "a dog ran far away quickly", "zebra"]  # few pairs: BpeTrainer stops early
    hf = train_merges("tokenizers", texts, 400, min_frequency, EOT)[0]
    assert len(hf) < 400 - 257
    assert train_merges("gigatoken", texts, 400, min_frequency, EOT)[0] == hf


def test_a_gap_code_point_trains_with_tokenizers():
    texts = _corpus(50) + [chr(0x323B0) + "'t and more " * 20]
    tok, used = train_gigatoken(texts, 400, 2, EOT)
    assert used == "tokenizers"
    assert hf_merges(tok) == train_merges("tokenizers", texts, 400, 2, EOT)[0]
    assert train_gigatoken(_corpus(50), 400, 2, EOT)[1] == "gigatoken"


def test_tokenizer_train_writes_the_same_file_with_either_trainer(tmp_path, capsys):
    cfg = write_dataset_config(tmp_path, "topics", validation_docs=20)
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 700, "max_samples": 300, "report_docs": 5, "sources": [{"config": str(cfg)}]})
    )
    giga = train.train_tokenizer(mix, tmp_path / "giga")
    assert giga["trainer"] == "gigatoken"  # the default with gigatoken installed
    base = ["tokenizer-train", "--config_path", str(mix), "--trainer", "tokenizers"]
    assert main([*base, "--out_dir", str(tmp_path / "hf")]) == 0
    hf = json.loads((tmp_path / "hf" / "tokenizer_report.json").read_text())
    assert hf["trainer"] == "tokenizers"
    names = sorted(p.name for p in (tmp_path / "giga").iterdir() if p.name != "tokenizer_report.json")
    assert "tokenizer.json" in names and names == sorted(
        p.name for p in (tmp_path / "hf").iterdir() if p.name != "tokenizer_report.json"
    )
    for name in names:
        assert sha256_file(tmp_path / "giga" / name) == sha256_file(tmp_path / "hf" / name)
    assert giga["sources"] == hf["sources"]


def test_resolve_trainer(monkeypatch):
    assert train.resolve_trainer("tokenizers") == "tokenizers"
    with pytest.raises(UserError, match="expected one of gigatoken, tokenizers"):
        train.resolve_trainer("rustbpe")
    monkeypatch.setattr(
        train, "trainer_missing", lambda name: "gigatoken is not installed" if name == "gigatoken" else None
    )
    assert train.resolve_trainer(None) == "tokenizers"
    with pytest.raises(UserError, match="or use --trainer tokenizers"):
        train.resolve_trainer("gigatoken")


def test_rustbpe_merges_encode_as_rustbpe_does():
    rustbpe = pytest.importorskip("rustbpe")
    from chinchilla_pipeline.tokenizer.trainers import GPT2_PATTERN, byte_symbols

    texts = _corpus()
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), 600, pattern=GPT2_PATTERN)
    hf = from_merges(rustbpe_merges(tok.get_mergeable_ranks()), EOT)
    ranks = {r: bytes(t) for t, r in tok.get_mergeable_ranks()}
    for doc in _corpus(400)[300:]:
        mine = ["".join(byte_symbols()[b] for b in ranks[i]) for i in tok.encode(doc)]
        assert mine == hf.encode(doc, add_special_tokens=False).tokens


def test_bench_tokenizer_train_measures_and_names_a_missing_trainer(tmp_path, monkeypatch, capsys):
    cfg = write_dataset_config(tmp_path, "topics", validation_docs=20)
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 400, "max_samples": 200, "report_docs": 5, "sources": [{"config": str(cfg)}]})
    )
    missing = "rustbpe is not installed (pip install rustbpe, or pip install -e '.[bench]')"
    monkeypatch.setattr(bench_train, "trainer_missing", lambda name: missing if name == "rustbpe" else None)
    out = tmp_path / "bench.json"
    argv = ["bench-tokenizer-train", "--config_path", str(mix), "--rounds", "1", "--out_path", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"rustbpe       {missing}" in printed and "bytes per token" in printed
    report = json.loads(out.read_text())
    assert report["num_train_docs"] == 200 and report["num_heldout_docs"] == {"topics": 5}
    giga, hf = report["trainers"]["gigatoken"], report["trainers"]["tokenizers"]
    assert hf["file_equal_to_trained"] and giga["same_merges"] and giga["gigatoken_differ_docs"] == 0
    assert giga["bytes_per_token"] == hf["bytes_per_token"] and giga["no_worse_everywhere"]
    assert giga["num_merges"] == 400 - 257 and giga["cpu_s"] > 0 and giga["peak_rss_mib"] > 0
