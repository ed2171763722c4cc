"""Two encoders of the one ``tokenizer.json``: HF ``tokenizers`` (the reference) and gigatoken (the default).

gigatoken reads the same file and gives the same ids 24-35x faster (24x on 20k real documents; 35x on the
test corpus on 2 cores: BENCHMARKS.md, *gigatoken against HF tokenizers*). The file on disk never changes,
so a run can switch encoders at any time; ``prepare`` compares the two on a sample of every run
(``data/id_check.py``).
"""

from __future__ import annotations

import importlib.util
import logging
from itertools import chain
from typing import Callable

import numpy as np

from ..errors import UserError

ENCODERS = ("gigatoken", "hf")
# texts -> (the documents' ids concatenated as uint32, each document's number of ids as int64)
BatchEncoder = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]
log = logging.getLogger(__name__)


def resolve_encoder(name: str | None) -> str:
    """``name``, or by default gigatoken when it is installed, else HF with one logged line."""
    have_gigatoken = importlib.util.find_spec("gigatoken") is not None
    if name is None:
        if not have_gigatoken:
            log.info("gigatoken is not installed: encoding with HF tokenizers (the same ids, 24-35x slower)")
        return "gigatoken" if have_gigatoken else "hf"
    if name not in ENCODERS:
        raise UserError(f"expected one of {', '.join(ENCODERS)}, got {name!r}", field="--encoder")
    if name == "gigatoken" and not have_gigatoken:
        raise UserError("gigatoken is not installed (pip install gigatoken), or use --encoder hf", field="--encoder")
    return name


def open_encoder(name: str, tokenizer_json: str, parallel: bool) -> BatchEncoder:
    """The batch encoder ``name`` (see ``ENCODERS``) of ``tokenizer_json`` (the file's text).

    ``parallel``: use the library's own threads (False in worker processes, which are the parallelism).
    Special tokens in the text (``<|endoftext|>``) become their ids with both, as ``encode`` does in HF.
    gigatoken leaves the documents of the Unicode gap (``unicode_gap.py``) to HF.
    """
    if name == "gigatoken":
        # encode_batch returns an awkward Array: importing awkward (0.18 CPU-s, 0.4 s wall per process on the 2-core
        # VM) here rather than at the first batch lets a prepare worker pay it while the source opens.
        import awkward as ak
        import gigatoken

        from .unicode_gap import gap_documents, splice

        tok = gigatoken.Tokenizer.from_json(tokenizer_json)
        reference = open_encoder("hf", tokenizer_json, parallel)  # for the few documents of the Unicode gap

        def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            layout = ak.to_layout(tok.encode_batch(texts, parallel=parallel))  # ListOffsetArray of uint32
            offsets = np.asarray(layout.offsets.data)
            ids = np.asarray(layout.content.data)[offsets[0] : offsets[-1]].astype(np.uint32, copy=False)
            lens = np.diff(offsets).astype(np.int64)
            if gap := gap_documents(texts):
                ids, lens = splice(ids, lens, gap, *reference([texts[i] for i in gap]))
            return ids, lens

        return encode
    import os

    from tokenizers import Tokenizer

    if not parallel:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read when the thread pool first starts
    hf = Tokenizer.from_str(tokenizer_json)

    def encode_hf(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        docs = [e.ids for e in hf.encode_batch_fast(texts, add_special_tokens=False)]
        lens = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        return np.fromiter(chain.from_iterable(docs), dtype=np.uint32, count=int(lens.sum())), lens

    return encode_hf
