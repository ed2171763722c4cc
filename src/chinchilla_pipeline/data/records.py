"""Bad records in local JSON-lines, CSV and parquet files: found, counted and left out of what ``datasets`` reads.

``datasets``' JSON builder parses blocks of ~10 MB with pyarrow, and one line
that is not JSON, or not an object, fails its whole file with a traceback. So
every local JSON-lines file (``.jsonl``/``.json``, ``.gz``/``.zst``/``.bz2``/``.xz``
as ``datasets`` reads them, through ``fsspec``) is scanned once before the
stream opens:

- each block of ~8 MB of lines is parsed by pyarrow (C++, hundreds of MB/s);
  only a block that fails is re-checked line by line with ``json.loads``;
- a line that is not valid JSON, or valid JSON but not an object, is a bad
  record: skipped and counted, with file, line number and reason for the first
  ``FIRST_BAD``; blank lines are not records;
- a file with bad records is rewritten without them, once, into a temporary
  directory (``$TMPDIR``, removed at exit), and ``datasets`` reads that copy in
  its place: the stream is the one the file would give without those lines;
  a clean file is read as it is, so clean sources stream exactly as before;
- an empty file is a source part with zero rows;
- it is an error (one line) when more than ``MAX_BAD_FRACTION`` of a source's
  lines are bad, or when a non-empty file has no good line at all: that is a
  wrong format or a broken file, not a few bad records.

CSV: a record with more fields than the header is a bad record (pandas' C parser,
which ``datasets`` uses, fails the file on it); the scan counts them with Python's
``csv`` module and ``datasets`` reads the file with ``on_bad_lines="skip"``, which
leaves the same records out.

Parquet: a row group that cannot be decoded (a corrupt page: pyarrow raises an
``OSError`` without errno, or an ``ArrowException``) is a bad record of as many
rows as it holds. Parquet files are not scanned up front (that would decode them
twice: clean sources pay nothing). When a stream of a local parquet source fails
to decode, ``skip_undecodable`` decodes every row group of every file of the
source once (in parallel threads, one row group per thread in memory), writes
each file with undecodable row groups again without them (schema and the good
row groups as they were) into the same temporary directory, and the stream is
re-opened on those copies, skipping what it had delivered (``hub.reopening``):
``datasets`` never gives a row of a row group it could not decode, and what it
gave before the failure depends only on the rows before it, so the stream is the
one the copies give from the start. The same thresholds apply, over the rows the
footers count; the counts are those of the whole source, found when (and only
if) the stream meets an undecodable row group.

A file that starts with ``[`` is one JSON document (a list), which ``datasets``
reads whole; it is passed through unscanned. Scans are cached per (path, size,
mtime) for the life of the process.
"""

from __future__ import annotations

import atexit
import codecs
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError
from .files import resolve_data_files

csv.field_size_limit(sys.maxsize)  # pandas (which datasets reads CSV with) has no field length limit

MAX_BAD_FRACTION = 0.01  # more than 1% of a source's lines bad: refuse the source
FIRST_BAD = 5  # bad records listed (file, line, reason) in the manifest
BLOCK_BYTES = 8 << 20  # lines parsed together by pyarrow
log = logging.getLogger(__name__)


@dataclass
class FileScan:
    """One file: its good and bad lines, where the first bad ones are, and the path to read."""

    path: str
    rows: int = 0
    bad: int = 0
    first_bad: list[dict[str, Any]] = field(default_factory=list)
    read_path: str = ""  # the file itself, or its copy without the bad lines


_CACHE: dict[tuple[str, int, int], FileScan] = {}
_PARQUET: dict[tuple[str, int, int], FileScan] = {}  # decoded only after a stream failed (skip_undecodable)
_TMP: list[str] = []
_TMP_LOCK = threading.Lock()
_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def _clean_dir() -> str:
    with _TMP_LOCK:
        return _make_clean_dir()


