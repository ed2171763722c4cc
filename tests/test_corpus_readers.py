"""The demo corpus readers on small inputs written with the real formats' markup."""

from __future__ import annotations

import bz2
import io
import pickle
import zlib

import pytest

from chinchilla_pipeline.instruments.corpus.books import (
    book_documents,
    normalize_newlines,
    read_titles,
    split_chunks,
    strip_gutenberg,
    strip_line_numbers,
)
from chinchilla_pipeline.instruments.corpus.forums import (
    chatterbot_documents,
    format_dialogue,
    load_newsgroups,
    rated_snippet_documents,
    usenet_documents,
    usenet_post_text,
)
from chinchilla_pipeline.instruments.corpus.news import line_documents
from chinchilla_pipeline.instruments.corpus.rst import rst_documents, strip_blocks, strip_inline, strip_rst, unwrap
from chinchilla_pipeline.instruments.corpus.wiki import strip_wiki_markup, wiki_documents

# ----------------------------------------------------------------- Wikipedia

ARTICLE = """{{Use dmy dates|date=July 2014}}
{{Infobox country
| name = Ruritania
| capital = {{nowrap|Strelsau}}
}}
'''Ruritania''' (<small>German:</small> ''Ruritanien'') is a [[fictional country|fictitious]] kingdom<ref name="hope">{{cite book|title=The Prisoner of Zenda|year=1894}}</ref> in [[Central Europe]].<ref>Hope, p. 3.</ref> Its area is {{convert|5|km2}}.
[[File:Map of Ruritania.png|thumb|right|A map showing [[Strelsau]] [above] and the border]]

== History ==
The kingdom was described by [[Anthony Hope]] in 1894.<!-- hidden note -->
{| class="wikitable"
|-
! Year !! King
|-
| 1894 || Rudolf V
|}
* First item with [http://example.org an external link]
* Second item &ndash; with an entity&nbsp;here
The capital has <math>x^2</math> no equations.

== See also ==
* [[Graustark]]

== References ==
{{Reflist}}

[[Category:Fictional countries]]
[[de:Ruritanien]]
"""


def _dump(pages: list[tuple[str, str, str, bool]]) -> bytes:
    parts = [
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">',
        "<siteinfo><sitename>Wikipedia</sitename></siteinfo>",
    ]
    for page_id, title, ns, body, redirect in [(str(i + 1), *p) for i, p in enumerate(pages)]:
        esc = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts.append(
            f"<page><title>{title}</title><ns>{ns}</ns><id>{page_id}</id>"
            + (f'<redirect title="{title}x" />' if redirect else "")
            + f'<revision><id>9</id><text xml:space="preserve">{esc}</text></revision></page>'
        )
    parts.append("</mediawiki>")
    return bz2.compress("\n".join(parts).encode("utf-8"))


def test_strip_wiki_markup_keeps_the_prose():
    text = strip_wiki_markup(ARTICLE)
    assert text.startswith("Ruritania (German: Ruritanien) is a fictitious kingdom in Central Europe.")
    assert "Its area is." in text  # the {{convert}} template is removed, not expanded
    assert "History\nThe kingdom was described by Anthony Hope in 1894." in text
    assert "First item with an external link" in text
    assert "Second item – with an entity here" in text
    assert "The capital has no equations." in text
    for residue in (
        "{{",
        "}}",
        "[[",
        "]]",
        "'''",
        "''",
        "<ref",
        "wikitable",
        "Rudolf",
        "==",
        "thumb",
        "Map of",
        "Category",
        "Ruritanien]]",
        "hidden note",
        "Graustark",
        "Reflist",
        "x^2",
        "&",
    ):
        assert residue not in text, residue


