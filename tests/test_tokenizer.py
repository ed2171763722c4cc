import gzip
import json
import shutil
from pathlib import Path

from chinchilla_pipeline.atomic import sha256_file
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from chinchilla_pipeline.tokenizer.token_bytes import token_byte_lengths
from chinchilla_pipeline.tokenizer.train import load_mix, mix_fingerprint, train_tokenizer
from conftest import CORPUS, TOKENIZER_SOURCE, write_dataset_config

# tokenizer.json and the mix fingerprint of the mix below, recorded with stream version 3 (row groups and files
# shuffled as units, sample_rate in the configs) and constraints/ci.txt's tokenizers: one part (the default)
# trains and fingerprints as --world_size 1 does.
ONE_PART_TOKENIZER_SHA256 = "4497599a9119680f3e796b18632bbd2ce049a57d3da538bc87d6f3609a2448ec"
ONE_PART_MIX_FINGERPRINT = "8c01736f1f681b0649f4d874d711eb29349e8999b2f119c4c74ce53f68d33758"


def test_report_round_trip_and_compression(tokenizer_dir):
    report = json.loads((tokenizer_dir / "tokenizer_report.json").read_text())
    src = report["sources"][TOKENIZER_SOURCE]
    assert report["round_trip_ok"] and src["round_trip_failures"] == 0
    assert src["num_heldout_docs"] == 20 and src["num_train_docs"] == 600
    # Byte-level BPE with 1,024 entries compresses English prose well beyond 1 byte per token.
    assert 2.0 < src["bytes_per_token"] < 6.0
    tok = load_tokenizer(tokenizer_dir)
    assert tok.vocab_size == 1024 and tok.tokenizer.id_to_token(tok.eot_id) == "<|endoftext|>"


def test_training_is_deterministic_and_weighted(tmp_path, tokenizer_dir):
    a = write_dataset_config(tmp_path, "a", validation_docs=20)
    b = write_dataset_config(tmp_path, "b", validation_docs=20, seed=7)
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps(
            {
                "vocab_size": 512,
                "max_samples": 300,
                "report_docs": 10,
                "sources": [{"config": str(a), "weight": 2}, {"config": str(b), "weight": 1}],
            }
        )
    )
    r1 = train_tokenizer(mix, tmp_path / "t1")
    r2 = train_tokenizer(mix, tmp_path / "t2")
    assert sha256_file(tmp_path / "t1/tokenizer.json") == sha256_file(tmp_path / "t2/tokenizer.json")
    assert r1["sources"]["a"]["num_train_docs"] == 200 and r1["sources"]["b"]["num_train_docs"] == 100
    assert r1["sources"] == r2["sources"]


def test_transformers_loads_the_saved_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tok = load_tokenizer(tokenizer_dir)
    text = "def f(x):\n    return x ** 2  # naïve"
    assert hf(text)["input_ids"] == tok.tokenizer.encode(text, add_special_tokens=False).ids
    assert hf.decode(hf(text)["input_ids"]) == text
    assert hf.eos_token == "<|endoftext|>"


def test_bytes_per_token_sum_to_the_utf8_bytes_of_the_text(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    table = token_byte_lengths(tok)
    assert table.shape == (tok.vocab_size,) and table[tok.eot_id] == 0 and table.min() == 0
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line, _ in zip(f, range(50))]
    # non-ASCII the corpus hardly holds: 2-, 3- and 4-byte characters, split across tokens by BPE
    texts += ["naïve café — 東京タワー 😀🚀\tend\r\n", "Ελληνικά и кириллица; Ünïcödé ∑∫≠ 𝔘𝔫𝔦"]
    for text in texts:
        ids = tok.tokenizer.encode(text, add_special_tokens=False).ids
        assert int(table[ids].sum()) == len(text.encode("utf-8")), text[:40]
    ids = tok.tokenizer.encode("<|endoftext|>a", add_special_tokens=False).ids  # the special token counts 0 bytes
    assert ids[0] == tok.eot_id and int(table[ids].sum()) == 1


def test_finished_tokenizer_of_another_mix_is_kept_and_refused_without_overwrite(tmp_path, tokenizer_dir):
    import shutil

    import pytest

    from chinchilla_pipeline.errors import UserError

    out = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, out)
    before = sha256_file(out / "tokenizer.json")
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 300, "max_samples": 50, "sources": [{"config": str(write_dataset_config(tmp_path))}]})
    )
    with pytest.raises(UserError, match="trained on a different mix"):
        train_tokenizer(mix, out)
    assert sha256_file(out / "tokenizer.json") == before
    train_tokenizer(mix, out, overwrite=True)
    assert load_tokenizer(out).vocab_size == 300


def test_a_tokenizer_that_read_another_stream_version_is_refused_without_overwrite(tmp_path, tokenizer_dir):
    """The same mix read as another stream (other documents, another validation split) is not reused: prepare
    would refuse every dataset of it later. A report from before the field existed is reused as it was."""
    import shutil

    import pytest

    from chinchilla_pipeline.data.sources import STREAM_VERSION
    from chinchilla_pipeline.errors import UserError
    from chinchilla_pipeline.tokenizer.report import REPORT_FILE

    out = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_dir, out)
    mix = tokenizer_dir.parent / "mix.json"
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["stream_version"] == STREAM_VERSION
    (out / REPORT_FILE).write_text(json.dumps({**report, "stream_version": STREAM_VERSION - 1}))
    with pytest.raises(UserError, match=f"stream version {STREAM_VERSION - 1}, this pipeline reads version"):
        train_tokenizer(mix, out)
    del report["stream_version"]
    (out / REPORT_FILE).write_text(json.dumps(report))
    train_tokenizer(mix, out)
    assert "stream_version" not in json.loads((out / REPORT_FILE).read_text())  # reused, not retrained