def _make_clean_dir() -> str:
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="chinchilla-clean-"))
        atexit.register(_remove_clean_dir, _TMP[0], os.getpid())
    return _TMP[0]


def _remove_clean_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not from a forked child that inherited the handler
        shutil.rmtree(path, ignore_errors=True)


def _key(path: str) -> tuple[str, int, int]:
    """What a scan is cached by: the file's absolute path, size and mtime (ns)."""
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _bad_reason(line: bytes) -> str | None:
    """Why ``line`` is not a record (None when it is one)."""
    try:  # invalid UTF-8 inside a string is not a bad record: the stream replaces it by U+FFFD
        value = json.loads(line.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace"))
    except ValueError as err:
        return f"not valid JSON ({str(err).split(':')[0]})"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    return None


def _check_block(block: bytes, first_line: int, scan: FileScan, bad: set[int]) -> None:
    """Count the lines of ``block`` into ``scan`` and the numbers of bad ones into ``bad``: pyarrow
    parses the whole block (C++, no Python per line); only when it fails is each line checked."""
    import pyarrow as pa
    import pyarrow.json as paj

    try:
        table = paj.read_json(io.BytesIO(block), read_options=paj.ReadOptions(block_size=max(len(block), 1 << 16)))
        scan.rows += table.num_rows
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # a bad line, or good lines pyarrow cannot type together (datasets handles those)
    for i, line in enumerate(block.split(b"\n")):
        if not line.strip():
            continue
        reason = _bad_reason(line)
        if reason is None:
            scan.rows += 1
            continue
        bad.add(first_line + i)
        scan.bad += 1
        if len(scan.first_bad) < FIRST_BAD:
            scan.first_bad.append({"file": scan.path, "line": first_line + i, "reason": reason})


def _blocks(path: str) -> Iterator[bytes]:
    """The decompressed file in blocks of ~``BLOCK_BYTES`` that end on a line end (the last may not)."""
    import fsspec

    with fsspec.open(path, "rb", compression="infer") as f:  # some decompressors cannot iterate lines
        rest = b""
        while chunk := f.read(BLOCK_BYTES):
            block = rest + chunk
            cut = block.rfind(b"\n") + 1
            if cut:
                yield block[:cut]
            rest = block[cut:]
        if rest:
            yield rest + b"\n"


def scan_json_file(path: str) -> FileScan:
    """Scan one JSON-lines file (cached); when it has bad lines, write its copy without them (a second read)."""
    import fsspec

    key = _key(path)
    if key in _CACHE:
        return _CACHE[key]
    scan = FileScan(path, read_path=path)
    with fsspec.open(path, "rb", compression="infer") as f:
        head = f.read(1 << 10)
    if head.lstrip(codecs.BOM_UTF8 + b" \t\r\n").startswith(b"["):  # one JSON list: datasets reads it whole
        _CACHE[key] = scan
        return scan
    bad: set[int] = set()
    line_no = 1
    for block in _blocks(path):
        _check_block(block, line_no, scan, bad)
        line_no += block.count(b"\n")
    if bad and scan.rows:
        fd, scan.read_path = tempfile.mkstemp(
            suffix=".jsonl", prefix=f"{Path(path).name.split('.')[0]}_", dir=_clean_dir()
        )
        with os.fdopen(fd, "wb") as out:
            line_no = 1
            for block in _blocks(path):
                lines = block.split(b"\n")[:-1]
                out.writelines(line + b"\n" for n, line in enumerate(lines, line_no) if n not in bad)
                line_no += len(lines)
    _CACHE[key] = scan
    return scan


def scan_csv_file(path: str) -> FileScan:
    """Count one CSV file's records and its bad ones: more fields than the header (pandas' C parser,
    which ``datasets`` uses, fails on those; ``on_bad_lines="skip"`` then leaves the same ones out)."""
    import fsspec

    key = _key(path)
    if key in _CACHE:
        return _CACHE[key]
    scan = FileScan(path, read_path=path)
    with fsspec.open(path, "rt", compression="infer", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)  # fields as long as pandas allows (book text runs past csv's 128 KB default)
        width = len(next(reader, []))
        for row in reader:
            if not row:
                continue  # a blank line: not a record (pandas skips them too)
            if len(row) <= width:
                scan.rows += 1
                continue
            scan.bad += 1
            if len(scan.first_bad) < FIRST_BAD:
                scan.first_bad.append(
                    {"file": path, "line": reader.line_num, "reason": f"{len(row)} fields, the header has {width}"}
                )
    _CACHE[key] = scan
    return scan


def scan_parquet_file(path: str) -> FileScan:
    """Decode each row group of one parquet file (cached): one that cannot be decoded is a bad record of its
    rows (counted from the footer); when there are such, write the file's copy without them."""
    import pyarrow.parquet as pq

    key = _key(path)
    if key in _PARQUET:
        return _PARQUET[key]
    scan = FileScan(path, read_path=path)
    bad: list[int] = []
    with pq.ParquetFile(path) as pf:
        for i in range(pf.num_row_groups):
            rows = pf.metadata.row_group(i).num_rows
            try:
                pf.read_row_group(i)  # decoded and dropped: one row group in memory at a time
            except Exception as err:  # noqa: BLE001 - only a decoding failure is a bad record
                if not decoding_failure(err):
                    raise
                bad.append(i)
                scan.bad += rows
                if len(scan.first_bad) < FIRST_BAD:
                    scan.first_bad.append(
                        {"file": path, "row_group": i, "rows": rows, "reason": f"cannot be decoded ({_what(err)})"}
                    )
                continue
            scan.rows += rows
        if bad and scan.rows:
            scan.read_path = _write_without(pf, path, bad)
    _PARQUET[key] = scan
    return scan


def _write_without(pf, path: str, bad: list[int]) -> str:
    """The copy of parquet file ``path`` with row groups ``bad`` emptied, written atomically into the clean
    directory: the same schema and the same row groups, each bad one with 0 rows, so that the copy has the
    units of the file (``sources.document_dataset`` shuffles row groups: the same count, the same order)."""
    import pyarrow.parquet as pq

    from ..atomic import atomic_open

    out = Path(_clean_dir()) / f"{hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]}_{Path(path).name}"
    with atomic_open(out) as f, pq.ParquetWriter(f, pf.schema_arrow) as writer:
        for i in range(pf.num_row_groups):
            table = pf.schema_arrow.empty_table() if i in bad else pf.read_row_group(i)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
    return str(out)


def decoding_failure(err: BaseException) -> bool:
    """pyarrow could not decode data (an ``OSError`` without errno, an ``ArrowException``); not the
    environment (an ``OSError`` with errno: disk, permissions; memory), which gets the CLI's own line."""
    import pyarrow as pa

    if isinstance(err, MemoryError) or isinstance(err, OSError) and err.errno is not None:
        return False
    return isinstance(err, (OSError, pa.ArrowException))


def _readable(scanner, path: str) -> FileScan:
    """``scanner(path)``; a file that cannot be decoded at all (a truncated ``.gz``, a broken ``.zst``)
    is one ``UserError`` naming it, not a traceback."""
    try:
        return scanner(path)
    except (EOFError, ValueError, csv.Error) as err:  # gzip/zstd/lzma raise these, or an OSError subclass
        raise UserError(_unreadable(err), path=path) from None
    except OSError as err:
        if err.errno is not None:
            raise  # the environment (permissions, a vanished disk): the CLI's one line for it
        raise UserError(_unreadable(err), path=path) from None


def _unreadable(err: Exception) -> str:
    return f"cannot be read ({_what(err)}): truncated or corrupt; replace or remove the file"


def _what(err: BaseException, chars: int = 120) -> str:
    """``Type: first line of the message`` (at most ``chars`` characters of it)."""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:chars]}" if str(err) else type(err).__name__


