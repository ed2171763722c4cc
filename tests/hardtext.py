"""Text that is hard for byte-level BPE, generated from a seed (hypothesis is not a dependency).

Each class stresses one part of the pre-tokenizer or the merges: whitespace runs, control characters,
100k-character words, digits, scripts, emoji sequences, combining marks, U+FFFD (what prepare puts in
place of invalid UTF-8), the end-of-text token's string inside the text, and the code points that
gigatoken and HF classify differently (tokenizer/unicode_gap.py).
"""

from __future__ import annotations

import random

from chinchilla_pipeline.tokenizer.unicode_gap import GAP_RANGES

EOT = "<|endoftext|>"
SCRIPTS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГД",  # Cyrillic
    "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",  # Greek
    "的一是不了人我在有他这中大来上国个到说们",  # CJK
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",  # Arabic
    "अआइईउऊएऐओऔकखगघचछजझ",  # Devanagari
    "กขฃคฅฆงจฉชซฌญฎฏ",  # Thai
    "אבגדהוזחטיכלמנסעפצקרשת",  # Hebrew
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🏳️‍🌈", "🧑🏿‍💻", "😀😀😀", "\U0001f9ff", "\U0001fae8"]
COMBINING = ["\u0301", "\u0308", "\u0323", "\u0336", "\u20dd", "\u093c", "\u0e31"]
SPACES = [" ", "\n", "\t", "\r", "\r\n", "\u00a0", "\u2028", "\u3000", "\u200b", "\x0b", "\x0c"]
CONTROL = [chr(c) for c in (*range(0, 32), 127, *range(0x80, 0xA0))]
PIECES = [
    "'s",
    "'t",
    "'re",
    "'S",
    "’s",
    " '",
    "''",
    "__",
    "...",
    "--",
    "```",
    "<|",
    "|>",
    "<|endoftext",
    "|endoftext|>",
]


def _word(r: random.Random) -> str:
    alphabet = r.choice(SCRIPTS)
    return "".join(r.choice(alphabet) for _ in range(r.randint(1, 12)))


def _atom(r: random.Random) -> str:
    kind = r.randrange(10)
    if kind == 0:
        return r.choice(SPACES) * r.choice([1, 2, 3, 17, 64, 1000])
    if kind == 1:
        return "".join(r.choice(CONTROL) for _ in range(r.randint(1, 5)))
    if kind == 2:
        return str(r.randrange(10 ** r.randint(1, 30)))
    if kind == 3:
        return r.choice(EMOJI) * r.randint(1, 3)
    if kind == 4:
        return _word(r) + "".join(r.choice(COMBINING) for _ in range(r.randint(1, 6)))
    if kind == 5:
        return "\ufffd" * r.randint(1, 4)
    if kind == 6:
        return r.choice([EOT, f" {EOT} ", EOT * 3, f"\n{EOT}\n", f"x{EOT}y"])
    if kind == 7:
        return r.choice(PIECES)
    if kind == 8 and r.random() < 0.2:  # a letter to gigatoken but not to HF, before a contraction
        first, last = r.choice(GAP_RANGES)
        return chr(r.randint(first, last)) + r.choice(["'t", "'s", "'re"])
    if kind == 8:  # any code point but a surrogate (Arrow's strings are valid UTF-8: none can reach prepare)
        c = r.randrange(0x110000 - 0x800)
        return chr(c if c < 0xD800 else c + 0x800)
    return _word(r)


def hard_texts(seed: int = 0, num_docs: int = 300) -> list[str]:
    """``num_docs`` documents of mixed hard atoms, then one per pure class (long words of 100k characters)."""
    r = random.Random(seed)
    docs = [
        "".join(_atom(r) if r.random() < 0.6 else " " + _word(r) for _ in range(r.randint(1, 60)))
        for _ in range(num_docs)
    ]
    docs += [
        "",
        EOT,
        " " * 100_000,
        "\n" * 50_000 + "\t" * 50_000,
        "a" * 100_000,
        "".join(r.choice(SCRIPTS[0]) for _ in range(100_000)),
        "".join(r.choice(SCRIPTS[3]) for _ in range(100_000)),
        "7" * 100_000,
        "😀" * 20_000,
        "e" + "\u0301" * 10_000,
        "\ufffd" * 10_000,
        "".join(r.choice(CONTROL) for _ in range(10_000)),
        (EOT + " ") * 1_000,
    ]
    return docs
