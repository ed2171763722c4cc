"""The local files a dataset config names: its globs expanded, sorted, each pattern required to match."""

from __future__ import annotations

import glob
from pathlib import Path

from ..errors import UserError
from .config import DatasetConfig


def resolve_data_files(cfg: DatasetConfig, config_path: str | Path) -> list[str]:
    """Expand the local source's globs (sorted); a pattern matching nothing is a ``UserError``."""
    files: list[str] = []
    for i, pattern in enumerate(cfg.source.data_files):
        matched = sorted(glob.glob(pattern, recursive=True))
        if not matched:
            raise UserError(
                f"no file matches {pattern!r} (expected existing {cfg.source.format} files)",
                path=config_path,
                field=f"source.data_files.{i}",
            )
        files.extend(matched)
    return files