def test_a_directory_holding_other_files_is_refused_and_kept(tmp_path):
    import pytest

    from chinchilla_pipeline.errors import UserError

    out = tmp_path / "data"
    (out / "prepared").mkdir(parents=True)
    (out / "prepared" / "manifest.json").write_text("{}")
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"vocab_size": 300, "max_samples": 50, "sources": [{"config": str(write_dataset_config(tmp_path))}]})
    )
    with pytest.raises(UserError, match="other files"):
        train_tokenizer(mix, out, overwrite=True)
    assert (out / "prepared" / "manifest.json").read_text() == "{}"


def test_one_part_tokenizer_is_the_one_trained_before_world_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: the fingerprint holds the configs' paths
    rows = [json.loads(line) for line in gzip.open(CORPUS, "rt")]
    shutil.copy(CORPUS, "corpus.jsonl.gz")
    for i in range(4):
        Path(f"f{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[i::4]))
    base = {"text_template": "{title}\n\n{text}", "shuffle_buffer": 200, "shard_tokens": 10_000}
    local = {"type": "local", "format": "json"}
    Path("topics.json").write_text(
        json.dumps(
            {"name": "topics", "source": {**local, "data_files": ["corpus.jsonl.gz"]}, "validation_docs": 20, **base}
        )
    )
    files = [f"f{i}.jsonl" for i in range(4)]
    Path("split.json").write_text(
        json.dumps(
            {"name": "split", "source": {**local, "data_files": files}, "validation_docs": 40, "seed": 7, **base}
        )
    )
    Path("mix.json").write_text(
        json.dumps(
            {
                "vocab_size": 500,
                "max_samples": 400,
                "report_docs": 5,
                "sources": [{"config": "topics.json"}, {"config": "split.json"}],
            }
        )
    )
    mix, configs = load_mix("mix.json")
    assert mix_fingerprint(mix, configs) == mix_fingerprint(mix, configs, 1) == ONE_PART_MIX_FINGERPRINT
    assert mix_fingerprint(mix, configs, 2) != ONE_PART_MIX_FINGERPRINT
    report = train_tokenizer("mix.json", "tok")
    assert sha256_file(Path("tok/tokenizer.json")) == ONE_PART_TOKENIZER_SHA256
    assert report["mix_fingerprint"] == ONE_PART_MIX_FINGERPRINT and report["held_out_world_size"] == 1
    assert "part_validation_sha256" not in report["sources"]["split"]
    assert train_tokenizer("mix.json", "tok1", world_size=1)["sha256"] == ONE_PART_TOKENIZER_SHA256
    # the same mix held out for 2 parts is another tokenizer: refused in the one-part directory
    import pytest

    from chinchilla_pipeline.errors import UserError

    with pytest.raises(UserError, match="trained on this mix with --world_size 1, not 2; pass --overwrite"):
        train_tokenizer("mix.json", "tok", world_size=2)


def _tokenizer_train(tmp_path, mix: dict) -> tuple[int, str, Path]:
    """``chinchilla tokenizer-train`` on ``mix`` in a fresh process: the exit code, the one error line on stderr
    (its progress and log lines aside), the output directory."""
    import subprocess

    from conftest import CLI, CLI_ENV

    path = tmp_path / "mix.json"
    path.write_text(json.dumps(mix))
    out = tmp_path / "tok"
    args = ["tokenizer-train", "--config_path", str(path), "--out_dir", str(out)]
    done = subprocess.run([*CLI, *args], env=CLI_ENV, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in done.stderr, done.stderr
    return done.returncode, errors[0].removeprefix("error: "), out


def assert_nothing_finished(out: Path) -> None:
    """No tokenizer there, nor a temporary one beside it."""
    assert not (out / "tokenizer.json").exists() and not (out / "tokenizer_report.json").exists()
    assert not list(out.parent.glob(f".{out.name}.tmp.*"))


def test_a_source_without_training_documents_is_refused_before_the_others_are_read(tmp_path):
    """Its validation split takes all 789 documents: the trainer would get none of it (and wrote 257 entries)."""
    topics = write_dataset_config(tmp_path)
    empty = write_dataset_config(tmp_path, name="all_validation", validation_docs=5_000)
    mix = {"vocab_size": 300, "max_samples": 40, "sources": [{"config": str(empty)}, {"config": str(topics)}]}
    code, line, out = _tokenizer_train(tmp_path, mix)
    assert code == 2 and line.startswith(f"{empty}: all_validation: no training document for the tokenizer (asked 20; ")
    assert "validation_docs 5,000, took 789 documents and none came after them" in line and "300-entry" in line
    assert_nothing_finished(out)


def test_a_mix_whose_text_cannot_reach_the_vocabulary_is_refused_and_writes_nothing(tmp_path):
    topics = write_dataset_config(tmp_path)
    mix = {"vocab_size": 20_000, "max_samples": 3, "sources": [{"config": str(topics)}]}
    code, line, out = _tokenizer_train(tmp_path, mix)
    assert (
        code == 2
        and line.startswith(f"{tmp_path / 'mix.json'}: the mix's text trains ")
        and " of the 20,000 vocabulary " in line
    )
    assert "from topics: 3 documents, " in line and " characters: give it more text" in line and "--vocab_size" in line
    produced = int(line.split("trains ")[1].split(" of")[0].replace(",", ""))
    assert 257 < produced < 20_000
    assert_nothing_finished(out)
