"""``chinchilla demo-corpus`` end to end on small archives built here (no network: pip is faked)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from chinchilla_pipeline import cli
from chinchilla_pipeline.instruments.corpus import fetch
from chinchilla_pipeline.instruments.corpus.config import CorpusConfig
from chinchilla_pipeline.schema import load_config
from test_corpus_readers import (
    ARTICLE,
    CHATTERBOT_YAML,
    GUTENBERG,
    POST,
    RST_PAGE,
    TWEETS_AND_REVIEWS,
    _dump,
    _sklearn_style_pickle,
)

ROOT = Path(__file__).resolve().parents[1]


def _wheel(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)


def _sdist(path: Path | io.BytesIO, members: dict[str, bytes]) -> None:
    with tarfile.open(fileobj=path, mode="w:gz") if isinstance(path, io.BytesIO) else tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def _tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    _sdist(buf, members)
    return buf.getvalue()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def setup(tmp_path):
    """Five archives shaped like the pinned ones, a config that pins them, an empty cache."""
    store = tmp_path / "store"  # stands in for PyPI
    store.mkdir()
    _wheel(
        store / "g-1.0-py3-none-any.whl",
        {
            "g/test_data/enwiki.xml.bz2": _dump(
                [("Ruritania", "0", ARTICLE, False), ("Zenda", "0", "#REDIRECT [[Ruritania]]", True)]
            ),
            "g/test_data/lee_background.cor": b"First story.\nSecond story.\n",
            "g/test_data/mini_newsgroup": _sklearn_style_pickle([POST]),
        },
    )
    _sdist(
        store / "s-0.6.tar.gz",
        {
            "s-0.6/texts/hamlet_gut.txt": GUTENBERG.encode(),
            "s-0.6/texts/hamlet_gut_f.txt": b"a folio copy, not selected",
            "s-0.6/texts/metadata.txt": b"[hamlet_gut]\ntitle = Hamlet\n",
        },
    )
    _wheel(store / "c-1.0-py3-none-any.whl", {"c/data/english/greetings.yml": CHATTERBOT_YAML.encode()})
    _sdist(
        store / "d-5.2.tar.gz",
        {
            "d-5.2/docs/topics/sessions.txt": RST_PAGE.encode(),
            "d-5.2/docs/releases/5.2.txt": b"Release notes, not selected\n",
        },
    )
    _sdist(
        store / "v-3.3.tar.gz",
        {  # the data sit in a tar.gz inside the sdist
            "v-3.3/resources/data.tar.gz": _tar_gz_bytes({"data/tweets.txt": TWEETS_AND_REVIEWS.encode()}),
        },
    )

    def archive(req, file):
        return {"requirement": req, "file": file, "sha256": _sha(store / file), "licence": "test"}

    cfg = {
        "archives": {
            "g": archive("g==1.0", "g-1.0-py3-none-any.whl"),
            "s": archive("s==0.6", "s-0.6.tar.gz"),
            "c": archive("c==1.0", "c-1.0-py3-none-any.whl"),
            "d": archive("d==5.2", "d-5.2.tar.gz"),
            "v": archive("v==3.3", "v-3.3.tar.gz"),
        },
        "sources": [
            {
                "name": "wikipedia",
                "stands_for": "w",
                "licence": "l",
                "parts": [{"archive": "g", "reader": "mediawiki_xml_bz2", "members": ["g/test_data/enwiki.xml.bz2"]}],
            },
            {
                "name": "books",
                "stands_for": "b",
                "licence": "l",
                "parts": [
                    {
                        "archive": "s",
                        "reader": "gutenberg",
                        "members": ["s-0.6/texts/*_gut.txt"],
                        "metadata": ["s-0.6/texts/metadata.txt"],
                        "max_chars_per_doc": 30,
                    }
                ],
            },
            {
                "name": "news",
                "stands_for": "c4",
                "licence": "l",
                "parts": [{"archive": "g", "reader": "lines", "members": ["g/test_data/lee_background.cor"]}],
            },
            {
                "name": "web",
                "stands_for": "c4",
                "licence": "l",
                "parts": [{"archive": "d", "reader": "rst_docs", "members": ["d-5.2/docs/topics/*.txt"]}],
            },
            {
                "name": "forums",
                "stands_for": "f",
                "licence": "l",
                "parts": [
                    {"archive": "g", "reader": "newsgroups_pickle", "members": ["g/test_data/mini_newsgroup"]},
                    {"archive": "c", "reader": "chatterbot_yaml", "members": ["c/data/english/*.yml"]},
                    {
                        "archive": "v",
                        "reader": "rated_snippets",
                        "inner_archive": "v-3.3/resources/data.tar.gz",
                        "members": ["data/*.txt"],
                    },
                ],
            },
        ],
    }
    config = tmp_path / "corpus.json"
    config.write_text(json.dumps(cfg))
    return {"store": store, "config": config, "cfg": cfg, "cache": tmp_path / "cache", "out": tmp_path / "out"}


@pytest.fixture()
def fake_pip(monkeypatch, setup):
    """``pip download`` replaced by a copy from the test's store; records each call."""
    calls = []

    def command(archive, dest):
        calls.append(archive.requirement)
        return [
            sys.executable,
            "-c",
            "import shutil,sys; shutil.copy(sys.argv[1], sys.argv[2])",
            str(setup["store"] / archive.file),
            str(dest),
        ]

    monkeypatch.setattr(fetch, "pip_download_command", command)
    return calls


