"""MediaWiki XML dump -> plain-text articles, one article per document.

The output mimics the Hub's ``wikimedia/wikipedia`` rows (``id``, ``title``, ``text``):
the text is the article body without markup, headings kept as plain lines, and the
trailing reference sections dropped. The stripper is regular expressions and a
brace matcher, not a full MediaWiki parser: templates are removed, not expanded
(``{{convert|5|km}}`` loses "5 km"), which costs a few words per article.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from typing import IO, Iterator

# Link prefixes whose target is not prose: the link is dropped with its caption.
_DROP_LINK_PREFIXES = ("file:", "image:", "category:", "media:", "wikt:")
# Sections after which an article holds only lists of sources and links.
_TAIL_SECTIONS = {
    "references",
    "external links",
    "see also",
    "further reading",
    "notes",
    "bibliography",
    "sources",
    "footnotes",
    "citations",
    "notes and references",
}
# HTML-like elements removed with their content (math and code do not read as prose).
_DROP_ELEMENTS = (
    "ref",
    "math",
    "gallery",
    "timeline",
    "score",
    "syntaxhighlight",
    "source",
    "imagemap",
    "references",
    "code",
    "chem",
)

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_SELF_CLOSING = re.compile(r"<(?:ref|references)\b[^>]*/>", re.I)
_ELEMENT = re.compile(r"<(%s)\b[^>]*>.*?</\1\s*>" % "|".join(_DROP_ELEMENTS), re.S | re.I)
_TEMPLATE = re.compile(r"\{\{(?:(?!\{\{|\}\}).)*\}\}", re.S)  # innermost {{...}}
_TABLE = re.compile(r"\{\|(?:(?!\{\||\|\}).)*\|\}", re.S)  # innermost {| ... |}
_LINK = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.S)  # innermost [[...]]; captions may hold [x]
_EXT_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*\b[^>]*>")
_HEADING = re.compile(r"^(={1,6})\s*(.*?)\s*\1\s*$", re.M)
_BOLD_ITALIC = re.compile(r"'{2,5}")
_MAGIC = re.compile(r"__[A-Z]+__")
_LIST_MARK = re.compile(r"^[*#:;]+\s*", re.M)


def _sub_until_stable(pattern: re.Pattern, repl, text: str) -> str:
    """Apply an innermost-first pattern until nothing matches (handles nesting)."""
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return new
        text = new


def _link_text(m: re.Match) -> str:
    inner = m.group(1)
    target, _, label = inner.partition("|")
    t = target.strip().lower()
    if t.startswith(_DROP_LINK_PREFIXES) or re.match(r"^[a-z]{2,3}(-[a-z]+)?:", t):
        return ""  # files, categories, interlanguage links
    if label:
        return label.split("|")[-1]  # [[File:x|thumb|caption]] handled above; piped link keeps its label
    return target.lstrip(":").split("#")[0] if not target.startswith("#") else target[1:]


def _drop_tail_sections(text: str) -> str:
    """Cut at the first heading that starts the references / links tail."""
    for m in _HEADING.finditer(text):
        if m.group(2).strip().lower() in _TAIL_SECTIONS:
            return text[: m.start()]
    return text


def strip_wiki_markup(wikitext: str) -> str:
    """Wikitext -> plain text: templates, tables, refs, files, categories and formatting removed.

    Links keep their visible text (``[[a|b]]`` -> ``b``, ``[[a]]`` -> ``a``), headings become
    plain lines, list markers are dropped, entities are decoded, blank runs collapse.
    """
    text = _COMMENT.sub("", wikitext)
    text = _SELF_CLOSING.sub("", text)
    text = _ELEMENT.sub("", text)
    text = _sub_until_stable(_TEMPLATE, "", text)
    text = _sub_until_stable(_TABLE, "", text)
    text = _drop_tail_sections(text)
    text = _sub_until_stable(_LINK, _link_text, text)
    text = _EXT_LINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub(r"\2", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _MAGIC.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    # Removed pronunciation templates leave "Asphalt (,, occasionally )": trim the separators
    # at the edges of parentheses, then drop the parentheses left empty.
    text = re.sub(r"\([ \t,;]+", "(", text)
    text = re.sub(r"[ \t,;]+\)", ")", text)
    text = text.replace("()", "")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    # Lines left as bare punctuation by removed templates (e.g. "," or "."), carry nothing.
    lines = [line for line in lines if not re.fullmatch(r"[\W_]{1,3}", line)]
    text = re.sub(r" +([,.;:])", r"\1", "\n".join(lines))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_pages(stream: IO[bytes]) -> Iterator[dict]:
    """Yield ``{id, title, ns, redirect, wikitext}`` per ``<page>`` of a MediaWiki export (streamed)."""
    for _, elem in ET.iterparse(stream, events=("end",)):
        if _local(elem.tag) != "page":
            continue
        page = {"id": "", "title": "", "ns": "", "redirect": False, "wikitext": ""}
        for child in elem:
            name = _local(child.tag)
            if name in ("id", "title", "ns"):
                page[name] = (child.text or "").strip()
            elif name == "redirect":
                page["redirect"] = True
            elif name == "revision":
                for r in child:
                    if _local(r.tag) == "text":
                        page["wikitext"] = r.text or ""
        elem.clear()
        yield page


def wiki_documents(stream: IO[bytes], min_chars: int = 1) -> Iterator[dict]:
    """Articles (namespace 0, not redirects) as ``{id, title, text}`` with the markup stripped."""
    for page in iter_pages(stream):
        if page["ns"] != "0" or page["redirect"] or page["wikitext"].lstrip().upper().startswith("#REDIRECT"):
            continue
        text = strip_wiki_markup(page["wikitext"])
        if len(text) >= min_chars:
            yield {"id": page["id"], "title": page["title"], "text": text}