def _at(example: dict[str, Any]) -> str:
    """Where a bad record is: ``line 12`` (JSON lines, CSV) or ``row group 4`` (parquet)."""
    return f"line {example['line']}" if "line" in example else f"row group {example['row_group']}"


SCANNERS = {"json": scan_json_file, "csv": scan_csv_file, "parquet": scan_parquet_file}
KINDS = {"json": "JSON lines", "csv": "CSV records", "parquet": "parquet rows"}
EXPECTED = {
    "json": "expected one JSON object per line",
    "csv": "expected as many fields as the header",
    "parquet": "replace or remove the file",
}


def _all_scanned(files: list[str]) -> bool:
    """Every file of a parquet source decoded already (by ``skip_undecodable``, in this process)."""
    return all(_key(path) in _PARQUET for path in files)


def _with_rows(fmt: str, files: list[str]) -> list[str]:
    """``files`` without the 0-byte parquet and text files: they hold no rows (pyarrow refuses a 0-byte
    parquet file; ``datasets`` reads a 0-byte text file as one empty line)."""
    return [f for f in files if os.path.getsize(f)] if fmt in ("parquet", "text") else files


def check_local_files(fmt: str, files: list[str], config_path: str | Path) -> tuple[list[str], dict[str, Any]]:
    """The paths ``datasets`` should read for ``files`` of format ``fmt`` (copies without bad records where
    needed; empty when the source has no row at all) and the manifest's ``bad_records`` section
    (``source_bad_records``).

    More than ``MAX_BAD_FRACTION`` of the records bad, or a non-empty file without one good record,
    is a ``UserError``. Text files are passed through (a text line is always a record), and parquet files
    until ``skip_undecodable`` has decoded them; 0-byte parquet and text files are left out (no rows).
    """
    files = _with_rows(fmt, files)
    if fmt not in SCANNERS or fmt == "parquet" and not _all_scanned(files):
        return files, {"skipped": 0, "first": []}
    return _checked(fmt, files, config_path)


