"""Hub sources, offline: the shipped configs on replicas of their repositories, pins, failures, retries."""

from __future__ import annotations

import glob
import gzip
import json
import re
import shlex
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data import hub, sources
from chinchilla_pipeline.data.config import DatasetConfig, HubSource
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.schema import load_config
from conftest import CLI, CLI_ENV, ROOT, corrupt_row_group, prepare_args
from hub_replicas import build_mirror, paragraphs, script_only_repo

PHASE_CONFIGS = ["phase_a_wikipedia_1b", "phase_a_pg19_500m", "phase_b_c4_1b", "phase_b_forums_500m"]  # BOOKS=pg19
UNPINNED = {"phase_a_bookcorpus_500m"}  # no commit verifiable here: said in _comment (and not the default books)


pytestmark = pytest.mark.usefixtures("short_parquet_shutdown")  # conftest: tiny files, no 5 s wait per stream


C4_FILES = 32  # of C4's 1,024 train files in this module's mirror: the full layout is test_c4_replica_...


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return build_mirror(tmp_path_factory.mktemp("hub"), c4_train_files=C4_FILES)


@pytest.fixture
def on_mirror(mirror, monkeypatch):
    """Offline, with Hub ids redirected to the replicas; a fresh resolution cache."""
    monkeypatch.setenv(hub.MIRROR_ENV, str(mirror))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    return mirror


def shipped(name: str) -> tuple[DatasetConfig, str]:
    path = f"config/datasets/{name}.json"
    return load_config(DatasetConfig, ROOT / path), path


@pytest.mark.parametrize("path", sorted((ROOT / "config/datasets").glob("*.json")), ids=lambda p: p.stem)
def test_every_hub_config_names_a_commit_or_says_why_not(path):
    cfg = load_config(DatasetConfig, path)
    if not isinstance(cfg.source, HubSource):
        pytest.skip("a local source: no Hub revision")
    comment = json.loads(path.read_text())["_comment"]
    if cfg.name in UNPINNED:
        assert not hub.is_commit(cfg.source.revision) and "no commit sha" in comment.lower()
    else:
        assert hub.is_commit(cfg.source.revision) and cfg.source.revision[:8] in comment


