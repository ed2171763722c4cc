#!/usr/bin/env python3
"""Train the tokenizer on the mix: `chinchilla tokenizer-train` (see --help)."""

import sys

from chinchilla_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["tokenizer-train", *sys.argv[1:]]))
