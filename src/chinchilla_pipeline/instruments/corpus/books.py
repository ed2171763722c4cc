"""Project Gutenberg books -> documents: boilerplate stripped, split into chunks on paragraph boundaries.

Why chunks: a book is 100-500 KB, and a split that holds out whole documents would hold
out whole books. Each book is cut into consecutive chunks of at most ``max_chars``
characters on blank-line boundaries; 10,000 characters is about 2,500 tokens at ~4
characters per token, the seed's assumed document length. A single paragraph longer
than the limit is cut on line boundaries (and a single overlong line stays whole).
"""

from __future__ import annotations

import configparser
import re
from typing import Iterator

DEFAULT_MAX_CHARS = 10_000

# Project Gutenberg's markers. Current files: "*** START OF THE PROJECT GUTENBERG EBOOK X ***"
# and "*** END OF THE PROJECT GUTENBERG EBOOK X ***"; 1990s files end the licence header
# with "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*...*END*" and close with
# "End of the Project Gutenberg Etext of X" or "End of Project Gutenberg's X".
_START = re.compile(
    r"^\s*(?:\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*|\*END\*THE SMALL PRINT!.*)$",
    re.I | re.M,
)
_END = re.compile(
    r"^\s*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*|End of (?:the )?Project Gutenberg.*)$",
    re.I | re.M,
)
# Verse line numbers printed every 5 or 10 lines at the right margin ("... fled,        10").
_LINE_NUMBER = re.compile(r"(?<=\S)[ \t]{2,}\d{1,4}[ \t]*$", re.M)


def normalize_newlines(text: str) -> str:
    """CRLF / CR -> LF, trailing spaces removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[ \t]+$", "", text, flags=re.M)


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's start and end markers (the whole text if it has none)."""
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip("\n")


def strip_line_numbers(text: str) -> str:
    """Remove verse line numbers set at the end of a line after two or more spaces."""
    return _LINE_NUMBER.sub("", text)


def split_chunks(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Consecutive chunks of at most ``max_chars`` characters, cut on blank lines (else on lines)."""
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    for p in paragraphs:
        if len(p) <= max_chars:
            pieces.append(p)
        else:
            pieces.extend(_pack(p.split("\n"), max_chars, "\n"))
    return _pack(pieces, max_chars, "\n\n")


def _pack(parts: list[str], max_chars: int, sep: str) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for part in parts:
        extra = len(part) + (len(sep) if current else 0)
        if current and size + extra > max_chars:
            chunks.append(sep.join(current))
            current, size = [], 0
            extra = len(part)
        current.append(part)
        size += extra
    if current:
        chunks.append(sep.join(current))
    return chunks


def read_titles(metadata_ini: str) -> dict[str, str]:
    """``{section: title}`` from an Open Shakespeare ``metadata.txt`` (INI: ``[hamlet_gut] title = Hamlet``)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(metadata_ini)
    return {s: parser[s].get("title", "").strip() for s in parser.sections()}


def book_documents(text: str, *, title: str, max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[dict]:
    """One book's documents: ``{title, part, text}``, ``part`` counting from 0."""
    body = strip_line_numbers(strip_gutenberg(normalize_newlines(text)))
    for i, chunk in enumerate(split_chunks(body, max_chars)):
        yield {"title": title, "part": i, "text": chunk}
