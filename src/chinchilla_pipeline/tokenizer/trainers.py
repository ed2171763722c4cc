"""Three byte-level BPE trainers that all end as the same kind of Hugging Face ``tokenizer.json``.

- ``tokenizers``: Hugging Face's ``BpeTrainer``, the project's trainer (``train.py``);
- ``gigatoken``: ``gigatoken.train_bpe`` (0.10), GPT-2's split pattern built in, ``tie_breaking="huggingface"``;
- ``rustbpe``: nanochat's trainer (PyPI ``rustbpe``), given GPT-2's split pattern (its default is GPT-4's).

Every trainer here returns its merges, in order, as byte pairs; ``from_merges`` writes them into the
tokenizer ``train.py`` has always written: ``<|endoftext|>`` id 0, the 256 byte symbols in code-point order
(ids 1-256, as ``BpeTrainer`` numbers its alphabet), one id per merge after them, GPT-2's ByteLevel
pre-tokenizer and decoder. Merges equal to ``tokenizers``' give a byte-identical file.

Only ``tokenizers`` applies ``min_frequency`` (a pair seen fewer times is never merged); the others merge
until the vocabulary is full. ``frequent_prefix`` cuts gigatoken's merges where ``BpeTrainer`` stops (the
last of the demo mix's 3,839 merges was seen 169 times, the last of 32,511 at vocabulary 32,768 7 times).
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from typing import Iterable

TRAINERS = ("tokenizers", "gigatoken", "rustbpe")
# GPT-2's split pattern, the one HF's ByteLevel(use_regex=True) applies and gigatoken's trainer builds in.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Between documents for gigatoken, which trains on one buffer: 0xFF, a byte no UTF-8 text holds.
SEPARATOR = b"\xff"

Merges = list[tuple[bytes, bytes]]
log = logging.getLogger(__name__)


def trainer_missing(name: str) -> str | None:
    """Why trainer ``name`` cannot run here (its package, of the same name, is not installed), or None."""
    if importlib.util.find_spec(name) is None:
        return f"{name} is not installed (pip install {name}, or pip install -e '.[bench]')"
    return None


@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """GPT-2's printable symbol of each byte (HF's ByteLevel alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return symbols


def _symbols(data: bytes) -> str:
    table = byte_symbols()
    return "".join(table[b] for b in data)


def hf_bpe(vocab_size: int, min_frequency: int, eot_token: str):
    """The project's tokenizer and ``BpeTrainer``: byte-level BPE with GPT-2's pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eot_token],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    return tok, trainer


def train_hf(texts: Iterable[str], length: int, vocab_size: int, min_frequency: int, eot_token: str):
    """The project's tokenizer trained by ``BpeTrainer`` on ``texts`` (streamed; ``length`` of them)."""
    tok, trainer = hf_bpe(vocab_size, min_frequency, eot_token)
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return tok


def hf_merges(tok) -> Merges:
    """The merges of a byte-level BPE ``tokenizers.Tokenizer``, as byte pairs."""
    import json

    inverse = {s: b for b, s in byte_symbols().items()}
    merges = json.loads(tok.to_str())["model"]["merges"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]  # "a b" before tokenizers 0.20
    return [(bytes(inverse[c] for c in a), bytes(inverse[c] for c in b)) for a, b in pairs]