def test_wiki_documents_skip_redirects_and_other_namespaces():
    dump = _dump(
        [
            ("Ruritania", "0", ARTICLE, False),
            ("Zenda", "0", "#REDIRECT [[Ruritania]]", True),
            ("Old name", "0", "#redirect [[Ruritania]]", False),  # a redirect without the <redirect/> element
            ("Wikipedia:About", "4", "A project page.", False),
            ("Strelsau", "0", "'''Strelsau''' is the capital of [[Ruritania]].", False),
        ]
    )
    docs = list(wiki_documents(io.BytesIO(bz2.decompress(dump))))
    assert [d["title"] for d in docs] == ["Ruritania", "Strelsau"]
    assert docs[1] == {"id": "5", "title": "Strelsau", "text": "Strelsau is the capital of Ruritania."}


# ----------------------------------------------------------------- books

GUTENBERG = """The Project Gutenberg EBook of Hamlet, by William Shakespeare\r
\r
This eBook is for the use of anyone anywhere at no cost.\r
\r
*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r
\r
HAMLET, PRINCE OF DENMARK\r
\r
ACT I.\r
\r
Ber.\r
Who's there?\r
\r
*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r
\r
This file should be named 2ws2610.txt. Updated editions will replace the previous one.\r
"""

OLD_GUTENBERG = """**The Project Gutenberg Etext of Paradise Regained**
Please take a look at the important information in this header.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

PARADISE REGAINED

I, WHO erewhile the happy Garden sung

End of the Project Gutenberg Etext of Paradise Regained
"""


def test_strip_gutenberg_boilerplate_current_and_1990s_markers():
    assert strip_gutenberg(normalize_newlines(GUTENBERG)) == (
        "HAMLET, PRINCE OF DENMARK\n\nACT I.\n\nBer.\nWho's there?"
    )
    assert strip_gutenberg(OLD_GUTENBERG) == "PARADISE REGAINED\n\nI, WHO erewhile the happy Garden sung"
    plain = "A text that never was on Gutenberg.\n\nSecond paragraph."
    assert strip_gutenberg(plain) == plain


def test_strip_line_numbers_only_at_the_right_margin():
    verse = (
        "By proof the undoubted Son of God, inspire,        10\n"
        "In 1667 the poem was printed\n"
        "Repentance, and Heaven's kingdom nigh at hand               20\n"
    )
    assert strip_line_numbers(verse) == (
        "By proof the undoubted Son of God, inspire,\n"
        "In 1667 the poem was printed\n"
        "Repentance, and Heaven's kingdom nigh at hand\n"
    )


def test_split_chunks_on_paragraph_boundaries():
    paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(10)]  # ~165 characters each
    chunks = split_chunks("\n\n".join(paragraphs), max_chars=400)
    assert all(len(c) <= 400 for c in chunks)
    assert "\n\n".join(chunks) == "\n\n".join(p.strip("\n") for p in paragraphs)  # nothing lost or reordered
    assert len(chunks) == 5  # two paragraphs per chunk
    # A paragraph longer than the limit is cut on its lines.
    long_para = "\n".join(f"line {i} of a long speech" for i in range(40))
    pieces = split_chunks(long_para, max_chars=200)
    assert len(pieces) > 1 and all(len(p) <= 200 for p in pieces)
    assert "\n".join(pieces) == long_para


def test_book_documents_and_titles():
    titles = read_titles(
        "[hamlet_gut]\nurl = http://www.gutenberg.org/dirs/etext98/2ws2610.txt\n"
        "title = Hamlet, Prince of Denmark\n\n[sonnets_gut]\ntitle = The Sonnets\n"
    )
    assert titles == {"hamlet_gut": "Hamlet, Prince of Denmark", "sonnets_gut": "The Sonnets"}
    docs = list(book_documents(GUTENBERG, title=titles["hamlet_gut"], max_chars=30))
    assert [d["part"] for d in docs] == list(range(len(docs)))
    assert docs[0] == {"title": "Hamlet, Prince of Denmark", "part": 0, "text": "HAMLET, PRINCE OF DENMARK"}
    assert not any("Gutenberg" in d["text"] or "\r" in d["text"] for d in docs)


# ----------------------------------------------------------------- forums and news

CHATTERBOT_YAML = """categories:
- greetings
conversations:
- - Hello
  - Hi
  - How are you doing?
- - Are you a robot?
  - Yes
- - Hello
  - Hi
  - How are you doing?
- - A lone line is not a conversation
- - It's not your powers of observation I doubt, but merely the paradoxical nature
    of asking a masked man who is.
  - No
"""