def _checked(fmt: str, files: list[str], config_path: str | Path) -> tuple[list[str], dict[str, Any]]:
    """``check_local_files``, scanning the files not scanned yet."""
    scanner, kind = SCANNERS[fmt], KINDS[fmt]
    with ThreadPoolExecutor(min(len(files), os.cpu_count() or 1) or 1) as pool:  # decompression and pyarrow
        scans = list(pool.map(lambda path: _readable(scanner, path), files))  # release the GIL: in parallel
    for s in scans:
        if s.bad and not s.rows:
            ex = s.first_bad[0]
            raise UserError(
                f"no valid record in {s.bad:,} {kind} ({_at(ex)}: {ex['reason']}); {EXPECTED[fmt]}", path=s.path
            )
    rows, bad = sum(s.rows for s in scans), sum(s.bad for s in scans)
    if bad > MAX_BAD_FRACTION * (rows + bad):
        ex = next(s.first_bad[0] for s in scans if s.bad)
        raise UserError(
            f"{bad:,} of {rows + bad:,} {kind} are bad records, more than "
            f"{MAX_BAD_FRACTION:.0%} (first: {ex['file']} {_at(ex)}: {ex['reason']}): "
            "fix or remove the broken file(s)",
            path=config_path,
            field="source.data_files",
        )
    if bad and (str(config_path), tuple(files)) not in _WARNED:  # once per source, however often it is opened
        _WARNED.add((str(config_path), tuple(files)))
        ex = next(s.first_bad[0] for s in scans if s.bad)
        log.warning(
            "%s: skipped %d bad record(s) of %d %s (first: %s %s: %s)",
            config_path,
            bad,
            rows + bad,
            kind,
            ex["file"],
            _at(ex),
            ex["reason"],
        )
    examples = [e for s in scans for e in s.first_bad][:FIRST_BAD]
    # pandas refuses a 0-byte CSV ("No columns to parse"): such a file holds no rows, leave it out.
    paths = [s.read_path for s in scans if fmt != "csv" or os.path.getsize(s.path)] if rows else []
    return paths, {"skipped": bad, "first": examples}