def from_merges(merges: Merges, eot_token: str):
    """The ``tokenizers.Tokenizer`` that ``BpeTrainer`` would have built with these merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(byte_symbols().values(), key=ord)  # BpeTrainer numbers its alphabet in code-point order
    vocab = {eot_token: 0, **{s: i + 1 for i, s in enumerate(alphabet)}}
    hf_pairs = []
    for a, b in merges:
        sa, sb = _symbols(a), _symbols(b)
        vocab.setdefault(sa + sb, len(vocab))
        hf_pairs.append((sa, sb))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=hf_pairs))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(eot_token, special=True, normalized=False)])
    return tok


def train_merges(
    name: str, texts: list[str], vocab_size: int, min_frequency: int, eot_token: str
) -> tuple[Merges, object]:
    """Train ``name`` on ``texts`` to ``vocab_size`` entries (256 bytes + ``eot_token`` + merges).

    Returns the merges and the trainer's own object: the trained ``tokenizers.Tokenizer``, rustbpe's (for its
    encoder), None for gigatoken."""
    num_merges = vocab_size - 257
    if name == "tokenizers":
        tok = train_hf(texts, len(texts), vocab_size, min_frequency, eot_token)
        return hf_merges(tok), tok
    if name == "gigatoken":
        import gigatoken
        from gigatoken.gigatoken_rs import pretokenized_counts

        data = SEPARATOR.join(t.encode("utf-8") for t in texts)
        _, merges = gigatoken.train_bpe(data, vocab_size, [eot_token], tie_breaking="huggingface", separator=SEPARATOR)
        merges = [(bytes(a), bytes(b)) for a, b in merges]
        words = pretokenized_counts(data, separator=SEPARATOR)
        return merges[: frequent_prefix(merges, words, min_frequency, eot_token)], None
    if name == "rustbpe":
        import rustbpe

        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(iter(texts), 256 + num_merges, pattern=GPT2_PATTERN)
        return rustbpe_merges(tok.get_mergeable_ranks()), tok
    raise ValueError(f"unknown trainer {name!r}")


def train_gigatoken(texts: list[str], vocab_size: int, min_frequency: int, eot_token: str) -> tuple[object, str]:
    """The tokenizer ``BpeTrainer`` trains on ``texts``, trained by gigatoken (7x faster on the demo mix), and the
    trainer that trained it.

    Texts holding a code point of the Unicode gap (``unicode_gap.py``) are split differently by gigatoken's
    pattern, and so may train other merges: with one of them, tokenizers trains the whole text instead."""
    from .unicode_gap import gap_documents

    if gap := gap_documents(texts):
        log.info(
            "%d training documents hold code points that gigatoken and HF split differently "
            "(tokenizer/unicode_gap.py): training with tokenizers",
            len(gap),
        )
        return train_hf(texts, len(texts), vocab_size, min_frequency, eot_token), "tokenizers"
    merges, _ = train_merges("gigatoken", texts, vocab_size, min_frequency, eot_token)
    return from_merges(merges, eot_token), "gigatoken"


def _count_of_last(merges: Merges, words: list[tuple[bytes, int]], eot_token: str) -> int:
    """How often the last of ``merges`` was applied in training: its token's count in the words (pieces of the
    split pattern, with their counts) encoded with these merges, no later merge consuming it. Only the words
    holding the token's bytes can hold the token: they alone are encoded."""
    token = merges[-1][0] + merges[-1][1]
    words = [(w, n) for w, n in words if token in w]
    if not words:
        return 0
    tok = from_merges(merges, eot_token)
    tok.pre_tokenizer = None  # the words are pieces already, in byte symbols
    last = 256 + len(merges)  # from_merges' id of the last merge's token
    encs = tok.encode_batch_fast([_symbols(w) for w, _ in words], add_special_tokens=False)
    return sum(n * e.ids.count(last) for (_, n), e in zip(words, encs))


def frequent_prefix(merges: Merges, words: list[tuple[bytes, int]], min_frequency: int, eot_token: str) -> int:
    """How many of ``merges`` ``BpeTrainer`` keeps: it stops at the first pair seen fewer than ``min_frequency``
    times (or never), gigatoken does not. A chosen pair's count never exceeds the one before (a merge only
    makes pairs as frequent as itself, at most), so the kept merges are a prefix, found by bisection: one
    encoding of the words when the last merge is frequent enough, about 12 more for 4,096 merges otherwise."""
    threshold = max(min_frequency, 1)
    if not merges or _count_of_last(merges, words, eot_token) >= threshold:
        return len(merges)
    lo, hi = 0, len(merges) - 1  # merges[:lo] are kept; merges[:hi + 1] are not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _count_of_last(merges[:mid], words, eot_token) >= threshold:
            lo = mid
        else:
            hi = mid - 1
    return lo


def rustbpe_merges(ranks: Iterable[tuple[bytes, int]]) -> Merges:
    """Merges from tiktoken-style ranks: each token split as tiktoken's encoder splits it with the lower ranks
    only (how transformers converts tiktoken vocabularies); ranks 0-255 are the bytes."""
    rank = {bytes(t): r for t, r in ranks}
    merges = []
    for token, r in sorted(rank.items(), key=lambda kv: kv[1]):
        if r < 256:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:  # tiktoken's merge loop: the adjacent pair of lowest rank, ranks below r only
            pair_ranks = [(rank.get(parts[i] + parts[i + 1], r), i) for i in range(len(parts) - 1)]
            _, i = min(p for p in pair_ranks if p[0] < r)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        merges.append((parts[0], parts[1]))
    return merges
