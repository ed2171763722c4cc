"""HellaSwag validation items: read and check the official jsonl, or download it.

The official file is ``data/hellaswag_val.jsonl`` of rowanz/hellaswag: 10,042 lines,
one JSON object each (``ind``, ``activity_label``, ``ctx_a``, ``ctx_b``, ``ctx``,
``split``, ``split_type``, ``label``, ``endings``, ``source_id``). Scoring reads
``ctx``, the four ``endings`` and ``label`` (0-3). The file is identified by its
git blob id (sha1 of ``b"blob <size>\\0" + content``, what ``git hash-object``
prints), the id it has in rowanz/hellaswag (commit a29ff8e): a download that
differs is refused, and a local file is reported as official or not.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_open
from ..errors import UserError

OFFICIAL_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
OFFICIAL_GIT_BLOB = "0f5ee25d72216f12317d5d8a7b92deafa423d81e"
VALIDATION_ITEMS = 10_042
# acc_norm on all VALIDATION_ITEMS, completion style (sources: docs/references.md); chance is 25%
PUBLISHED_124M = "GPT-2 124M 29.4%, llm.c 124M at 10B tokens ~29.9%, GPT-3 124M 33.7%"
DEFAULT_PATH = "data/hellaswag/hellaswag_val.jsonl"
NUM_ENDINGS = 4


@dataclass(frozen=True)
class Item:
    """One multiple-choice item: the context, four candidate endings, the index of the right one."""

    ctx: str
    endings: tuple[str, ...]
    label: int


def git_blob_id(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """The file's git blob id (hex sha1 of the header ``blob <size>\\0`` and the content)."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def parse_item(line: str, n: int, path: Path) -> Item:
    """Line ``n`` of ``path`` as an ``Item``; anything else than the official schema is a ``UserError``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise UserError(f"line {n} is not JSON (expected one HellaSwag item per line)", path=path) from None
    if not isinstance(obj, dict):
        raise UserError(f"line {n} is not a JSON object", path=path)
    ctx, endings, label = obj.get("ctx"), obj.get("endings"), obj.get("label")
    if not (isinstance(ctx, str) and ctx.strip()):
        raise UserError(f"line {n}: expected a non-empty string", path=path, field="ctx")
    if not (isinstance(endings, list) and len(endings) == NUM_ENDINGS and all(isinstance(e, str) for e in endings)):
        raise UserError(f"line {n}: expected a list of {NUM_ENDINGS} strings", path=path, field="endings")
    if isinstance(label, str) and label.isdigit():  # some copies store the label as "0".."3"
        label = int(label)
    if not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < NUM_ENDINGS):
        raise UserError(f"line {n}: expected an integer 0-3, got {label!r}", path=path, field="label")
    return Item(ctx, tuple(endings), label)


def read_items(path: str | Path, max_items: int | None = None) -> list[Item]:
    """The first ``max_items`` items of a HellaSwag jsonl (all when None); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such HellaSwag file", path=path)
    items: list[Item] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if max_items is not None and len(items) >= max_items:
                break
            if line.strip():
                items.append(parse_item(line, n, path))
    if not items:
        raise UserError("holds no HellaSwag item", path=path)
    return items


def download(
    dest: str | Path, url: str = OFFICIAL_URL, expected_blob: str | None = OFFICIAL_GIT_BLOB, timeout_s: float = 60
) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar; check its git blob id.

    No network, or a file that is not the expected one, is a ``UserError``; ``dest``
    is then left as it was (nothing half-written).
    """
    from tqdm import tqdm

    dest = Path(dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, atomic_open(dest, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"cannot download the HellaSwag validation set from {url} ({reason}): offline? Download "
            f"it on a connected machine and pass its path with --hellaswag_path (alias --data)",
            path=dest,
        ) from None
    if expected_blob is not None and (got := git_blob_id(dest)) != expected_blob:
        dest.unlink()
        raise UserError(
            f"the download from {url} is not the official file (git blob {got[:12]}, expected "
            f"{expected_blob[:12]}); removed",
            path=dest,
        )
    return dest


def ensure_data(path: str | Path, url: str = OFFICIAL_URL) -> Path:
    """``path`` if it is a file, else the official validation set downloaded there."""
    path = Path(path)
    if path.is_dir():
        raise UserError("is a directory; expected the HellaSwag validation jsonl (e.g. hellaswag_val.jsonl)", path=path)
    return path if path.is_file() else download(path, url, OFFICIAL_GIT_BLOB if url == OFFICIAL_URL else None)