def source_bad_records(cfg, config_path: str | Path) -> dict[str, Any]:
    """The manifest's ``bad_records`` section of a dataset config: ``skipped`` (bad records left out of
    the whole source files: for parquet, those this process's stream found) and ``first`` (file, line or
    row group, reason of the first ``FIRST_BAD``)."""
    fmt = getattr(cfg.source, "format", None)
    if fmt not in SCANNERS:
        return {"skipped": 0, "first": []}
    return check_local_files(fmt, resolve_data_files(cfg, config_path), config_path)[1]


def skip_undecodable(err: Exception, cfg, config_path: str | Path) -> None:
    """After ``err`` stopped a stream of a local parquet source: decode its files' row groups (only now) and
    return when some cannot be decoded, so that the stream can be re-opened on the files' copies without
    them (``check_local_files`` gives those); a ``UserError`` past the thresholds. ``err`` is raised again
    when it is not a decoding failure, when the files were decoded already (the copies fail too: another
    cause), or when every row group decodes."""
    files = _with_rows("parquet", resolve_data_files(cfg, config_path))
    if not decoding_failure(err) or _all_scanned(files):
        raise err  # the environment, or the copies fail too
    if not _checked("parquet", files, config_path)[1]["skipped"]:
        raise err  # every row group decodes: something else failed


def guard_stream(tables: Iterator[Any], config_path: str | Path, hub: bool) -> Iterator[Any]:
    """``tables`` as they come; a file that fails to decode mid-stream (a malformed record of a Hub source,
    or a corrupt parquet page that ``skip_undecodable`` could not skip) becomes one ``UserError``."""
    try:
        yield from tables
    except Exception as err:
        if not decoding_failure(err):
            raise  # the environment (disk, permissions, memory): the CLI's one line for it; or a bug
        raise undecodable(err, config_path, hub) from None


def undecodable(err: BaseException, config_path: str | Path, hub: bool) -> UserError:
    """The one line for a source file that cannot be decoded, naming the file when ``datasets`` did."""
    name = READER_ERRORS.failed_file()
    where = f"{name}: " if name else "a source file "
    todo = (
        "a file of the repository is malformed: leave it out with source.data_files, or pin a revision where "
        "it is fixed"
        if hub
        else "replace or remove it"
    )
    return UserError(f"{where}cannot be decoded ({_what(err, 160)}); {todo}", path=config_path, field="source")


class _ReaderErrors(logging.Handler):
    """Keeps the last error ``datasets``' file readers log ("Failed to load JSON from file '...' with error
    ...") instead of printing it: the failure reaches the user as one error line (``undecodable``), which
    names the file from it."""

    FILE = re.compile(r"file '(?:[a-z]+://)?(?:[^':]*::)?([^']+)'")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()

    def failed_file(self) -> str | None:
        match = self.FILE.search(self.message or "")
        return match.group(1) if match else None


READER_ERRORS = _ReaderErrors()


def one_line_per_message() -> None:
    """``datasets`` and ``huggingface_hub`` print each log record through a stderr handler of their own and
    again through the root logger's (the CLI's): keep the root's only; keep ``datasets``' file-reader errors
    for the error line (``READER_ERRORS``); drop ``huggingface_hub``'s note on a README without metadata
    (the mirrors' and some Hub repositories': ``datasets`` then infers the layout, as documented)."""
    for name in ("datasets", "huggingface_hub"):
        lib = logging.getLogger(name)
        for handler in [h for h in lib.handlers if type(h) is logging.StreamHandler]:
            lib.removeHandler(handler)
    readers = logging.getLogger("datasets.packaged_modules")
    if READER_ERRORS not in readers.handlers:
        readers.addHandler(READER_ERRORS)
        readers.propagate = False
    logging.getLogger("huggingface_hub.repocard").setLevel(logging.ERROR)
