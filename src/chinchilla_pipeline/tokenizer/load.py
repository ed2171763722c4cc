"""Load the trained tokenizer and identify it by the sha256 of ``tokenizer.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..atomic import sha256_file
from ..errors import UserError

TOKENIZER_FILE = "tokenizer.json"
EOT_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class LoadedTokenizer:
    tokenizer: "object"  # tokenizers.Tokenizer
    path: Path
    sha256: str
    vocab_size: int
    eot_id: int


def load_tokenizer(directory: str | Path, eot_token: str | None = None) -> LoadedTokenizer:
    """Open ``directory/tokenizer.json``; missing means the tokenizer step has not run.

    The end-of-text token is ``eot_token``, else the ``eos_token`` of the directory's
    ``tokenizer_config.json`` (the mix's ``eot_token``), else ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer

    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise UserError("no tokenizer.json: train it first with `make tokenizer-train-mix`", path=directory)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # the tokenizers library raises a bare Exception on a malformed file
        raise UserError(
            f"not a readable tokenizer ({str(err).splitlines()[0][:200]}); retrain it with `make tokenizer-train-mix`",
            path=path,
        ) from None
    if eot_token is None:
        config = Path(directory) / "tokenizer_config.json"
        eot_token = json.loads(config.read_text()).get("eos_token", EOT_TOKEN) if config.is_file() else EOT_TOKEN
    eot_id = tok.token_to_id(eot_token)
    if eot_id is None:
        raise UserError(f"the tokenizer has no {eot_token!r} token", path=path)
    return LoadedTokenizer(tok, path, sha256_file(path), tok.get_vocab_size(), eot_id)
