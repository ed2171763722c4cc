"""prepare: exact sizes, determinism, resume after kill -9, ranks, round trip, formats."""

import gzip
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from chinchilla_pipeline.data.config import DatasetConfig
from chinchilla_pipeline.data.merge import merge_parts
from chinchilla_pipeline.data.prepare import prepare_dataset
from chinchilla_pipeline.data.reader import open_prepared
from chinchilla_pipeline.data.sources import iter_documents
from chinchilla_pipeline.data.verify import verify_dataset
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from chinchilla_pipeline.tokenizer.token_bytes import token_byte_lengths
from conftest import CLI, CLI_ENV, CORPUS, prepare_args, write_dataset_config


def run_prepare(cfg_path, tok, out, **kw):
    return prepare_dataset(load_config(DatasetConfig, cfg_path), cfg_path, tok, out, progress=False, **kw)


def all_docs(cfg_path):
    cfg = load_config(DatasetConfig, cfg_path)
    return [d for batch in iter_documents(cfg, cfg_path) for d in batch]


def shard_docs(ds, split):
    out = []
    for s in ds.shards(split):
        out += [s.tokens[a:b] for a, b in zip(s.doc_starts[:-1], s.doc_starts[1:])]
    return out


def tree_bytes(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_max_samples_is_exact_and_round_trips(tmp_path, tokenizer_dir):
    cfg = write_dataset_config(tmp_path, max_samples=123)
    m = run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    assert m["splits"]["train"]["num_docs"] == 123 and m["splits"]["validation"]["num_docs"] == 20
    assert m["stop_reason"] == "max_samples"
    assert len(m["splits"]["train"]["shards"]) > 1  # 10k-token shards
    ds = open_prepared(tmp_path / "out" / "topics")
    tok = load_tokenizer(tokenizer_dir).tokenizer
    texts = all_docs(cfg)
    decoded = [tok.decode(d[1:].tolist()) for d in shard_docs(ds, "validation") + shard_docs(ds, "train")]
    assert decoded == texts[: 20 + 123]  # text -> shards -> text, in stream order
    assert verify_dataset(ds.path, tokenizer_dir) == []


def test_max_tokens_never_exceeded_and_short_by_less_than_a_document(tmp_path, tokenizer_dir):
    full = run_prepare(write_dataset_config(tmp_path, "full"), tokenizer_dir, tmp_path / "out")
    ds_full = open_prepared(tmp_path / "out/full")
    doc_lens = [d.size for d in shard_docs(ds_full, "train")]
    cap = 20_000
    m = run_prepare(write_dataset_config(tmp_path, "capped", max_tokens=cap), tokenizer_dir, tmp_path / "out")
    n_docs, n_tok = m["splits"]["train"]["num_docs"], m["splits"]["train"]["num_tokens"]
    assert m["stop_reason"] == "max_tokens"
    assert n_tok <= cap and n_tok == sum(doc_lens[:n_docs])
    assert cap - n_tok < doc_lens[n_docs]  # the next document did not fit
    assert full["stop_reason"] == "source_exhausted"


def test_small_source_gives_every_document_with_a_warning(tmp_path, tokenizer_dir, caplog):
    m = run_prepare(write_dataset_config(tmp_path, max_samples=10_000), tokenizer_dir, tmp_path / "out")
    assert m["stop_reason"] == "source_exhausted"
    assert m["splits"]["train"]["num_docs"] + 20 == len(all_docs(write_dataset_config(tmp_path, "same")))
    assert "only" in caplog.text and "max_samples 10000" in caplog.text


def test_target_and_caps_in_manifest(tmp_path, tokenizer_dir):
    m = run_prepare(
        write_dataset_config(tmp_path, max_samples=50, _target_tokens="10K"), tokenizer_dir, tmp_path / "out"
    )
    n = m["splits"]["train"]["num_tokens"]
    assert m["target_tokens"] == 10_000 and m["target_delta_tokens"] == n - 10_000
    assert m["caps"]["max_samples"] == 50 and m["config"]["max_samples"] == 50


def test_identical_bytes_whatever_the_worker_count(tmp_path, tokenizer_dir):
    # Batches of 16 documents: 3 workers hold many batches in flight, finishing out of order.
    cfg = write_dataset_config(tmp_path, max_samples=300, batch_docs=16, shard_tokens=5_000)
    for workers in (1, 3):
        args = prepare_args(cfg, tokenizer_dir, tmp_path / f"w{workers}", "--workers", str(workers))
        subprocess.run([*CLI, *args], env=CLI_ENV, check=True, capture_output=True)
    assert tree_bytes(tmp_path / "w1") == tree_bytes(tmp_path / "w3")


def _alive(pid: str) -> bool:
    try:  # a zombie (state Z) has exited; only its parent's reaping is left
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone(pids: list[str], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_kill_9_then_resume_is_byte_identical(tmp_path, tokenizer_dir):
    # 12 copies of the corpus, small shards and batches: many commits to interrupt between.
    cfg = write_dataset_config(
        tmp_path,
        source={"type": "local", "format": "json", "data_files": [str(CORPUS)] * 12},
        shard_tokens=20_000,
        batch_docs=64,
    )
    subprocess.run(
        [*CLI, *prepare_args(cfg, tokenizer_dir, tmp_path / "ref", "--workers", "2")],
        env=CLI_ENV,
        check=True,
        capture_output=True,
    )
    cmd = [*CLI, *prepare_args(cfg, tokenizer_dir, tmp_path / "killed", "--workers", "2")]
    out = tmp_path / "killed" / "topics"
    for target in ("train_00003.bin", "train_00020.bin"):  # kill twice, mid-run
        p = subprocess.Popen(cmd, env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (out / target).exists() and p.poll() is None:
            time.sleep(0.01)
        workers = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert not (out / "manifest.json").exists()
        assert workers and _gone(workers, within_s=5), "tokenizer workers outlived their killed parent"
    subprocess.run(cmd, env=CLI_ENV, check=True, capture_output=True)
    assert tree_bytes(tmp_path / "ref") == tree_bytes(tmp_path / "killed")
    # 12 copies: the 11 other copies of each of the 20 validation documents are dropped (later in the validation
    # window or in train), also after the resumes, which rebuilt the validation hashes by re-reading the stream.
    h = json.loads((out / "manifest.json").read_text())["hygiene"]
    assert h["dropped_duplicate_of_validation"] > 0
    assert h["dropped_duplicate_in_validation"] + h["dropped_duplicate_of_validation"] == 11 * 20


def test_finished_dataset_is_skipped_and_other_config_refused(tmp_path, tokenizer_dir):
    cfg = write_dataset_config(tmp_path, max_samples=40)
    run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    mtime = (tmp_path / "out/topics/manifest.json").stat().st_mtime_ns
    run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    assert (tmp_path / "out/topics/manifest.json").stat().st_mtime_ns == mtime
    other = write_dataset_config(tmp_path, max_samples=41)
    from chinchilla_pipeline.errors import UserError

    with pytest.raises(UserError, match="--overwrite"):
        run_prepare(other, tokenizer_dir, tmp_path / "out")
    m = run_prepare(other, tokenizer_dir, tmp_path / "out", overwrite=True)
    assert m["splits"]["train"]["num_docs"] == 41


# The session tokenizer read "topics" holding out its one-part validation split only: prepare refuses it for
# "topics" in 2 parts (test_hygiene.py). The tests of parts below prepare the same corpus under another name.


def test_ranks_are_disjoint_and_merge_covers_the_single_run(tmp_path, tokenizer_dir):
    cfg = write_dataset_config(tmp_path, "parts")
    single = run_prepare(cfg, tokenizer_dir, tmp_path / "one")
    for rank in range(2):
        run_prepare(cfg, tokenizer_dir, tmp_path / "two", rank=rank, world_size=2)
    merged = merge_parts(tmp_path / "two", "parts", 2)
    assert (
        merged["splits"]["train"]["num_tokens"] + merged["splits"]["validation"]["num_tokens"]
        == single["splits"]["train"]["num_tokens"] + single["splits"]["validation"]["num_tokens"]
    )
    assert merged["caps"]["validation_docs"] == 20 and verify_dataset(tmp_path / "two/parts", tokenizer_dir) == []
    assert np.array_equal(
        open_prepared(tmp_path / "two/parts").token_bytes(), open_prepared(tmp_path / "one/parts").token_bytes()
    )
    assert merged["input"] == single["input"] and single["input"]["rows_read"] == 789
    one = open_prepared(tmp_path / "one/parts")
    ref = [d.tobytes() for s in ("train", "validation") for d in shard_docs(one, s)]
    assert len(set(ref)) == len(ref) == 789  # every document of the corpus, each once
    parts = [open_prepared(tmp_path / f"two/parts/part_{r:05d}_of_00002") for r in range(2)]
    a, b = ({d.tobytes() for s in ("train", "validation") for d in shard_docs(p, s)} for p in parts)
    assert not a & b and a | b == set(ref)


def test_merge_needs_two_parts_of_the_config_given(tmp_path, tokenizer_dir):
    from chinchilla_pipeline.errors import UserError

    cfg = write_dataset_config(tmp_path, "parts", max_samples=40)
    for rank in range(2):
        run_prepare(cfg, tokenizer_dir, tmp_path / "two", rank=rank, world_size=2)
    with pytest.raises(UserError, match="at least 2"):
        merge_parts(tmp_path / "two", "parts", 1)
    other = load_config(DatasetConfig, write_dataset_config(tmp_path, "parts", min_chars=5))
    with pytest.raises(UserError, match="another config"):
        merge_parts(tmp_path / "two", "parts", 2, other.model_dump(by_alias=True))
    assert not (tmp_path / "two/parts/manifest.json").exists()


def test_half_prepared_dataset_of_another_config_is_refused_not_discarded(tmp_path, tokenizer_dir):
    from chinchilla_pipeline.errors import UserError

    cfg = write_dataset_config(tmp_path, max_samples=200)
    run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    d = tmp_path / "out/topics"
    (d / "manifest.json").unlink()  # as if killed: shards and progress of another config's run
    (d / ".progress.json").write_text(json.dumps({"fingerprint": "another", "docs_consumed": 120}))
    shards = tree_bytes(d)
    with pytest.raises(UserError, match="--overwrite"):
        run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    assert tree_bytes(d) == shards
    assert run_prepare(cfg, tokenizer_dir, tmp_path / "out", overwrite=True)["splits"]["train"]["num_docs"] == 200


def test_rank_from_the_environment_must_be_integers():
    from chinchilla_pipeline.data.prepare import resolve_rank
    from chinchilla_pipeline.errors import UserError

    assert resolve_rank(None, None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    with pytest.raises(UserError, match="RANK"):
        resolve_rank(None, None, {"RANK": "abc", "WORLD_SIZE": "2"})


def test_verify_finds_corruption_and_wrong_tokenizer(tmp_path, tokenizer_dir):
    run_prepare(write_dataset_config(tmp_path, max_samples=30), tokenizer_dir, tmp_path / "out")
    d = tmp_path / "out/topics"
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps(
            {"vocab_size": 300, "max_samples": 30, "sources": [{"config": str(write_dataset_config(tmp_path, "x"))}]}
        )
    )
    from chinchilla_pipeline.tokenizer.train import train_tokenizer

    train_tokenizer(mix, tmp_path / "other_tok")
    assert any("tokenizer" in p for p in verify_dataset(d, tmp_path / "other_tok"))
    data = bytearray((d / "train_00000.bin").read_bytes())
    data[300] ^= 0xFF
    (d / "train_00000.bin").write_bytes(bytes(data))
    assert any("sha256" in p for p in verify_dataset(d))
    data[300:302] = b"\xff\xff"  # token id 65535, outside the 300-token vocabulary
    (d / "train_00000.bin").write_bytes(bytes(data))
    problems = verify_dataset(d)
    assert any("token id 65535 >= vocabulary size" in p for p in problems)
    assert any("largest token id is 65535, manifest says" in p for p in problems)


def test_local_formats_and_joined_rows(tmp_path, tokenizer_dir):
    rows = [json.loads(line) for line in gzip.open(CORPUS, "rt")][:60]
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    pq.write_table(pa.table({"body": [r["text"] for r in rows]}), tmp_path / "x.parquet")
    (tmp_path / "x.txt").write_text("\n".join(r["title"] for r in rows) + "\n")
    (tmp_path / "x.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    )
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cases = {
        "pq": {
            "source": {"type": "local", "format": "parquet", "data_files": [str(tmp_path / "x.parquet")]},
            "text_field": "body",
            "text_template": None,
        },
        "txt": {
            "source": {"type": "local", "format": "text", "data_files": [str(tmp_path / "x.txt")], "sample_by": "line"},
            "text_template": None,
            "join_rows": 6,
        },
        "zst": {"source": {"type": "local", "format": "json", "data_files": [str(tmp_path / "x.jsonl.zst")]}},
        "hubdir": {"source": {"type": "hub", "path": str(tmp_path / "dir")}},
    }
    for name, fields in cases.items():
        cfg = write_dataset_config(tmp_path, name, validation_docs=0, shuffle_buffer=0, **fields)
        docs = all_docs(cfg)
        if name == "txt":
            titles = [r["title"] for r in rows]
            assert docs == [" ".join(titles[i : i + 6]) for i in range(0, 60, 6)]
        else:
            assert len(docs) == 60
        m = run_prepare(cfg, tokenizer_dir, tmp_path / "out")
        assert m["splits"]["train"]["num_docs"] == len(docs)


def test_estimate_projects_what_prepare_produces(tmp_path, tokenizer_dir):
    from chinchilla_pipeline.data.estimate import estimate

    cfg_path = write_dataset_config(tmp_path, validation_docs=0, max_samples=789, _target_tokens=50_000)
    e = estimate(load_config(DatasetConfig, cfg_path), cfg_path, tokenizer_dir, sample_docs=789)
    m = run_prepare(cfg_path, tokenizer_dir, tmp_path / "out")
    assert e["num_sample_docs"] == 789 and e["binding_cap"] == "max_samples"
    assert abs(e["projected_train_tokens"] - m["splits"]["train"]["num_tokens"]) <= 1
    lens = [d.size for d in shard_docs(open_prepared(tmp_path / "out/topics"), "train")]
    needed = int(np.searchsorted(np.cumsum(lens), 50_000)) + 1  # documents that really reach the target
    assert abs(e["max_samples_for_target"] - needed) <= 0.1 * needed
    assert e["max_samples_suggested"] > e["max_samples_for_target"]


def test_the_bytes_per_token_table_travels_with_the_dataset(tmp_path, tokenizer_dir):
    cfg = write_dataset_config(tmp_path, max_samples=30)
    m = run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    ds = open_prepared(tmp_path / "out/topics")
    table = ds.token_bytes()
    assert m["token_bytes_sha256"] and table.dtype == np.int32 and table.shape == (ds.vocab_size,)
    assert np.array_equal(table, token_byte_lengths(load_tokenizer(tokenizer_dir))) and table[ds.eot_id] == 0
    # each document's tokens (after its end-of-text) count exactly the UTF-8 bytes of its text
    texts = all_docs(cfg)[:20]
    assert [int(table[d].sum()) for d in shard_docs(ds, "validation")] == [len(t.encode("utf-8")) for t in texts]


def test_a_dataset_from_before_the_table_gets_it_from_a_rerun_without_tokenizing(tmp_path, tokenizer_dir):
    from chinchilla_pipeline.errors import UserError

    cfg = write_dataset_config(tmp_path, max_samples=30)
    run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    d = tmp_path / "out/topics"
    manifest = json.loads((d / "manifest.json").read_text())
    del manifest["token_bytes_sha256"]  # as prepare wrote it before token_bytes.npy existed
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "token_bytes.npy").unlink()
    with pytest.raises(UserError, match=r"topics/manifest.json: .*no token_bytes.npy.*re-run `chinchilla prepare`"):
        open_prepared(d).token_bytes()
    assert any("no token_bytes.npy" in p for p in verify_dataset(d))
    shards = {p.name: p.stat().st_mtime_ns for p in d.glob("*.bin")}
    run_prepare(cfg, tokenizer_dir, tmp_path / "out")
    assert {p.name: p.stat().st_mtime_ns for p in d.glob("*.bin")} == shards  # not tokenized again
    assert verify_dataset(d, tokenizer_dir) == []


def test_verify_catches_a_tampered_table(tmp_path, tokenizer_dir):
    run_prepare(write_dataset_config(tmp_path, max_samples=30), tokenizer_dir, tmp_path / "out")
    d = tmp_path / "out/topics"
    table = np.load(d / "token_bytes.npy")
    table[300] += 1
    np.save(d / "token_bytes.npy", table)
    assert any("differs from the manifest's sha256" in p for p in verify_dataset(d))
    manifest = json.loads((d / "manifest.json").read_text())  # the sha256 rewritten to match: the tokenizer tells
    from chinchilla_pipeline.atomic import sha256_file

    manifest["token_bytes_sha256"] = sha256_file(d / "token_bytes.npy")
    (d / "manifest.json").write_text(json.dumps(manifest))
    assert verify_dataset(d) == []
    assert any("differs from the bytes per token" in p for p in verify_dataset(d, tokenizer_dir))
