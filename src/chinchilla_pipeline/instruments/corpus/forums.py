"""Dialogues and Usenet posts -> forum-style documents.

- ChatterBot's YAML corpus: one conversation = one document, its turns alternating
  between two speakers, written ``A: ...`` / ``B: ...``, one turn per line.
- The 20 Newsgroups sample gensim ships (a zlib-compressed pickle of a scikit-learn
  ``Bunch``): one post = one document, the transport headers dropped but the subject
  kept as the first line, the body (quotes and signatures included) as posted.
- VADER's rated snippets (``ID<TAB>rating<TAB>text``, one per line): tweets are one line
  each (``ID`` = ``17``); customer reviews come one sentence a line (``ID`` = ``review_sentence``,
  ``12_1``, ``12_2`` ...), and a review's consecutive sentences are joined into one document.
"""

from __future__ import annotations

import html
import io
import pickle
import re
import zlib
from typing import Iterable, Iterator

import yaml

SPEAKERS = ("A", "B")


def format_dialogue(turns: Iterable[str]) -> str:
    """Turns -> ``"A: first\\nB: second\\nA: third"``; whitespace inside a turn collapses."""
    lines = []
    for i, turn in enumerate(turns):
        text = " ".join(str(turn).split())
        if text:
            lines.append(f"{SPEAKERS[i % 2]}: {text}")
    return "\n".join(lines)


def chatterbot_documents(files: Iterable[tuple[str, str]]) -> Iterator[dict]:
    """``(name, yaml text)`` pairs -> ``{category, text}`` per conversation, exact repeats dropped.

    The YAML is read with ``BaseLoader`` so every scalar stays a string: the safe loader
    would turn a turn such as ``- Yes`` or ``- No`` into a boolean.
    """
    seen: set[str] = set()
    for name, text in files:
        data = yaml.load(text, Loader=yaml.BaseLoader) or {}
        categories = data.get("categories") or [name]
        for conversation in data.get("conversations") or []:
            if not isinstance(conversation, list) or len(conversation) < 2:
                continue  # a lone line is not a dialogue
            doc = format_dialogue(conversation)
            if doc not in seen:
                seen.add(doc)
                yield {"category": str(categories[0]), "text": doc}


class _Ignored:
    """Stands in for numpy arrays in the pickle (the labels), which the corpus does not need."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _Bunch(dict):
    pass


def _reconstructor(cls, base, state):
    obj = cls()
    if state:
        obj.update(state)
    return obj


class _NewsgroupsUnpickler(pickle.Unpickler):
    """Resolves only the names a pickled scikit-learn ``Bunch`` of strings uses; anything else is refused."""

    _ALLOWED = {
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("sklearn.datasets.base", "Bunch"): _Bunch,
        ("sklearn.utils", "Bunch"): _Bunch,
        ("__builtin__", "dict"): dict,
        ("builtins", "dict"): dict,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("numpy.core.multiarray", "_reconstruct"): _Ignored,
        ("numpy", "ndarray"): _Ignored,
        ("numpy", "dtype"): _Ignored,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def load_newsgroups(blob: bytes) -> list[str]:
    """The posts (``data``) of gensim's ``mini_newsgroup`` test file, without running foreign code."""
    bunch = _NewsgroupsUnpickler(io.BytesIO(zlib.decompress(blob)), encoding="latin1").load()
    return [str(p) for p in bunch["data"]]


def usenet_post_text(raw: str) -> str:
    """A Usenet post: the header block dropped except ``Subject``, then the body."""
    raw = raw.replace("\r\n", "\n")
    head, sep, body = raw.partition("\n\n")
    if not sep or not re.match(r"^[A-Za-z-]+:", head):
        head, body = "", raw  # no header block
    subject = ""
    for line in head.split("\n"):
        if line.lower().startswith("subject:"):
            subject = line.split(":", 1)[1].strip()
    body = re.sub(r"[ \t]+$", "", body.strip("\n"), flags=re.M)
    body = re.sub(r"\n{3,}", "\n\n", body)
    return f"{subject}\n\n{body}" if subject else body


def usenet_documents(posts: Iterable[str]) -> Iterator[dict]:
    """Posts -> ``{text}``, empty and exactly repeated posts dropped."""
    seen: set[str] = set()
    for raw in posts:
        text = usenet_post_text(raw)
        if text.strip() and text not in seen:
            seen.add(text)
            yield {"text": text}


def rated_snippet_documents(text: str) -> Iterator[dict]:
    """``ID<TAB>rating<TAB>text`` lines -> ``{text}``, one per ID before ``_``; entities decoded, repeats dropped."""
    seen: set[str] = set()
    key, sentences = None, []

    def flush():
        doc = " ".join(sentences)
        if doc and doc not in seen:
            seen.add(doc)
            return {"text": doc}
        return None

    for line in text.splitlines():
        fields = line.split("\t", 2)
        if len(fields) < 3:
            continue
        doc_id = fields[0].strip().split("_", 1)[0]
        if doc_id != key:
            if (doc := flush()) is not None:
                yield doc
            key, sentences = doc_id, []
        sentence = " ".join(html.unescape(fields[2]).split())
        if sentence:
            sentences.append(sentence)
    if (doc := flush()) is not None:
        yield doc
