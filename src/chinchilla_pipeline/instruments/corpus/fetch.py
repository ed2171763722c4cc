"""Fetch pinned archives with ``pip download`` into a cache, verify their sha256, read their members.

pip is the one client every Python machine has, and PyPI the one registry it reaches;
a file already in the cache with the pinned sha256 is used as is, offline.
"""

from __future__ import annotations

import fnmatch
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ...atomic import sha256_file
from ...errors import UserError
from .config import Archive


def pip_download_command(archive: Archive, dest: Path) -> list[str]:
    """The ``pip download`` call that fetches exactly ``archive.file`` (no dependencies)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        *archive.pip_args,
        archive.requirement,
        "-d",
        str(dest),
    ]


def fetch_archive(name: str, archive: Archive, cache_dir: Path, config_path: str | Path) -> Path:
    """Path of the verified archive in ``cache_dir``, downloading it if missing or corrupt."""
    path = cache_dir / archive.file
    if path.is_file() and sha256_file(path) == archive.sha256:
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"  fetching {archive.requirement} with pip ...", flush=True)
    # Download into a fresh folder, then move the one pinned file into place: the cache
    # never holds a half-written or unverified archive under its final name.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pip-") as tmp:
        proc = subprocess.run(pip_download_command(archive, Path(tmp)), capture_output=True, text=True)
        got = Path(tmp) / archive.file
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            saved = sorted(p.name for p in Path(tmp).iterdir())
            raise UserError(
                f"pip download {archive.requirement} did not produce {archive.file} (saved {saved}; pip: {tail[0]})",
                path=config_path,
                field=f"archives.{name}.file",
            )
        digest = sha256_file(got)
        if digest != archive.sha256:
            raise UserError(
                f"sha256 of {archive.file} is {digest}, expected {archive.sha256}",
                path=config_path,
                field=f"archives.{name}.sha256",
            )
        got.replace(path)
    return path


class ArchiveReader:
    """Read members of a wheel (zip) or sdist (tar.gz) by exact path or glob, without extracting to disk.

    ``data`` reads an archive held in memory (one nested inside another); ``path`` then only names it.
    """

    def __init__(self, path: Path | str, data: bytes | None = None):
        self.path = path
        source = io.BytesIO(data) if data is not None else path
        if zipfile.is_zipfile(source):
            self._zip = zipfile.ZipFile(source)
            self.names = sorted(i.filename for i in self._zip.infolist() if not i.is_dir())
            self._tar = None
        else:
            if data is None:
                self._tar = tarfile.open(path, "r:*")
            else:
                source.seek(0)  # is_zipfile moved it
                self._tar = tarfile.open(fileobj=source, mode="r:*")
            self.names = sorted(m.name for m in self._tar.getmembers() if m.isfile())
            self._zip = None

    def open_inner(self, name: str) -> "ArchiveReader":
        """The archive stored as member ``name`` (e.g. a tar.gz of data files inside an sdist)."""
        return ArchiveReader(f"{self.path}!{name}", data=self.read(name))

    def match(self, patterns: list[str]) -> list[str]:
        """Member names matching the patterns, in pattern order then sorted; each pattern must match."""
        out: list[str] = []
        for pattern in patterns:
            hits = [n for n in self.names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise UserError(f"no member matches {pattern!r}", path=self.path)
            out.extend(h for h in hits if h not in out)
        return out

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        f = self._tar.extractfile(name)
        if f is None:
            raise UserError(f"member {name!r} is not a regular file", path=self.path)
        return f.read()

    def close(self) -> None:
        (self._zip or self._tar).close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
