"""Bytes of text per token id: the denominator of validation bits per byte (as nanochat's ``evaluate_bpb``)."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .load import LoadedTokenizer


def token_byte_lengths(tok: LoadedTokenizer) -> np.ndarray:
    """int32, one entry per id (``tok.vocab_size``): the UTF-8 bytes the id decodes to; 0 for added and
    special tokens (end-of-text) and for ids without a token.

    Byte-level BPE spells each byte as one printable character (GPT-2's ``bytes_to_unicode``, the 256
    characters of ``ByteLevel.alphabet()``), so a token's bytes are its characters: "Ġthe" is b" the", 4.
    A tokenizer with any other character in its vocabulary is not byte-level: a ``UserError``.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = set(ByteLevel.alphabet())
    added = set(tok.tokenizer.get_added_tokens_decoder())  # the special tokens are in the model's vocab too
    table = np.zeros(tok.vocab_size, dtype=np.int32)
    for token, i in tok.tokenizer.get_vocab(with_added_tokens=False).items():
        if i in added:
            continue
        if not set(token) <= alphabet:
            raise UserError(
                f"token {i} ({token!r}) is not byte-level BPE: the bytes per token that validation bits per "
                "byte need cannot be read from it; use a tokenizer of `chinchilla tokenizer-train`",
                path=tok.path,
            )
        table[i] = len(token)
    return table
