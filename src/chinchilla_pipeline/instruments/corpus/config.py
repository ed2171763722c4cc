"""``config/demo/corpus.json``: pinned PyPI archives and how each demo source is read from them."""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, PositiveInt, field_validator, model_validator

from ...data.config import NAME_PATTERN
from ...schema import StrictModel

# What a part's reader turns into documents (see the modules of this package).
Reader = Literal[
    "mediawiki_xml_bz2", "gutenberg", "lines", "chatterbot_yaml", "newsgroups_pickle", "rst_docs", "rated_snippets"
]


class Archive(StrictModel):
    """One file that ``pip download`` fetches, pinned by name, version, file name and sha256."""

    requirement: str = Field(pattern=r"^[A-Za-z0-9._-]+==[A-Za-z0-9._+-]+$")  # "gensim==4.4.0"
    file: str = Field(min_length=1)  # the exact wheel or sdist name pip saves
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Extra ``pip download`` flags that select that one file whatever the local Python:
    # a platform wheel needs --platform/--python-version/--implementation/--abi.
    pip_args: list[str] = Field(default_factory=list)
    licence: str = Field(min_length=1)  # of the package (the texts' own licences are per source)


class Part(StrictModel):
    """Files of one archive read by one reader; members are paths or globs inside the archive."""

    archive: str
    reader: Reader
    members: list[str] = Field(min_length=1)
    # A tar.gz or zip member of the archive (data packed inside an sdist); members are then inside it.
    inner_archive: Optional[str] = None
    encoding: str = "utf-8"
    # gutenberg: INI files naming each book ("[hamlet_gut] title = Hamlet"); chunk size in characters.
    metadata: list[str] = Field(default_factory=list)
    max_chars_per_doc: Optional[PositiveInt] = None


class CorpusSource(StrictModel):
    """One output corpus, ``<name>.jsonl.gz``, made of one or more parts."""

    name: str = Field(pattern=NAME_PATTERN)
    stands_for: str = Field(min_length=1)  # the full run's source it replaces in the demo
    licence: str = Field(min_length=1)  # of the texts themselves
    parts: list[Part] = Field(min_length=1)


class CorpusConfig(StrictModel):
    archives: dict[str, Archive] = Field(min_length=1)
    sources: list[CorpusSource] = Field(min_length=1)

    @field_validator("archives")
    @classmethod
    def _archive_names(cls, v):
        for name in v:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"archive name {name!r} must match {NAME_PATTERN}")
        return v

    @model_validator(mode="after")
    def _parts_name_known_archives(self):
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        for s in self.sources:
            for p in s.parts:
                if p.archive not in self.archives:
                    raise ValueError(
                        f"source {s.name!r} reads archive {p.archive!r}, "
                        f"which 'archives' does not define ({sorted(self.archives)})"
                    )
        return self