def _run(s, *extra) -> int:
    return cli.main(
        [
            "demo-corpus",
            "--config",
            str(s["config"]),
            "--out_dir",
            str(s["out"]),
            "--cache_dir",
            str(s["cache"]),
            *extra,
        ]
    )


def _docs(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_build_fetches_verifies_converts_and_checksums(setup, fake_pip, capsys):
    assert _run(setup) == 0
    assert sorted(fake_pip) == ["c==1.0", "d==5.2", "g==1.0", "s==0.6", "v==3.3"]
    out = setup["out"]
    manifest = json.loads((out / "corpus_manifest.json").read_text())
    assert set(manifest["sources"]) == {"wikipedia", "books", "news", "web", "forums"}
    for src in manifest["sources"].values():
        docs = _docs(out / src["file"])
        assert src["num_docs"] == len(docs) > 0
        assert src["num_chars"] == sum(len(d["text"]) for d in docs)
        assert src["sha256"] == _sha(out / src["file"])
    assert [d["title"] for d in _docs(out / "wikipedia.jsonl.gz")] == ["Ruritania"]  # redirect skipped
    books = _docs(out / "books.jsonl.gz")
    assert {d["title"] for d in books} == {"Hamlet"}  # the folio file is not selected; title from metadata
    assert manifest["sources"]["books"]["parts"][0]["members"] == ["s-0.6/texts/hamlet_gut.txt"]
    forums = [d["text"] for d in _docs(out / "forums.jsonl.gz")]
    assert forums[0].startswith("NASA budget and STS costs\n\n") and "A: Hello\nB: Hi" in forums[1]
    assert forums[-1] == "incredible price."  # from the tar.gz inside the v sdist
    assert manifest["sources"]["forums"]["parts"][2]["inner_archive"] == "v-3.3/resources/data.tar.gz"
    assert manifest["sources"]["forums"]["parts"][2]["members"] == ["data/tweets.txt"]
    web = _docs(out / "web.jsonl.gz")  # the release notes are not selected
    assert len(web) == 1 and web[0]["text"].startswith("How to use sessions\n\nDjango provides")


def test_second_run_only_verifies_and_output_is_deterministic(setup, fake_pip, capsys, tmp_path):
    assert _run(setup) == 0
    first = {p.name: p.read_bytes() for p in setup["out"].glob("*.json*")}
    mtimes = {p.name: p.stat().st_mtime_ns for p in setup["out"].glob("*.json*")}
    fake_pip.clear()
    capsys.readouterr()
    assert _run(setup) == 0
    assert "up to date" in capsys.readouterr().out and fake_pip == []
    assert {p.name: p.stat().st_mtime_ns for p in setup["out"].glob("*.json*")} == mtimes
    # A rebuild from the cached archives into another folder is byte-identical.
    setup["out"] = tmp_path / "again"
    assert _run(setup, "--overwrite") == 0 and fake_pip == []
    assert {p.name: p.read_bytes() for p in setup["out"].glob("*.json*")} == first
    # A damaged output is noticed and rebuilt.
    (tmp_path / "again" / "news.jsonl.gz").write_bytes(b"garbage")
    assert _run(setup) == 0
    assert (tmp_path / "again" / "news.jsonl.gz").read_bytes() == first["news.jsonl.gz"]


def test_wrong_sha256_is_a_user_error_and_nothing_is_cached(setup, fake_pip, capsys):
    setup["cfg"]["archives"]["s"]["sha256"] = "0" * 64
    setup["config"].write_text(json.dumps(setup["cfg"]))
    assert _run(setup) == 2
    err = capsys.readouterr().err
    assert "field 'archives.s.sha256'" in err and "expected 0000" in err and len(err.strip().splitlines()) == 1
    assert not (setup["cache"] / "s-0.6.tar.gz").exists()
    assert not (setup["out"] / "corpus_manifest.json").exists()


def test_output_reads_with_the_pipelines_json_loader(setup, fake_pip):
    assert _run(setup) == 0
    import datasets

    ds = datasets.load_dataset("json", data_files=[str(setup["out"] / "news.jsonl.gz")], split="train", streaming=True)
    assert [r["text"] for r in ds] == ["First story.", "Second story."]
    # demo_web reads web and news as one dataset: the loader needs the same columns in both files.
    ds = datasets.load_dataset(
        "json",
        data_files=[str(setup["out"] / n) for n in ("web.jsonl.gz", "news.jsonl.gz")],
        split="train",
        streaming=True,
    )
    assert [r["text"][:19] for r in ds] == ["How to use sessions", "First story.", "Second story."]


def test_shipped_corpus_config_validates_and_pins_every_archive():
    cfg = load_config(CorpusConfig, ROOT / "config/demo/corpus.json")
    assert [s.name for s in cfg.sources] == ["wikipedia", "books", "news", "web", "forums"]
    for name, a in cfg.archives.items():
        assert f"-{a.requirement.split('==')[1]}" in a.file, name
        cmd = fetch.pip_download_command(a, Path("/cache"))
        assert "--no-deps" in cmd and a.requirement in cmd
        if a.file.endswith(".whl") and not a.file.endswith("-none-any.whl"):
            # A platform wheel: pip must be told the platform, or another Python fetches another file.
            assert {"--platform", "--python-version", "--abi", "--implementation"} <= set(a.pip_args), name