def test_format_dialogue_alternates_speakers():
    assert format_dialogue(["Hello", "Hi  there", "Bye\n now"]) == "A: Hello\nB: Hi there\nA: Bye now"


def test_chatterbot_documents_keep_yes_no_as_text_and_drop_repeats():
    docs = list(chatterbot_documents([("greetings", CHATTERBOT_YAML)]))
    assert [d["text"] for d in docs] == [
        "A: Hello\nB: Hi\nA: How are you doing?",
        "A: Are you a robot?\nB: Yes",  # the safe loader would have made this True
        "A: It's not your powers of observation I doubt, but merely the paradoxical nature "
        "of asking a masked man who is.\nB: No",
    ]
    assert {d["category"] for d in docs} == {"greetings"}


POST = """Path: cantaloupe.srv.cs.cmu.edu!das-news.harvard.edu!noc.near.net
From: steinly@topaz.ucsc.edu (Steinn Sigurdsson)
Newsgroups: sci.space
Subject: NASA budget and STS costs
Lines: 4

What fraction of the NASA workforce is civil servant   
as opposed to contractor?



> quoted line
"""


def test_usenet_post_keeps_subject_and_body():
    assert usenet_post_text(POST) == (
        "NASA budget and STS costs\n\nWhat fraction of the NASA workforce is "
        "civil servant\nas opposed to contractor?\n\n> quoted line"
    )
    assert usenet_post_text("No headers here.\n\nJust text.") == "No headers here.\n\nJust text."


def _sklearn_style_pickle(posts: list[str]) -> bytes:
    """A protocol-0 pickle shaped like gensim's mini_newsgroup (a scikit-learn Bunch, numpy labels)."""
    items = "".join("V" + p.replace("\n", "\\u000a") + f"\np{6 + i}\na" for i, p in enumerate(posts))
    body = (
        "ccopy_reg\n_reconstructor\np0\n(csklearn.datasets.base\nBunch\np1\nc__builtin__\ndict\np2\n"
        "(dp3\nS'data'\np4\n(lp5\n"
        + items
        + "sS'target'\np99\ncnumpy.core.multiarray\n_reconstruct\np100\n(cnumpy\nndarray\np101\n(I0\n"
        "tp102\nS'b'\np103\ntp104\nRp105\nstp106\nRp107\n."
    )
    return zlib.compress(body.encode("latin-1"))


def test_load_newsgroups_reads_posts_and_refuses_foreign_code():
    blob = _sklearn_style_pickle([POST, "Subject: second\n\nbody two"])
    posts = load_newsgroups(blob)
    assert posts[0] == POST and posts[1] == "Subject: second\n\nbody two"
    assert [d["text"] for d in usenet_documents(posts + [POST])][1] == "second\n\nbody two"
    evil = zlib.compress(pickle.dumps(print, protocol=0))  # a global outside the allow-list
    with pytest.raises(pickle.UnpicklingError):
        load_newsgroups(evil)


def test_line_documents():
    text = "First  story.\n\nSecond story.\nFirst story.\n"
    assert list(line_documents(text)) == [{"text": "First story."}, {"text": "Second story."}]


TWEETS_AND_REVIEWS = (
    "1\t2.7\tSo lucky &amp; so   happy.\r\n"
    "2\t-0.5\tAnother day.\r\n"
    "12_1\t-0.9\ttroubleshooting the ad-2500.\r\n"
    "12_2\t0.1\tpress the i/p button.\r\n"
    "13_1\t1.2\tincredible price.\r\n"
    "14\t0.0\tAnother day.\r\n"  # an exact repeat
    "malformed line without tabs\r\n"
)


def test_rated_snippets_one_tweet_or_one_review_per_document():
    docs = list(rated_snippet_documents(TWEETS_AND_REVIEWS))
    assert docs == [
        {"text": "So lucky & so happy."},
        {"text": "Another day."},
        {"text": "troubleshooting the ad-2500. press the i/p button."},
        {"text": "incredible price."},
    ]


