"""Dataset and tokenizer-mix configs (JSON files, validated by pydantic).

Numbers are documents unless the name says tokens. Keys starting with ``_``
are comments; ``_target_tokens`` is the seed's informational target, copied to
the manifest with the distance from it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from ..counts import parse_token_count
from ..schema import StrictModel

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class HubSource(StrictModel):
    """A dataset loaded with ``datasets.load_dataset(path, name, split=..., streaming=True)``.

    ``path`` is a Hub id (``wikimedia/wikipedia``) or a local dataset directory:
    both go through the same call.
    """

    type: Literal["hub"]
    path: str = Field(min_length=1)
    name: Optional[str] = None  # subset, e.g. "20231101.en"
    split: str = "train"
    revision: Optional[str] = None  # pin a commit for reproducibility
    data_files: Optional[Union[str, list[str]]] = None


class LocalSource(StrictModel):
    """Local files read by the ``datasets`` builder of their format (compressed .gz/.zst too)."""

    type: Literal["local"]
    format: Literal["json", "parquet", "text", "csv"]
    data_files: list[str] = Field(min_length=1)  # paths or globs, relative to the working directory
    sample_by: Literal["line", "paragraph", "document"] = "document"  # format "text" only


Source = Annotated[Union[HubSource, LocalSource], Field(discriminator="type")]


class DatasetConfig(StrictModel):
    """One dataset: where its text comes from, how documents are formed, how much to keep."""

    name: str = Field(pattern=NAME_PATTERN)
    source: Source
    text_field: str = "text"
    # "{title}\n\n{text}" joins several fields; overrides text_field when set.
    text_template: Optional[str] = None
    # Rows per document: BookCorpus on the Hub is one sentence per row, so 1 row != 1 document.
    join_rows: PositiveInt = 1
    join_separator: str = " "
    min_chars: int = Field(default=0, ge=0)
    max_chars: Optional[PositiveInt] = None
    max_samples: Optional[PositiveInt] = None  # training documents kept (after filters)
    max_tokens: Optional[PositiveInt] = None  # training tokens kept (end-of-text included)
    target_tokens: Optional[int] = Field(default=None, alias="_target_tokens")
    seed: int = 42
    # Share of the source's documents kept, each by a seeded hash of its text (data/sampling.py). Below 1, every
    # file is read through: for a source in time order (Reddit's yearly files are in month order) it is the
    # only way to a sample of all of it. Parquet sources need none: they are read by row groups in random order.
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    # Documents held in the streaming shuffle buffer (10,000 of ~2 KB: ~20 MB); 0 keeps the source order.
    # A sampled source in time order needs one that holds its whole sample, so that its first documents (the
    # validation split) are drawn from all of it.
    shuffle_buffer: int = Field(default=10_000, ge=0)
    # The first validation_docs filtered documents of the shuffled stream are held out.
    validation_docs: int = Field(default=1_000, ge=0)
    # 100M tokens per shard = 200 MB of uint16.
    shard_tokens: PositiveInt = 100_000_000
    # Documents per batch read from the source (1,024 of ~2 KB: ~2 MB of text); the tokenizer workers
    # get the batch in ~1M-character chunks (data/encode.py).
    batch_docs: PositiveInt = 1_024

    @field_validator("target_tokens", mode="before")
    @classmethod
    def _parse_target(cls, v):
        return None if v is None else parse_token_count(v)

    @model_validator(mode="after")
    def _check_chars(self):
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) must be >= min_chars ({self.min_chars})")
        return self


class MixSource(StrictModel):
    """One source of the tokenizer's training mix: a dataset config and its share."""

    config: str = Field(min_length=1)  # path of a dataset config
    weight: float = Field(default=1.0, gt=0)
    max_samples: Optional[PositiveInt] = None  # overrides weight x total max_samples


class TokenizerMixConfig(StrictModel):
    """``config/tokenizer_mix.json``: a byte-level BPE trained on a weighted mix of sources."""

    vocab_size: int = Field(default=50_257, ge=260)  # GPT-2's size keeps "124M" meaning 124M
    min_frequency: PositiveInt = 2
    eot_token: str = "<|endoftext|>"
    max_samples: PositiveInt = 100_000  # documents in the whole mix, split by weight
    # Characters kept per document: caps the memory of the word counts on long books.
    max_chars_per_doc: PositiveInt = 100_000
    report_docs: int = Field(default=200, ge=1)  # validation documents per source measured by the report
    seed: int = 42
    sources: list[MixSource] = Field(min_length=1)

    def samples_per_source(self) -> list[int]:
        """Documents per source: explicit ``max_samples`` or the weight's share of the total."""
        total_w = sum(s.weight for s in self.sources)
        return [s.max_samples or max(1, round(self.max_samples * s.weight / total_w)) for s in self.sources]
