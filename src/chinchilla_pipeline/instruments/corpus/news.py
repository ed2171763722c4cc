"""One-document-per-line text (the Lee news corpus in gensim's test data) -> documents."""

from __future__ import annotations

from typing import Iterator


def line_documents(text: str) -> Iterator[dict]:
    """Each non-empty line is a document ``{text}``; whitespace collapsed, exact repeats dropped.

    ``lee_background.cor`` holds 300 lines, 7 of them repeats of another line.
    """
    seen: set[str] = set()
    for line in text.splitlines():
        doc = " ".join(line.split())
        if doc and doc not in seen:
            seen.add(doc)
            yield {"text": doc}