# ----------------------------------------------------------------- reStructuredText (Django docs)

RST_PAGE = """\
===================
How to use sessions
===================

.. module:: django.contrib.sessions
   :synopsis: Provides session management.

Django provides full support for *anonymous* sessions. Cookies contain a
session ID -- see the :ref:`cookie backend<cookie-session-backend>` and
:doc:`the cache documentation
</topics/cache>`.

.. _configuring-sessions:

Configuring the engine
======================

* Edit the :setting:`MIDDLEWARE` setting so it holds
  ``'django.contrib.sessions.middleware.SessionMiddleware'``.
* Use :class:`~django.contrib.sessions.models.Session` or :meth:`!save`.

For example::

    def view(request):
        return 1

Then run this:

.. code-block:: console

    $ python manage.py migrate

.. warning::

    Only use **cache-based** sessions with Redis, see :ticket:`123` and
    `the Redis docs <https://redis.io>`_ [1]_.

.. admonition:: Old behavior

    It changed.

>>> s = SessionStore()
>>> s["x"] = 1

``SESSION_ENGINE``
    Default: ``'db'``. A definition list's body.

======  =====
Name    Value
======  =====

.. [1] A footnote.
.. a comment
   spanning two lines
"""


def test_strip_rst_keeps_prose_and_drops_code_and_markup():
    assert strip_rst(RST_PAGE) == (
        "How to use sessions\n\n"
        "Django provides full support for anonymous sessions. Cookies contain a session ID -- see the "
        "cookie backend and the cache documentation.\n\n"
        "Configuring the engine\n\n"
        "* Edit the MIDDLEWARE setting so it holds 'django.contrib.sessions.middleware.SessionMiddleware'.\n"
        "* Use Session or save.\n\n"
        "For example:\n\n"
        "Then run this:\n\n"
        "Only use cache-based sessions with Redis, see #123 and the Redis docs.\n\n"
        "Old behavior\n\n"
        "It changed.\n\n"
        "SESSION_ENGINE\n"
        "Default: 'db'. A definition list's body.\n\n"
        "Name Value"
    )
    assert list(rst_documents(RST_PAGE))[0]["text"].startswith("How to use sessions\n\nDjango provides")
    assert list(rst_documents(".. toctree::\n   :maxdepth: 1\n\n   intro/index\n")) == []


def test_rst_literal_block_markers():
    # "Text::" keeps one colon, "Text ::" none, a lone "::" nothing; the indented block goes.
    assert strip_blocks("See this::\n\n    code\n\nNext.") == ["See this:", "", "Next."]
    assert strip_blocks("See this ::\n\n    code\n") == ["See this", ""]
    assert strip_blocks("Text.\n\n::\n\n    code\n\nNext.") == [
        "Text.",
        "",
        "",
        "Next.",
    ]  # unwrap() collapses the blank run


def test_rst_unwrap_joins_paragraph_lines_but_not_items_or_definitions():
    lines = ["A wrapped", "paragraph.", "", "* item one", "  continued", "* item two", "", "term", "    definition"]
    assert unwrap(lines) == "A wrapped paragraph.\n\n* item one continued\n* item two\n\nterm\ndefinition"


def test_rst_inline_roles_links_and_literals():
    assert strip_inline(":class:`~a.b.Model` and :func:`a.b.f` and :rfc:`7231` and :pep:`8`") == (
        "Model and a.b.f and RFC 7231 and PEP 8"
    )
    assert strip_inline("`Django <https://djangoproject.com>`__ and `target`_ and `<https://x.org>`_") == (
        "Django and target and https://x.org"
    )
    assert strip_inline("``*args`` stays, *this* and **that** lose stars, 2 * 3 * 4 stays") == (
        "*args stays, this and that lose stars, 2 * 3 * 4 stays"
    )
    assert strip_inline(":doc:`/topics/http/file-uploads` and :ref:`ref-models-fields`") == (
        "file uploads and ref models fields"
    )
