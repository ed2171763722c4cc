"""The demo corpus: real English text from pinned PyPI archives, turned into jsonl documents."""