def make_commands(*args: str) -> list[list[str]]:
    """The `chinchilla` command lines `make` would run for ``args`` (``make -n``), without the interpreter."""
    run = subprocess.run(["make", "-n", "-s", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
    lines = [shlex.split(line) for line in run.stdout.replace("\\\n", " ").splitlines() if line.strip()]
    return [
        expand_globs(argv[argv.index("chinchilla_pipeline.cli") + 1 :])
        for argv in lines
        if "chinchilla_pipeline.cli" in argv
    ]


def expand_globs(argv: list[str]) -> list[str]:
    """What the shell does to `make`'s command lines: globs become the sorted files they match."""
    return [f for a in argv for f in (sorted(glob.glob(a, root_dir=ROOT)) if "*" in a else [a])]


def test_make_targets_run_unchanged_on_replicas(on_mirror, tmp_path, monkeypatch, capsys):
    """tokenizer-train-mix, the four prepare targets (+ BookCorpus) and estimate-phases: the commands `make` runs,
    run in this process on the shipped configs (Hub ids redirected to the replicas)."""
    monkeypatch.chdir(ROOT)  # where make runs them: the configs name each other relative to the root
    data = tmp_path / "data"
    commands = make_commands(
        f"DATA={data}",
        "TOKENIZER_FLAGS=--max_samples 300 --vocab_size 1000",  # 300 documents do not train 50,257 entries
        "PREPARE_FLAGS=--max_samples 40 --workers 1 --quiet",
        "ESTIMATE_FLAGS=--sample_docs 20",
        "tokenizer-train-mix",
        "prepare-chinchilla-full",
        "prepare-bookcorpus-500m",
        "estimate-phases",
    )
    assert [c[0] for c in commands] == ["tokenizer-train", "prepare", "prepare", "estimate"]
    assert sum(a.endswith(".json") for a in commands[1]) == 4  # one prepare: all four sources open first
    for argv in commands:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    report = json.loads((data / "tokenizer" / "tokenizer_report.json").read_text())
    assert set(report["hub_sources"]) == set(PHASE_CONFIGS)
    for name in PHASE_CONFIGS + ["phase_a_bookcorpus_500m"]:
        cfg, _ = shipped(name)
        m = json.loads((data / "prepared" / name / "manifest.json").read_text())
        assert m["splits"]["train"]["num_docs"] > 0 and m["splits"]["validation"]["num_docs"] > 0, name
        src = m["source"]
        assert src["repo"] == cfg.source.path and src["datasets_version"] and src["revision"] == cfg.source.revision
        assert src["commit"] == (cfg.source.revision if hub.is_commit(cfg.source.revision) else None)
        if name in report["hub_sources"]:
            assert report["hub_sources"][name] == src
    for name in PHASE_CONFIGS:
        assert f"{name}: 20 documents sampled" in out


def test_c4_replica_with_all_1024_train_files_is_read_whole_by_the_shipped_config(tmp_path, monkeypatch):
    """The shipped C4 config on the replica with the pinned commit's 1,024 train files (this module's mirror has
    the first 32): its glob takes every train file and no other, one unit each, and every file's rows are read."""
    from hub_replicas import C4_TRAIN_FILES, SIZES, c4_replica

    monkeypatch.setenv(hub.MIRROR_ENV, str(c4_replica(tmp_path / "hub")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    cfg, path = shipped("phase_b_c4_1b")
    ds, files = sources.document_dataset(cfg, path)
    assert C4_TRAIN_FILES == 1024 and ds.num_shards == len(files) == 1024
    assert sorted(files) == [f"en/c4-train.{j:05d}-of-01024.json.gz" for j in range(1024)]
    rows, read_from = 0, set()
    for table in ds.iter(batch_size=1000):
        rows += sum(table.column("rows_read").to_pylist())
        read_from.update(table.column(sources.FILE_COLUMN).to_pylist())
    assert rows == SIZES["c4"] and read_from == set(range(1024))


def test_books_switch_picks_config_mix_and_curriculum():
    def dry(*args):
        return subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True)

    for books in ([], ["BOOKS=pg19"]):  # PG-19 by default
        out = dry(*books, "prepare-phase-a", "tokenizer-train-mix", "preflight", "estimate-phases").stdout
        assert "phase_a_pg19_500m.json" in out and "bookcorpus" not in out
        assert "tokenizer_mix_pg19.json" in out and "chinchilla_124m_pg19.json" in out
    out = dry("BOOKS=bookcorpus", "prepare-phase-a", "tokenizer-train-mix", "preflight").stdout
    assert "phase_a_bookcorpus_500m.json" in out and "config/tokenizer_mix.json" in out and "pg19" not in out
    assert "config/curriculum/chinchilla_124m.json" in out
    bad = dry("BOOKS=novels", "prepare-phase-a")
    assert bad.returncode != 0 and "BOOKS must be bookcorpus or pg19" in bad.stderr


def forums_config(tmp_path: Path, **fields) -> Path:
    """The shipped forums config, smaller: many batches and shards, so a stream can drop in the middle."""
    data = json.loads((ROOT / "config/datasets/phase_b_forums_500m.json").read_text())
    data.update(
        {"max_samples": 400, "validation_docs": 20, "batch_docs": 50, "shard_tokens": 8_000, "shuffle_buffer": 100},
        **fields,
    )
    path = tmp_path / "forums.json"
    path.write_text(json.dumps(data))
    return path


def prepare(cfg: Path, tokenizer_dir, out: Path, *extra) -> int:
    return main(prepare_args(cfg, tokenizer_dir, out, "--workers", "1", *extra))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


class FaultyStream:
    """The real ``datasets`` iterable, raising ConnectionError at batch ``at`` while ``state['left']`` > 0."""

    def __init__(self, ds, state):
        self.ds, self.state = ds, state

    def iter(self, batch_size):
        for i, table in enumerate(self.ds.iter(batch_size=batch_size)):
            if i == self.state["at"] and self.state["left"] > 0:
                self.state["left"] -= 1
                raise ConnectionError("injected: connection reset by peer")
            yield table


def inject(monkeypatch, at: int, times: int) -> dict:
    """Faults at batch ``at`` of the stream, ``times`` times; online (offline, nothing is retried), the reads
    still on the mirror, no waits."""
    state = {"at": at, "left": times}
    real = sources.document_dataset

    def faulty(*a, **k):
        ds, files = real(*a, **k)
        return FaultyStream(ds, state), files

    monkeypatch.setattr(sources, "document_dataset", faulty)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(hub.BACKOFF_ENV, "0")
    return state


def test_dropped_stream_is_retried_and_output_is_identical(on_mirror, tmp_path, tokenizer_dir, monkeypatch):
    cfg = forums_config(tmp_path)
    assert prepare(cfg, tokenizer_dir, tmp_path / "clean") == 0
    state = inject(monkeypatch, at=4, times=2)
    assert prepare(cfg, tokenizer_dir, tmp_path / "faulty") == 0
    assert state["left"] == 0  # the fault fired twice, and the run went through
    assert snapshot(tmp_path / "faulty" / "phase_b_forums_500m") == snapshot(tmp_path / "clean" / "phase_b_forums_500m")


def test_stream_that_gives_up_is_resumable_and_ends_identical(on_mirror, tmp_path, tokenizer_dir, monkeypatch, capsys):
    cfg = forums_config(tmp_path)
    assert prepare(cfg, tokenizer_dir, tmp_path / "clean") == 0
    monkeypatch.setenv(hub.BUDGET_ENV, "0")  # the first failure gives up
    state = inject(monkeypatch, at=5, times=10**6)
    capsys.readouterr()
    assert prepare(cfg, tokenizer_dir, tmp_path / "broken") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Hub: check the network, then rerun: the run resumes" in err[0], err
    assert "gave up on the stream after 5 batches: 1 failure in 0.0 min" in err[0]
    # the shards committed before the drop stay
    assert (tmp_path / "broken" / "phase_b_forums_500m" / ".progress.json").is_file()
    state["left"] = 0
    assert prepare(cfg, tokenizer_dir, tmp_path / "broken") == 0
    assert snapshot(tmp_path / "broken" / "phase_b_forums_500m") == snapshot(tmp_path / "clean" / "phase_b_forums_500m")


def test_resume_from_another_commit_or_datasets_version_is_refused(
    on_mirror, tmp_path, tokenizer_dir, monkeypatch, capsys
):
    import datasets

    out = tmp_path / "out"
    shipped_source = json.loads((ROOT / "config/datasets/phase_b_forums_500m.json").read_text())["source"]

    def at(commit: str) -> Path:
        return forums_config(tmp_path, source={**shipped_source, "revision": commit})

    assert prepare(at("a" * 40), tokenizer_dir, out) == 0
    assert json.loads((out / "phase_b_forums_500m" / "manifest.json").read_text())["source"]["commit"] == "a" * 40
    capsys.readouterr()
    assert prepare(at("b" * 40), tokenizer_dir, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"at commit {'a' * 40}" in err[0] and f"would read commit {'b' * 40}" in err[0]
    monkeypatch.setattr(hub, "_resolved", {})
    monkeypatch.setattr(datasets, "__version__", "99.0.0")
    assert prepare(at("a" * 40), tokenizer_dir, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "with datasets 99.0.0" in err[0] and "--overwrite" in err[0]


def test_script_only_repository_is_one_line(tmp_path, tokenizer_dir, monkeypatch, capsys):
    monkeypatch.setenv(hub.MIRROR_ENV, str(script_only_repo(tmp_path / "hub")))
    monkeypatch.setattr(hub, "_resolved", {})
    data = json.loads((ROOT / "config/datasets/phase_a_bookcorpus_500m.json").read_text())
    data["source"] = {"type": "hub", "path": "bookcorpus/bookcorpus", "name": "plain_text"}
    cfg = tmp_path / "books.json"
    cfg.write_text(json.dumps(data))
    assert prepare(cfg, tokenizer_dir, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "phase_a_bookcorpus_500m: the repository is a loading script" in err[0]
    assert not (tmp_path / "out").exists()


def test_undecodable_parquet_row_group_of_a_hub_source_is_one_line(
    mirror, tmp_path, tokenizer_dir, monkeypatch, capsys
):
    """Hub sources (a mirror directory too) do not skip row groups: a corrupt page stops the run, one line."""
    shutil.copytree(mirror / "wikimedia", tmp_path / "hub/wikimedia")
    corrupt_row_group(tmp_path / "hub/wikimedia/wikipedia/20231101.en/train-00002-of-00041.parquet", 1)
    monkeypatch.setenv(hub.MIRROR_ENV, str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    data = json.loads((ROOT / "config/datasets/phase_a_wikipedia_1b.json").read_text())
    data.update(validation_docs=20, shuffle_buffer=100, batch_docs=50)
    cfg = tmp_path / "wiki.json"
    cfg.write_text(json.dumps(data))
    assert prepare(cfg, tokenizer_dir, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'source': a source file cannot be decoded (OSError: " in err[0], err
    assert "leave it out with source.data_files" in err[0]
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_malformed_line_of_a_hub_json_file_is_one_line_naming_the_file(mirror, tmp_path, tokenizer_dir):
    """Hub files are read as published (only local files are scanned for bad records): a malformed line stops
    the run with one line on stderr, nothing else (datasets' and huggingface_hub's own log lines included)."""
    shutil.copytree(mirror / "sentence-transformers", tmp_path / "hub/sentence-transformers")
    for path in (tmp_path / "hub/sentence-transformers/reddit-title-body").glob("*.jsonl.gz"):  # the first read too
        lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
        path.write_bytes(gzip.compress("".join(lines[:5] + ['{"title": "cut off", "bo\n'] + lines[5:]).encode()))
    env = {**CLI_ENV, hub.MIRROR_ENV: str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    args = prepare_args(forums_config(tmp_path), tokenizer_dir, tmp_path / "out", "--workers", "1")
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert re.search(r"reddit_title_text_20\d\d\.jsonl\.gz: cannot be decoded \(ArrowInvalid: JSON parse error", err[0])
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_undecodable_first_row_group_of_a_hub_source_is_one_line(mirror, tmp_path, monkeypatch):
    """The first-row check of tokenizer-train, estimate and prepare: a corrupt first page is one UserError."""
    shutil.copytree(mirror / "wikimedia", tmp_path / "hub/wikimedia")
    for path in (tmp_path / "hub/wikimedia/wikipedia/20231101.en").glob("*.parquet"):
        corrupt_row_group(path, 0)
    monkeypatch.setenv(hub.MIRROR_ENV, str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    with pytest.raises(UserError, match=r"cannot read the source's first row \((OSError|ArrowInvalid)"):
        sources.open_sources([shipped("phase_a_wikipedia_1b")])


class _Hub(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(self.status)
        if self.status == 403:
            self.send_header("X-Error-Code", "GatedRepo")
        if self.status == 404:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "test hub"}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "status, expect",
    [
        (401, "gated or private repository (HTTP 401): accept its terms"),
        (403, "gated or private repository (HTTP 403)"),
        (404, "not found (404)"),
        (429, "rate limited by the Hub (429): set HF_TOKEN"),
        (503, "Hub server error (503)"),
    ],
)
def test_hub_http_failures_are_one_line_with_what_to_do(tmp_path, tokenizer_dir, monkeypatch, capsys, status, expect):
    """The real huggingface_hub client against a local server answering ``status``."""
    import huggingface_hub.constants as hf_constants

    server = HTTPServer(("127.0.0.1", 0), type("H", (_Hub,), {"status": status}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
        monkeypatch.setenv(hub.BUDGET_ENV, "0")  # 429 and 5xx: the first failure gives up (test_hub_retries.py)
        monkeypatch.setattr(hub, "_resolved", {})
        cfg, path = shipped("phase_b_c4_1b")
        assert prepare(ROOT / path, tokenizer_dir, tmp_path / "out") == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "phase_b_c4_1b: " in err[0] and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_broken_source_fails_before_the_first_long_read(on_mirror, tmp_path, tokenizer_dir, capsys):
    """estimate and prepare with several configs open every source first: the last one's error comes first."""
    data = json.loads((ROOT / "config/datasets/phase_b_forums_500m.json").read_text())
    data["text_template"] = "{title}\n\n{selftext}"  # not a column of the real repository
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    for argv in (
        [
            "estimate",
            "--tokenizer",
            str(tokenizer_dir),
            "--config_path",
            "config/datasets/phase_b_c4_1b.json",
            str(bad),
        ],
        [
            "prepare",
            "--tokenizer",
            str(tokenizer_dir),
            "--out_dir",
            str(tmp_path / "out"),
            "--config_path",
            "config/datasets/phase_b_c4_1b.json",
            str(bad),
        ],
    ):
        capsys.readouterr()
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert "documents sampled" not in out and "fields ['selftext'] not in the source's columns" in err
    assert not (tmp_path / "out").exists()


def test_fewer_files_than_ranks_every_rank_reads_all_files_and_keeps_the_documents_it_owns(tmp_path, caplog):
    """2 JSON files, 4 ranks: each rank streams every file and keeps the documents its hash owns (logged);
    the parts are disjoint, together the one-rank stream, each within 4 standard deviations of a quarter."""
    caplog.set_level("INFO")
    paras = paragraphs()[:1200]
    for j in range(2):
        with gzip.open(tmp_path / f"f{j}.jsonl.gz", "wt") as f:
            f.writelines(json.dumps({"text": p}) + "\n" for p in paras[j::2])
    cfg = DatasetConfig.model_validate(
        {"name": "two", "source": {"type": "local", "format": "json", "data_files": [str(tmp_path / "f*.jsonl.gz")]}}
    )
    whole = [d for b in sources.iter_documents(cfg, "two.json") for d in b]
    parts = [[d for b in sources.iter_documents(cfg, "two.json", rank, 4) for d in b] for rank in range(4)]
    assert sorted(d for p in parts for d in p) == sorted(whole) and len(whole) == len(paras)
    sd = (len(whole) * 0.25 * 0.75) ** 0.5
    assert all(abs(len(p) - len(whole) / 4) <= 4 * sd for p in parts), [len(p) for p in parts]
    assert "reads all 2 files and keeps the documents it owns by hash" in caplog.text


def test_offline_local_sources_need_no_hub(tmp_path, tokenizer_dir, monkeypatch):
    from conftest import write_dataset_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert prepare(write_dataset_config(tmp_path, max_samples=30), tokenizer_dir, tmp_path / "out") == 0
    assert "source" not in json.loads((tmp_path / "out" / "topics" / "manifest.json").read_text())


def test_parts_record_the_commit_and_merge_carries_it(on_mirror, tmp_path, tokenizer_dir):
    cfg = forums_config(tmp_path)
    data = json.loads(cfg.read_text())
    data["source"]["revision"] = "c" * 40
    cfg.write_text(json.dumps(data))
    for rank in (0, 1):
        assert prepare(cfg, tokenizer_dir, tmp_path / "out", "--rank", str(rank), "--world_size", "2") == 0
    assert main(["merge", "--config_path", str(cfg), "--world_size", "2", "--out_dir", str(tmp_path / "out")]) == 0
    merged = json.loads((tmp_path / "out" / "phase_b_forums_500m" / "manifest.json").read_text())
    assert merged["source"]["commit"] == "c" * 40 and merged["splits"]["train"]["num_docs"] == 400
