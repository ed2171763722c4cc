"""Code points that gigatoken and HF tokenizers classify differently, whose documents HF encodes.

gigatoken 0.10 splits words with the tables of Unicode 16-17, HF tokenizers 0.23 with older ones: these
4,657 code points (unassigned in Unicode 14, letters since) are letters only to gigatoken. Next to a
contraction, the words differ: ``chr(0x323B0) + "'t"`` is "X'" + "t" to HF, "X" + "'t" to gigatoken, so
with a vocabulary holding "'t" the ids differ. Found by encoding ``chr(c) + "'t"`` for every code point
with both (a 4,096-token BPE of the demo corpus; no other code point, and none of "a" + chr(c), chr(c) +
"!" and six more contexts, differed). Such text is rare (new CJK extension ideographs, new scripts).
"""

from __future__ import annotations

import numpy as np

# (first, last), inclusive
GAP_RANGES = (
    (0x88F, 0x88F),
    (0xC5C, 0xC5C),
    (0xCDC, 0xCDC),
    (0xA7CE, 0xA7CF),
    (0xA7D2, 0xA7D2),
    (0xA7D4, 0xA7D4),
    (0xA7F1, 0xA7F1),
    (0x10940, 0x10959),
    (0x10EC5, 0x10EC7),
    (0x11DB0, 0x11DDB),
    (0x11DE0, 0x11DE9),
    (0x16EA0, 0x16EB8),
    (0x16EBB, 0x16ED3),
    (0x16FF2, 0x16FF6),
    (0x187F8, 0x187FF),
    (0x18D09, 0x18D1E),
    (0x18D80, 0x18DF2),
    (0x1E6C0, 0x1E6DE),
    (0x1E6E0, 0x1E6E2),
    (0x1E6E4, 0x1E6E5),
    (0x1E6E7, 0x1E6ED),
    (0x1E6F0, 0x1E6F4),
    (0x1E6FE, 0x1E6FF),
    (0x2B73A, 0x2B73F),
    (0x2CEA2, 0x2CEAD),
    (0x323B0, 0x33479),
)
_IN_GAP = np.zeros(GAP_RANGES[-1][1] + 2, dtype=bool)  # code point -> in the gap (~210k entries, 0.2 MB)
for _first, _last in GAP_RANGES:
    _IN_GAP[_first : _last + 1] = True


def gap_documents(texts: list[str]) -> list[int]:
    """Indices of the ``texts`` holding a gap code point (an ASCII text is skipped at once)."""
    found = []
    for i, text in enumerate(texts):
        if not text.isascii():  # ~60M characters/s for the others, ~1/10 of gigatoken's time on one core
            points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            if _IN_GAP[np.minimum(points, _IN_GAP.size - 1)].any():
                found.append(i)
    return found


def splice(
    ids: np.ndarray, lens: np.ndarray, which: list[int], new_ids: np.ndarray, new_lens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(``ids``, ``lens``) with documents ``which`` replaced by (``new_ids``, ``new_lens``)."""
    docs = np.split(ids, np.cumsum(lens)[:-1]) if lens.size else []
    for doc, part in zip(which, np.split(new_ids, np.cumsum(new_lens)[:-1])):
        docs[doc] = part
    lens = lens.copy()
    lens[which] = new_lens
    return (np.concatenate(docs) if docs else ids), lens
