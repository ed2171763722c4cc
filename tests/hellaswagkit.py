"""A HellaSwag-shaped validation file written by the tests themselves (the official schema, made-up text)."""

from __future__ import annotations

import json
from pathlib import Path

SUBJECTS = ["A man", "A woman", "The child", "Two people", "A dog", "The chef", "A girl", "The team"]
ACTIONS = [
    "is sitting on a roof.",
    "walks into the kitchen.",
    "opens a box of tools.",
    "stands by the river.",
    "picks up a guitar.",
    "kneels in the garden.",
    "holds a paint brush.",
    "starts the car.",
]
ENDINGS = [
    "pulls up the old shingles one by one.",
    "slices the onions and puts them in a pan.",
    "plays a few chords and sings along.",
    "waves at the camera and smiles.",
    "paints the wall a bright blue.",
    "plants small flowers in a row.",
    "drives down the road slowly.",
    "throws a ball across the yard.",
    "reads the instructions out loud.",
    "jumps into the cold water.",
]


def hellaswag_items(n: int) -> list[dict]:
    """``n`` items with every field of ``hellaswag_val.jsonl``; deterministic, labels cycling 0-3."""
    items = []
    for i in range(n):
        ctx_a = f"{SUBJECTS[i % len(SUBJECTS)]} {ACTIONS[(3 * i) % len(ACTIONS)]}"
        ctx_b = "then" if i % 2 else "he"
        items.append(
            {
                "ind": i,
                "activity_label": "Made up",
                "ctx_a": ctx_a,
                "ctx_b": ctx_b,
                "ctx": f"{ctx_a} {ctx_b}",
                "split": "val",
                "split_type": "indomain",
                "label": i % 4,
                "endings": [ENDINGS[(i + 3 * k) % len(ENDINGS)] for k in range(4)],
                "source_id": f"test~{i}",
            }
        )
    return items


def write_hellaswag(path: Path, n: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in hellaswag_items(n)), encoding="utf-8")
    return path
