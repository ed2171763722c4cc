"""Byte-level BPE tokenizer trained on the mix of all sources."""
