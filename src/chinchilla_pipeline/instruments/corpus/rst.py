"""reStructuredText documentation pages (Sphinx, e.g. Django's ``docs/``) -> plain prose documents.

One page is one document ``{text}``, read like a web page: the page title first, then
headings as plain lines, paragraphs unwrapped onto one line, list items one per line.
What does not read as prose goes: code (``.. code-block::``, ``.. console::``, literal
blocks after ``::``, ``>>>`` sessions), tables of contents, images, comments, link
targets, directive options and section underlines. Inline markup keeps its visible
text: ``:class:`~django.db.models.Model``` -> ``Model``, ``:doc:`the guide </x>``` ->
``the guide``, ```` ``literal`` ```` -> ``literal``, ``*emphasis*`` -> ``emphasis``.
Line-by-line rules and regular expressions, not a reST parser: tables keep their cells
as text, and an unlabelled ``:ref:`` shows its label, not the section title it names. Documents
carry ``text`` only, the columns of the Lee news corpus they share a dataset with (the JSON loader
refuses files whose columns differ).
"""

from __future__ import annotations

import re
from typing import Iterator

from .books import normalize_newlines

# Directives dropped with their whole block (code, navigation, pictures, tables of data).
DROP_DIRECTIVES = frozenset(
    {
        "code-block",
        "code",
        "sourcecode",
        "console",
        "parsed-literal",
        "literalinclude",
        "include",
        "raw",
        "toctree",
        "image",
        "figure",
        "module",
        "currentmodule",
        "index",
        "contents",
        "highlight",
        "program",
        "csv-table",
        "list-table",
        "table",
        "only",
        "doctest",
        "testcode",
        "testoutput",
        "testsetup",
        "math",
        "default-role",
        "autoclass",
        "automodule",
        "autofunction",
    }
)
# Directives whose argument is a title worth a line of its own; any other kept directive
# (note, warning, versionadded, class, method, setting, ...) keeps its body only.
TITLED_DIRECTIVES = frozenset({"admonition", "rubric", "topic", "sidebar"})
# Roles whose bare target reads better with a prefix: :ticket:`123` -> "#123".
ROLE_PREFIX = {"ticket": "#", "rfc": "RFC ", "pep": "PEP ", "cve": "CVE-"}

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([A-Za-z][\w:.+-]*)::\s*(.*)$")
_EXPLICIT = re.compile(r"^\s*\.\.(?:\s|$)")  # comments, link targets, footnotes, substitutions
_OPTION = re.compile(r"^\s+:[\w-]+:")
_ADORNMENT = re.compile(r"^\s*([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_TABLE_BORDER = re.compile(r"^\s*(?:=+(?:\s+=+)+|-+(?:\s+-+)+|\+(?:[-=]+\+)+)\s*$")
_LIST_ITEM = re.compile(r"^(?:[*+\-•]|\d+[.)]|#\.|\(?[A-Za-z0-9]\))\s+")
_LITERAL = re.compile(r"``(.+?)``", re.S)
_INTERPRETED = re.compile(r"(?::(?P<role>[\w.+-]+(?::[\w.+-]+)*):)?`(?P<body>[^`]+)`(?:__?)?")
_TARGET = re.compile(r"^(.*?)\s*<([^<>]*)>$", re.S)
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S)
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])", re.S)
_FOOTNOTE_REF = re.compile(r"\s?\[(?:\d+|#[\w-]*|\*)\]_")
_ESCAPE = re.compile(r"\\(.)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index after the block of lines indented deeper than ``indent`` that starts at ``start``."""
    end = j = start
    while j < len(lines):
        if lines[j].strip():
            if _indent(lines[j]) <= indent:
                break
            end = j + 1
        j += 1
    return end


def strip_blocks(text: str) -> list[str]:
    """Lines left after dropping code, directives' markup, comments, targets and adornments."""
    lines = normalize_newlines(text).expandtabs(8).split("\n")
    out: list[str] = []
    para_indent = 0  # indent of the current paragraph's first line
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            out.append("")
            i += 1
            continue
        indent = _indent(line)
        if not out or not out[-1].strip():
            para_indent = indent
        directive = _DIRECTIVE.match(line)
        if directive:
            name, arg = directive.group(2).lower(), directive.group(3).strip()
            if name in DROP_DIRECTIVES:
                i = _block_end(lines, i + 1, indent)
                continue
            if name in TITLED_DIRECTIVES and arg:
                out.extend([line[:indent] + arg, ""])
            i += 1
            while i < len(lines) and _OPTION.match(lines[i]):
                i += 1
            continue
        if _EXPLICIT.match(line):
            i = _block_end(lines, i + 1, indent)
            continue
        if line.lstrip().startswith(">>>"):
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        if _ADORNMENT.match(line) or _TABLE_BORDER.match(line):
            i += 1
            continue
        stripped = line.rstrip()
        if stripped.endswith("::"):  # "Text::" -> "Text:", "Text ::" -> "Text", "::" -> nothing; block dropped
            head = stripped[:-2]
            if head.strip():
                out.append(head.rstrip() if head.endswith(" ") else head + ":")
            i = _block_end(lines, i + 1, para_indent)
            continue
        out.append(stripped)
        i += 1
    return out


def unwrap(lines: list[str]) -> str:
    """Join each paragraph's lines into one; list items and deeper-indented lines start a new line."""
    result: list[str] = []
    text_indent = None  # where the previous line's text starts, None after a blank line
    for line in lines:
        if not line.strip():
            if result and result[-1]:
                result.append("")
            text_indent = None
            continue
        indent, body = _indent(line), line.strip()
        item = _LIST_ITEM.match(body)
        if result and result[-1] and not item and indent == text_indent:
            result[-1] += " " + body
        else:
            result.append(body)
            text_indent = indent + (item.end() if item else 0)
    return "\n".join(result)


def _interpreted(m: re.Match) -> str:
    role, body = (m.group("role") or "").split(":")[-1], " ".join(m.group("body").split())
    target = _TARGET.match(body)
    if target:
        return target.group(1) or target.group(2)  # "title <target>" -> title; "<url>" -> url
    body = body.lstrip("!")
    if body.startswith("~"):
        body = body[1:].rsplit(".", 1)[-1]
    if role == "ref":
        body = body.replace("-", " ")
    elif role == "doc":
        body = body.rstrip("/").rsplit("/", 1)[-1].replace("-", " ").replace("_", " ")
    return ROLE_PREFIX.get(role, "") + body


def strip_inline(text: str) -> str:
    """Inline markup -> its visible text (literals keep their content verbatim)."""
    parts = _LITERAL.split(text)
    for k in range(0, len(parts), 2):  # even parts are outside ``literals``
        s = _INTERPRETED.sub(_interpreted, parts[k])
        s = _STRONG.sub(r"\1", s)
        s = _EMPHASIS.sub(r"\1", s)
        s = _FOOTNOTE_REF.sub("", s)
        parts[k] = _ESCAPE.sub(lambda e: "" if e.group(1).isspace() else e.group(1), s)
    return "".join(parts)


def strip_rst(text: str) -> str:
    """A reST page -> plain text: headings as lines, paragraphs on one line, code and markup gone."""
    text = strip_inline(unwrap(strip_blocks(text)))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def rst_documents(text: str) -> Iterator[dict]:
    """One page -> ``{text}``; nothing when no prose is left."""
    body = strip_rst(text)
    if body:
        yield {"text": body}
