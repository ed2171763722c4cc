"""EncoderPool: worker processes give the in-process encoding, in order, however the work is cut."""

import gzip
import json

import numpy as np

from chinchilla_pipeline.data.encode import EncoderPool, _chunks, encode_texts
from chinchilla_pipeline.tokenizer.encoders import open_encoder
from chinchilla_pipeline.tokenizer.load import load_tokenizer
from conftest import CORPUS


def test_chunks_are_consecutive_and_bounded():
    texts = ["a" * n for n in (3, 4, 10, 1, 1, 2, 0, 7)]
    chunks = list(_chunks(texts, 5))
    assert [t for c in chunks for t in c] == texts
    assert all(sum(map(len, c)) <= 5 or len(c) == 1 for c in chunks)
    assert list(_chunks([], 5)) == []


def test_pool_matches_in_process_encoding_for_any_workers_and_chunks(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    docs = [json.loads(line)["text"] for line in gzip.open(CORPUS, "rt")][:120]
    docs.insert(7, " ".join(docs[:40]))  # one document larger than several chunks
    items = [docs[i : i + 25] for i in range(0, len(docs), 25)] + [[]]  # the last item holds nothing
    hf = open_encoder("hf", tok.path.read_text(), parallel=True)
    expected = [encode_texts(hf, tok.eot_id, item, np.uint16) for item in items]
    for workers, chunk_chars, encoder in ((1, 1 << 20, "hf"), (3, 2_000, "gigatoken")):
        with EncoderPool(tok.path.read_text(), tok.eot_id, np.uint16, workers, encoder) as pool:
            got = list(pool.map(iter(items), lambda item: item, chunk_chars=chunk_chars))
        assert [g[0] for g in got] == items
        for (_, tokens, lens), (want_tokens, want_lens) in zip(got, expected):
            assert tokens.dtype == np.uint16 and np.array_equal(tokens, want_tokens)
            assert np.array_equal(lens, want_lens) and int(lens.sum()) == tokens.size
